"""Where a transaction's latency goes, from ``ordo.trace`` files.

    python -m bench.trace DIR

Joins the ``*.trace`` files in DIR (the client's and every service's, of
one run) by request id and prints, for each stage (see ``ordo/trace.py``),
how long after ``client.call`` the sampled transactions reached it, and the
step from the stage before it on each transaction's way to its answer, in
milliseconds. Only transactions the client traced count (a client starts
tracing when it starts measuring); where no client traced (the services
alone, say ``ORDO_TRACE_DIR=DIR ordo dev``), every transaction the
coordinator received counts, from ``coord.received``. Where several shards reach a stage, the
last one counts: the coordinator waits for it. A blind write's shard stages
come after its answer and are listed apart. ``python -m bench.run --trace
DIR`` writes a folder per run under DIR.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ORIGIN = "client.call"
SERVICE_ORIGIN = "coord.received"  # when no client traced
STAGES = (
    "client.call", "client.send", "client.sent", "coord.received", "coord.batched",
    "coord.durable", "shard.received", "shard.applied", "shard.published", "coord.results",
    "coord.answered", "client.answer", "client.done",
)


def load(directory: Path) -> dict[str, dict[str, float]]:
    """request id -> stage -> the latest time it was reached, from the
    ``*.trace`` files in ``directory`` (one run's folder)."""
    marks: dict[str, dict[str, float]] = defaultdict(dict)
    for path in sorted(directory.glob("*.trace")):
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


def _rank(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


def path_of(m: dict[str, float]) -> tuple[list[str], list[str]]:
    """A transaction's stages on the way to its answer, in STAGES order, and
    those off it: a shard's stages when the answer did not wait for the
    shards (a blind write, answered once durable)."""
    waited = "coord.results" in m
    on = [s for s in sorted(m, key=_rank) if waited or not s.startswith("shard.")]
    off = [s for s in sorted(m, key=_rank) if s not in on]
    return on, off


Row = tuple[str, int, float, float, float, float]


def origin_of(marks: dict[str, dict[str, float]]) -> str:
    """The stage offsets count from: the client's call if a client traced."""
    return ORIGIN if any(ORIGIN in m for m in marks.values()) else SERVICE_ORIGIN


def table(marks: dict[str, dict[str, float]],
          origin: str | None = None) -> tuple[int, list[Row]]:
    """(transactions, rows), in milliseconds: per stage, (stage, count, mean
    offset, p50 offset, p90 offset, mean step). A stage on a transaction's
    path steps from the stage before it on that path; a stage off it (see
    :func:`path_of`) is named "... (after the answer)" and steps from
    coord.durable. Rows go in STAGES order, those off the path last.
    ``origin``: the stage offsets count from (:func:`origin_of` if None)."""
    origin = origin or origin_of(marks)
    txns = [m for m in marks.values() if origin in m]
    offsets: dict[str, list[float]] = defaultdict(list)
    steps: dict[str, list[float]] = defaultdict(list)
    for m in txns:
        on, off = path_of(m)
        for before, stage in zip([None, *on], on, strict=False):
            offsets[stage].append((m[stage] - m[origin]) * 1e3)
            steps[stage].append(0.0 if before is None else (m[stage] - m[before]) * 1e3)
        for stage in off:
            name = f"{stage} (after the answer)"
            offsets[name].append((m[stage] - m[origin]) * 1e3)
            if "coord.durable" in m:
                steps[name].append((m[stage] - m["coord.durable"]) * 1e3)
    order = sorted(offsets, key=lambda name: (name.endswith("(after the answer)"),
                                              _rank(name.split(" ")[0])))
    rows = []
    for name in order:
        data = sorted(offsets[name])
        step = statistics.fmean(steps[name]) if steps[name] else math.nan
        rows.append((name, len(data), statistics.fmean(data), _pct(data, 0.5), _pct(data, 0.9),
                     step))
    return len(txns), rows


def render(count: int, rows: list[Row], origin: str = ORIGIN) -> str:
    lines = [f"{count} sampled transactions; milliseconds after {origin}. step: from the "
             "stage before it on the transaction's way to its answer (mean); for a stage "
             "after the answer, from coord.durable", "",
             "| stage | reached by | mean | p50 | p90 | step (mean) |",
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
    marks = load(args.directory)
    origin = origin_of(marks)
    count, rows = table(marks, origin)
    if not count:
        runs = sorted(p.name for p in args.directory.iterdir() if p.is_dir())
        hint = f" (one run's folder, such as {runs[0]})" if runs else ""
        print(f"no traced transaction in {args.directory}{hint}", file=sys.stderr)
        return 1
    print(render(count, rows, origin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
