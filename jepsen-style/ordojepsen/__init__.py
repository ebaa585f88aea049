"""ordojepsen: a Jepsen-style fault-injection runner and Elle-style checkers for ordo.

Layout:

- :mod:`ordojepsen.history`   operations, the history recorder, JSON Lines and EDN output
- :mod:`ordojepsen.proxy`     one asyncio TCP proxy per directed link (partitions, delays)
- :mod:`ordojepsen.cluster`   the ordo processes: command lines, kill, pause, restart
- :mod:`ordojepsen.nemesis`   fault schedules drawn from a seed, and their execution
- :mod:`ordojepsen.workloads` bank, list-append, register, read-your-writes
- :mod:`ordojepsen.checkers`  the checkers, pure functions of a history
- :mod:`ordojepsen.report`    results.json, plots and index.html
- :mod:`ordojepsen.runner`    one run, start to verdict
- :mod:`ordojepsen.cli`       ``ordo-jepsen run ...``
"""

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"
EXIT_CODES = {VALID: 0, INVALID: 1, UNKNOWN: 2}


def merge_verdicts(*verdicts: str) -> str:
    """invalid beats unknown beats valid."""
    if INVALID in verdicts:
        return INVALID
    if UNKNOWN in verdicts:
        return UNKNOWN
    return VALID
