"""Running the runner from tests: one subprocess, its results.json, and a readable failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

RUNNER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "ordo_jepsen.py")


@dataclass
class Outcome:
    code: int
    results: dict[str, Any]
    output: str
    out: str

    @property
    def anomaly_types(self) -> set[str]:
        return set(self.results.get("anomaly_types", []))

    def explain(self, history_lines: int = 30) -> str:
        """What a failing test prints: verdict, anomalies and their ops, faults, history."""
        r = self.results
        parts = [
            f"exit {self.code}, verdict {r.get('verdict')}, results in {self.out}",
            f"counts: {json.dumps(r.get('counts', {}).get('by_f'))}",
            f"anomalies: {json.dumps(r.get('checker', {}).get('anomalies'), default=repr)[:6000]}",
            f"notes: {r.get('checker', {}).get('notes')} {r.get('notes')}",
            f"process exits: {json.dumps(r.get('process_exits'))[:3000]}",
            "faults: " + "; ".join(
                f"{f['kind']} {f['start']}-{f['end']} {f.get('nodes') or f.get('shape')}"
                for f in r.get("faults", [])),
        ]
        indexes: set[int] = set()
        for items in r.get("checker", {}).get("anomalies", {}).values():
            for item in items[:2]:
                for op in item.get("ops", []):
                    for k in ("index", "invoke_index"):
                        if isinstance(op.get(k), int):
                            indexes.add(op[k])
        path = os.path.join(self.out, "history.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                lines = f.readlines()
            if indexes:
                lo, hi = max(0, min(indexes) - 5), min(len(lines), max(indexes) + 6)
            else:
                lo, hi = max(0, len(lines) - history_lines), len(lines)
            parts.append(f"history[{lo}:{hi}]:\n" + "".join(lines[lo:hi])[-8000:])
        parts.append("runner output:\n" + self.output[-3000:])
        return "\n".join(parts)


def run(out: str, *args: str, timeout: float = 150.0) -> Outcome:
    env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="false")
    proc = subprocess.run([sys.executable, RUNNER, "run", *args, "--out", out],
                          capture_output=True, text=True, timeout=timeout, env=env)
    try:
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = {}
    return Outcome(proc.returncode, results, proc.stdout + proc.stderr, out)
