"""``ordo-jepsen``: run a workload against a real ordo cluster under faults, or re-check a history.

::

    ordo-jepsen run --workload bank --nemesis kill,partition --time-limit 30 \\
        --rate 50 --concurrency 5 --shards 3 --seed 7 --out results/bank-7
    ordo-jepsen check --workload list-append results/la-1/history.jsonl

Exit status: 0 valid, 1 invalid, 2 unknown (or the run could not be made).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ordojepsen import EXIT_CODES
from ordojepsen.cluster import BUG_TARGETS
from ordojepsen.nemesis import KINDS
from ordojepsen.workloads import WORKLOADS


def _nemeses(text: str) -> list[str]:
    if text in ("", "none"):
        return []
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if "all" in kinds:
        return ["kill", "pause", "partition", "power-loss"]
    for k in kinds:
        if k not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown nemesis {k!r}; known: {', '.join(KINDS)}")
    return kinds


def _workload_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[name.replace("-", "_")] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ordo-jepsen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="start a cluster, run a workload under faults, check it")
    p.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    p.add_argument("--nemesis", type=_nemeses, default=[],
                   help=f"comma-separated: {', '.join(KINDS)}, or all, or none")
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds of workload")
    p.add_argument("--rate", type=float, default=50.0, help="ops per second, all clients")
    p.add_argument("--concurrency", type=int, default=5, help="client workers")
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="draws the fault schedule")
    p.add_argument("--inject-bug", choices=sorted(BUG_TARGETS), default="",
                   help="start ordo with a deliberate bug (checker self-test)")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--client-timeout", type=float, default=2.5, help="seconds per op")
    p.add_argument("--targets", default="",
                   help="comma-separated nodes kill/pause may hit (coordinator,s0,...)")
    p.add_argument("--recovery", type=float, default=45.0,
                   help="seconds to wait for recovery after healing")
    p.add_argument("--keep-data", action="store_true", help="keep data dirs of valid runs")
    p.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                   help="workload option, e.g. logged_appends=true, accounts=8")
    p.add_argument("--log-level", default="info", help="log level of the ordo processes")

    c = sub.add_parser("check", help="check a history.jsonl again")
    c.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    c.add_argument("--shards", type=int, default=3)
    c.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE")
    c.add_argument("history")

    s = sub.add_parser("schedule", help="print the fault schedule a seed gives")
    s.add_argument("--nemesis", type=_nemeses, default=[])
    s.add_argument("--time-limit", type=float, default=30.0)
    s.add_argument("--shards", type=int, default=3)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--targets", default="")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "schedule":
        from ordojepsen.nemesis import make_schedule

        targets = [t for t in args.targets.split(",") if t] or None
        for f in make_schedule(args.seed, args.nemesis, args.time_limit, args.shards, targets):
            print(json.dumps(f.to_json()))
        return 0
    if args.command == "check":
        from ordojepsen.history import read_jsonl

        workload = WORKLOADS[args.workload](args.shards, 1.0, _workload_options(args.opt))
        result = workload.check(read_jsonl(args.history))
        print(json.dumps(result, indent=2, default=repr))
        return EXIT_CODES[result["valid"]]
    from ordojepsen.runner import Options, execute

    options = _workload_options(args.opt)
    if args.inject_bug == "ack-before-fsync" and args.workload == "list-append":
        # The bug is only visible to wait="logged" answers.
        options.setdefault("logged_appends", True)
    opts = Options(
        workload=args.workload, nemesis=args.nemesis, time_limit=args.time_limit,
        rate=args.rate, concurrency=args.concurrency, shards=args.shards, seed=args.seed,
        inject_bug=args.inject_bug, out=args.out, client_timeout=args.client_timeout,
        targets=[t for t in args.targets.split(",") if t], recovery_s=args.recovery,
        keep_data=args.keep_data, workload_options=options, log_level=args.log_level,
    )
    return execute(opts)


if __name__ == "__main__":
    sys.exit(main())
