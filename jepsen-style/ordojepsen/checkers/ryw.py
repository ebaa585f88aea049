"""Read-your-writes through another connection.

Each process writes its own key (no one else writes it), then reads it back
with ``min_position`` = the position of that write, over a different client
connection (ordo's "read your writes from any service"). Ops:

- ``write`` value ``{"key", "value", "wait"}``; ok carries ``position``
- ``read``  value ``{"key", "min_position", "expect"}``; ok adds
  ``"read"`` (the value seen) and ``"version"`` (the position of the write
  that produced it)

Any ok read that does not return the process's own last acknowledged value
is an anomaly: ``stale-read`` when it saw an older version than the write
(a version below ``min_position``, or nothing), ``wrong-value`` otherwise.
"""

from __future__ import annotations

from typing import Any

from ordojepsen import INVALID, UNKNOWN, VALID
from ordojepsen.history import OK, Op, pairs

ANOMALIES_PER_TYPE_MAX = 8


def check(history: list[Op]) -> dict[str, Any]:
    anomalies: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    last_write: dict[Any, Op] = {}  # key -> ok completion of its latest write
    reads = 0

    def add(kind: str, item: dict[str, Any]) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        bucket = anomalies.setdefault(kind, [])
        if len(bucket) < ANOMALIES_PER_TYPE_MAX:
            bucket.append({"type": kind, **item})

    for inv, comp in pairs(history):
        if comp is None or comp["type"] != OK:
            continue
        if inv["f"] == "write":
            last_write[inv["value"]["key"]] = comp
            continue
        if inv["f"] != "read":
            continue
        reads += 1
        v = comp["value"]
        expect, seen = v.get("expect"), v.get("read")
        version = v.get("version", 0) or 0
        if seen == expect:
            continue
        write = last_write.get(v["key"])
        item = {
            "key": v["key"], "expected": expect, "read": seen, "version": version,
            "min_position": v.get("min_position"),
            "ops": [o for o in (write, comp) if o is not None],
        }
        if version < (v.get("min_position") or 0):
            add("stale-read", item)
        else:
            add("wrong-value", item)
    if anomalies:
        valid = INVALID
    elif reads == 0:
        valid = UNKNOWN
    else:
        valid = VALID
    notes = [] if reads else ["no read completed"]
    return {"valid": valid, "anomaly_types": sorted(anomalies), "anomalies": anomalies,
            "anomaly_counts": counts, "notes": notes, "stats": {"reads": reads}}
