"""The bank checker: money is neither created nor destroyed.

Transfers move an amount between two accounts (on different shards) only if
the source has enough; reads fetch every account in one read-only
transaction, which ordo answers at one log position, so each read is a
consistent snapshot. Every ok read must show every account, sum to the
total, and have no negative balance. The checker also requires at least one
ok read (else it knows nothing: unknown).
"""

from __future__ import annotations

from typing import Any

from ordojepsen import INVALID, UNKNOWN, VALID
from ordojepsen.history import OK, Op, pairs

ANOMALIES_PER_TYPE_MAX = 8


def check(history: list[Op], accounts: list[str], total: int) -> dict[str, Any]:
    anomalies: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, int] = {}

    def add(kind: str, item: dict[str, Any]) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        bucket = anomalies.setdefault(kind, [])
        if len(bucket) < ANOMALIES_PER_TYPE_MAX:
            bucket.append({"type": kind, **item})

    reads = 0
    finals = 0
    for inv, comp in pairs(history):
        if inv["f"] != "read" or comp is None or comp["type"] != OK:
            continue
        reads += 1
        finals += bool(comp.get("final"))
        balances: dict[str, Any] = comp["value"] or {}
        brief = {"index": comp["index"], "process": comp["process"], "value": balances,
                 "invoke_index": inv["index"], "position": comp.get("position"),
                 "final": bool(comp.get("final"))}
        missing = [a for a in accounts if balances.get(a) is None]
        if missing:
            add("missing-account", {"accounts": missing, "ops": [brief]})
        extra = sorted(set(balances) - set(accounts))
        if extra:
            add("unexpected-account", {"accounts": extra, "ops": [brief]})
        values = [v for v in balances.values() if isinstance(v, int)]
        if len(values) != len(balances):
            add("wrong-type", {"ops": [brief]})
        negative = {a: v for a, v in balances.items() if isinstance(v, int) and v < 0}
        if negative:
            add("negative-value", {"accounts": negative, "ops": [brief]})
        if not missing and sum(values) != total:
            add("wrong-total", {"total": sum(values), "expected": total,
                                "delta": sum(values) - total, "ops": [brief]})
    notes = [f"{n} {k} anomalies, {ANOMALIES_PER_TYPE_MAX} shown"
             for k, n in sorted(counts.items()) if n > ANOMALIES_PER_TYPE_MAX]
    if anomalies:
        valid = INVALID
    elif reads == 0:
        valid = UNKNOWN
        notes.append("no read completed")
    else:
        valid = VALID
    return {"valid": valid, "anomaly_types": sorted(anomalies), "anomalies": anomalies,
            "anomaly_counts": counts, "notes": notes,
            "stats": {"reads": reads, "final_reads": finals, "total": total,
                      "accounts": len(accounts)}}
