"""Where a transaction's latency goes, from ``ordo.trace`` files.

    python -m bench.trace DIR

Joins the ``*.trace`` files under DIR (the client's and every service's) by
request id and prints, for each stage (see ``ordo/trace.py``), how long
after ``client.call`` the sampled transactions reached it, and the step
from the stage before, in milliseconds. Only transactions the client traced
count (a client starts tracing when it starts measuring). Where several
shards reach a stage, the last one counts: the coordinator waits for it.
``python -m bench.run --trace DIR`` writes such folders, one per run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ORIGIN = "client.call"
STAGES = (
    "client.call", "client.send", "client.sent", "coord.received", "coord.batched",
    "coord.durable", "shard.received", "shard.applied", "shard.published", "coord.results",
    "coord.answered", "client.answer", "client.done",
)


def load(directory: Path) -> dict[str, dict[str, float]]:
    """request id -> stage -> the latest time it was reached."""
    marks: dict[str, dict[str, float]] = defaultdict(dict)
    for path in sorted(directory.rglob("*.trace")):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 3:
                    continue  # a line cut short by a kill
                request_id, stage, raw = parts
                try:
                    t = float(raw)
                except ValueError:
                    continue
                seen = marks[request_id].get(stage)
                if seen is None or t > seen:
                    marks[request_id][stage] = t
    return marks


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return math.nan
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def table(marks: dict[str, dict[str, float]]) -> tuple[int, list[tuple[str, int, float, float,
                                                                      float, float]]]:
    """(transactions, rows): per stage reached by at least half of them, in
    the order of its median offset: (stage, count, mean offset, p50 offset,
    p90 offset, mean step from the row before), in milliseconds."""
    txns = [m for m in marks.values() if ORIGIN in m]
    offsets: dict[str, list[float]] = defaultdict(list)
    for m in txns:
        for stage, t in m.items():
            offsets[stage].append((t - m[ORIGIN]) * 1e3)
    kept = [s for s in offsets if len(offsets[s]) * 2 >= len(txns)]
    for s in kept:
        offsets[s].sort()
    kept.sort(key=lambda s: (_pct(offsets[s], 0.5), STAGES.index(s) if s in STAGES else 99))
    rows = []
    before: str | None = None
    for s in kept:
        if before is None:
            step = 0.0
        else:
            steps = [(m[s] - m[before]) * 1e3 for m in txns if s in m and before in m]
            step = statistics.fmean(steps) if steps else math.nan
        data = offsets[s]
        rows.append((s, len(data), statistics.fmean(data), _pct(data, 0.5), _pct(data, 0.9),
                     step))
        before = s
    return len(txns), rows


def render(count: int, rows: list[tuple[str, int, float, float, float, float]]) -> str:
    lines = [f"{count} sampled transactions; milliseconds after {ORIGIN}", "",
             "| stage | reached by | mean | p50 | p90 | step from the row before (mean) |",
             "|---|---:|---:|---:|---:|---:|"]
    for stage, n, mean, p50, p90, step in rows:
        lines.append(f"| {stage} | {n} | {mean:.3f} | {p50:.3f} | {p90:.3f} | {step:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__.split("\n")[0])
    p.add_argument("directory", type=Path)
    args = p.parse_args(argv)
    if not args.directory.is_dir():
        p.error(f"{args.directory} is not a folder")
    count, rows = table(load(args.directory))
    if not count:
        print(f"no transaction traced by a client under {args.directory}", file=sys.stderr)
        return 1
    print(render(count, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
