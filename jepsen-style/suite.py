#!/usr/bin/env python3
"""The long matrix: workloads x nemesis combinations x seeds, one run each, then a summary.

::

    python jepsen-style/suite.py --out results/jepsen            # the default matrix
    python jepsen-style/suite.py --quick --out /tmp/jepsen-quick  # 1 seed, 10 s runs
    python jepsen-style/suite.py --workloads bank --nemeses "kill;partition" --seeds 1,2,3

Each run is ``ordo_jepsen.py run`` in its own process with its own cluster
(results in OUT/<workload>/<nemesis>/seed-<n>/). The summary table (also in
OUT/summary.json and OUT/index.html) has, per workload and nemesis: runs,
verdicts, ops checked and anomalies found. Exit status: 1 if any run was
invalid, else 2 if any was unknown, else 0.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "ordo_jepsen.py")

WORKLOADS = ["bank", "list-append", "register", "read-your-writes"]
NEMESES = ["none", "kill", "pause", "partition", "power-loss", "delay,lag",
           "kill,pause,partition,power-loss"]


def run_one(args: argparse.Namespace, workload: str, nemesis: str, seed: int) -> dict[str, Any]:
    out = os.path.join(args.out, workload, nemesis.replace(",", "+"), f"seed-{seed}")
    cmd = [sys.executable, RUNNER, "run", "--workload", workload, "--nemesis", nemesis,
           "--time-limit", str(args.time_limit), "--rate", str(args.rate),
           "--concurrency", str(args.concurrency), "--shards", str(args.shards),
           "--seed", str(seed), "--out", out]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=args.time_limit + 300)
        code: int | None = proc.returncode
        tail = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired:
        code, tail = None, "timed out"
    row: dict[str, Any] = {"workload": workload, "nemesis": nemesis, "seed": seed, "out": out,
                           "exit": code, "seconds": round(time.monotonic() - started, 1)}
    try:
        with open(os.path.join(out, "results.json")) as f:
            r = json.load(f)
        counts = r["counts"]["by_type"]
        row.update(
            verdict=r["verdict"],
            ops=sum(v for k, v in counts.items() if k != "invoke"),
            ok=counts.get("ok", 0), info=counts.get("info", 0), fail=counts.get("fail", 0),
            anomalies=r["checker"].get("anomaly_counts")
            or {k: len(v) for k, v in r["checker"].get("anomalies", {}).items()},
            process_exits=len(r.get("process_exits", [])),
        )
    except (OSError, ValueError, KeyError):
        row.update(verdict="unknown", ops=0, ok=0, info=0, fail=0, anomalies={},
                   process_exits=0, error=tail)
    return row


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault((r["workload"], r["nemesis"]), {
            "workload": r["workload"], "nemesis": r["nemesis"], "runs": 0, "valid": 0,
            "invalid": 0, "unknown": 0, "ops": 0, "anomalies": {}, "process_exits": 0})
        g["runs"] += 1
        g[r["verdict"]] = g.get(r["verdict"], 0) + 1
        g["ops"] += r["ops"]
        g["process_exits"] += r.get("process_exits", 0)
        for k, n in (r.get("anomalies") or {}).items():
            g["anomalies"][k] = g["anomalies"].get(k, 0) + n
    return list(groups.values())


def table(groups: list[dict[str, Any]]) -> str:
    head = (f"{'workload':<17} {'nemesis':<33} {'runs':>4} {'valid':>5} {'inval':>5} "
            f"{'unkn':>4} {'ops':>7} {'exits':>5}  anomalies")
    lines = [head, "-" * len(head)]
    for g in groups:
        anomalies = ", ".join(f"{k}={v}" for k, v in sorted(g["anomalies"].items())) or "-"
        lines.append(f"{g['workload']:<17} {g['nemesis']:<33} {g['runs']:>4} {g['valid']:>5} "
                     f"{g['invalid']:>5} {g['unknown']:>4} {g['ops']:>7} "
                     f"{g['process_exits']:>5}  {anomalies}")
    total_ops = sum(g["ops"] for g in groups)
    lines.append(f"{'total':<17} {'':<33} {sum(g['runs'] for g in groups):>4} "
                 f"{sum(g['valid'] for g in groups):>5} {sum(g['invalid'] for g in groups):>5} "
                 f"{sum(g['unknown'] for g in groups):>4} {total_ops:>7}")
    return "\n".join(lines)


def write_index(out: str, rows: list[dict[str, Any]], text: str) -> None:
    items = []
    for r in rows:
        rel = os.path.relpath(os.path.join(r["out"], "index.html"), out)
        color = {"valid": "#2b8a3e", "invalid": "#c92a2a"}.get(r["verdict"], "#f08c00")
        items.append(
            f"<tr><td>{html.escape(r['workload'])}</td><td>{html.escape(r['nemesis'])}</td>"
            f"<td>{r['seed']}</td><td style='color:{color}'><a href='{html.escape(rel)}'>"
            f"{r['verdict']}</a></td><td>{r['ops']}</td>"
            f"<td>{html.escape(json.dumps(r.get('anomalies') or {}))}</td>"
            f"<td>{r['seconds']}</td></tr>")
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write("<!doctype html><meta charset='utf-8'><title>ordo jepsen suite</title>"
                "<style>body{font-family:system-ui;margin:2em}td,th{border:1px solid #ccc;"
                "padding:2px 8px}table{border-collapse:collapse}</style>"
                f"<h1>ordo jepsen suite</h1><pre>{html.escape(text)}</pre><table>"
                "<tr><th>workload</th><th>nemesis</th><th>seed</th><th>verdict</th><th>ops</th>"
                f"<th>anomalies</th><th>s</th></tr>{''.join(items)}</table>")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/jepsen")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--nemeses", default=";".join(NEMESES),
                   help="semicolon-separated nemesis combinations, e.g. 'kill;kill,partition'")
    p.add_argument("--seeds", default="1,2", help="comma-separated seeds")
    p.add_argument("--time-limit", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=40.0)
    p.add_argument("--concurrency", type=int, default=5)
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="one seed, 10 s runs")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.time_limit = "1", 10.0
    os.makedirs(args.out, exist_ok=True)
    workloads = [w for w in args.workloads.split(",") if w]
    nemeses = [n for n in args.nemeses.split(";") if n]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = []
    total = len(workloads) * len(nemeses) * len(seeds)
    for workload in workloads:
        for nemesis in nemeses:
            for seed in seeds:
                row = run_one(args, workload, nemesis, seed)
                rows.append(row)
                print(f"[{len(rows)}/{total}] {workload} {nemesis} seed {seed}: "
                      f"{row['verdict']} ({row['ops']} ops, {row['seconds']} s)"
                      + (f" {row['anomalies']}" if row.get("anomalies") else ""), flush=True)
                with open(os.path.join(args.out, "summary.json"), "w") as f:
                    json.dump({"runs": rows, "groups": summarize(rows)}, f, indent=2)
    text = table(summarize(rows))
    print()
    print(text)
    write_index(args.out, rows, text)
    verdicts = {r["verdict"] for r in rows}
    return 1 if "invalid" in verdicts else 2 if "unknown" in verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
