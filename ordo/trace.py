"""Stage timestamps of sampled transactions: where a commit's latency goes.

Off unless :func:`start` is called: a service calls it when given
``--trace-dir``, a client program calls it itself. Then, for one request id
in ``sample`` (picked by a hash of the id, so that the client and every
service pick the same ones), :func:`mark` appends a line
``<request id> <stage> <seconds>`` to ``<dir>/<pid>.trace``. The seconds are
``time.monotonic()``: on Linux one clock (CLOCK_MONOTONIC) for every
process of a machine, so one transaction's stages join across the client,
the coordinator and the shards (``python -m bench.trace DIR``).

Stages, in the order a transaction meets them::

    client.call      the client's txn() begins
    client.send      its stream's sender takes it (with others) off the outbox
    client.sent      ... and its write has returned (the coordinator may have it already)
    coord.received   the coordinator has checked it and queued it for a batch
    coord.batched    it is in a batch cut for the sequencer log
    coord.durable    that batch's synced write has returned
    shard.received   a participant shard has it from the log (and asked for its inputs)
    shard.applied    ... has applied it (its inputs in)
    shard.published  ... has written it and published its result
    coord.results    the coordinator has every participant's result
    coord.answered   the coordinator's stream sends its answer
    client.answer    the client's stream reads the answer
    client.done      txn() returns

A blind write is answered at ``coord.durable``; its shard stages come later,
off its path. The hooks cost one test of :data:`ON` when tracing is off.
For measuring, not for production: the files grow as long as it runs.
Timestamps never reach the log, the state or an answer.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import zlib

log = logging.getLogger("ordo.trace")

ON = False
_sample = 64
_path = ""
_lines: list[str] = []
FLUSH_LINES = 256


def start(directory: str, sample: int = 64) -> None:
    """Trace one request id in ``sample`` into ``directory`` from now on."""
    global ON, _sample, _path
    if sample < 1:
        raise ValueError("sample is at least 1")
    flush()
    os.makedirs(directory, exist_ok=True)
    _sample, _path = sample, os.path.join(directory, f"{os.getpid()}.trace")
    ON = True


def stop() -> None:
    global ON
    flush()
    ON = False


def sampled(request_id: str) -> bool:
    return bool(request_id) and zlib.crc32(request_id.encode()) % _sample == 0


def mark(request_id: str, stage: str) -> None:
    """Record that ``request_id`` reached ``stage`` now, if tracing is on and
    it is sampled."""
    if ON and sampled(request_id):
        _lines.append(f"{request_id} {stage} {time.monotonic():.6f}\n")
        if len(_lines) >= FLUSH_LINES:
            flush()


def flush() -> None:
    """Write the buffered lines. A write that fails (a full disk, a folder
    removed) turns tracing off with one warning: it never fails the caller,
    which may be answering a transaction."""
    global ON
    try:
        if _lines and _path:
            with open(_path, "a") as f:
                f.writelines(_lines)
    except OSError as error:
        ON = False
        log.warning("tracing stopped: cannot write %s: %s", _path, error)
    finally:
        _lines.clear()


atexit.register(flush)
