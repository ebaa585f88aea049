"""Linearizability of single registers: a small Wing-Gong-Lowe style search.

Ops (Jepsen's "independent" shape, ``value = [key, v]``):

- ``read``  ok value ``[k, v]`` (None when the key is missing)
- ``write`` value ``[k, v]``
- ``cas``   value ``[k, [old, new]]``; ok only if the swap happened, fail if
  the compare was false (then it had no effect)

Each key is checked on its own. The search looks for a total order of the
ops of one key that respects real time (an op that completed before another
was invoked comes first) and the register's sequential specification. ok ops
must all be placed; indeterminate (``info``) writes and cas may be placed
anywhere after their invocation, or not at all; ``info`` reads and every
``fail`` op are dropped. Memoizing (set of placed ops, register value), as
Lowe's refinement of Wing & Gong does, keeps the search small for the
short per-key histories the workload produces; a per-key step budget turns
a search that is still too large into an ``unknown`` rather than a hang.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ordojepsen import INVALID, UNKNOWN, VALID
from ordojepsen.history import INFO, OK, Op, pairs

STEPS_PER_KEY_MAX = 400_000
INF = float("inf")


@dataclass(frozen=True)
class _Op:
    n: int
    f: str
    arg: Any  # write: value, cas: (old, new), read: observed value
    inv: int
    ret: float
    required: bool
    invoke: Op
    complete: Op | None

    def brief(self) -> dict[str, Any]:
        op = self.complete or self.invoke
        return {"index": op["index"], "invoke_index": self.invoke["index"],
                "process": op["process"], "type": op["type"] if self.complete else INFO,
                "f": self.f, "value": op["value"]}


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def _step(op: _Op, state: Any) -> tuple[bool, Any]:
    if op.f == "read":
        return state == op.arg, state
    if op.f == "write":
        return True, op.arg
    old, new = op.arg
    return (True, new) if state == old else (False, state)


def check_key(ops: list[_Op], initial: Any = None) -> dict[str, Any]:
    ops = sorted(ops, key=lambda o: o.inv)
    n = len(ops)
    required_mask = 0
    for o in ops:
        if o.required:
            required_mask |= 1 << o.n
    if required_mask == 0:
        return {"valid": VALID, "steps": 0}
    by_n = {o.n: o for o in ops}
    seen: set[tuple[int, Any]] = set()
    steps = 0
    best_mask, best_state = 0, initial

    def eligible(mask: int) -> list[_Op]:
        min_ret = INF
        for o in ops:
            if o.required and not mask >> o.n & 1 and o.ret < min_ret:
                min_ret = o.ret
        return [o for o in ops if not mask >> o.n & 1 and o.inv < min_ret]

    stack: list[tuple[int, Any, list[_Op]]] = [(0, initial, eligible(0))]
    seen.add((0, initial))
    while stack:
        mask, state, cands = stack[-1]
        if not cands:
            stack.pop()
            continue
        o = cands.pop()
        steps += 1
        if steps > STEPS_PER_KEY_MAX:
            return {"valid": UNKNOWN, "steps": steps,
                    "note": f"search over {n} ops gave up after {STEPS_PER_KEY_MAX} steps"}
        ok, new_state = _step(o, state)
        if not ok:
            continue
        new_mask = mask | 1 << o.n
        if new_mask & required_mask == required_mask:
            return {"valid": VALID, "steps": steps}
        key = (new_mask, new_state)
        if key in seen:
            continue
        seen.add(key)
        if bin(new_mask & required_mask).count("1") > bin(best_mask & required_mask).count("1"):
            best_mask, best_state = new_mask, new_state
        stack.append((new_mask, new_state, eligible(new_mask)))
    # No order works. Explain with the furthest point the search reached.
    placed = [by_n[i] for i in range(n) if best_mask >> i & 1]
    pending = [o for o in eligible(best_mask)]
    return {
        "valid": INVALID, "steps": steps,
        "linearized": [o.brief() for o in sorted(placed, key=lambda o: o.inv)][-12:],
        "state_after_linearized": best_state,
        "could_not_place": [o.brief() for o in pending if o.required][:12],
    }


def check(history: list[Op], initial: Any = None) -> dict[str, Any]:
    per_key: dict[Any, list[_Op]] = defaultdict(list)
    for inv, comp in pairs(history):
        f = inv["f"]
        if f not in ("read", "write", "cas"):
            continue
        kind = INFO if comp is None else comp["type"]
        if kind not in (OK, INFO):
            continue  # fail: certainly no effect
        if f == "read" and kind != OK:
            continue  # an indeterminate read tells nothing
        key = _freeze(inv["value"][0])
        value = (comp if kind == OK and comp is not None else inv)["value"][1]
        arg = tuple(value) if f == "cas" else _freeze(value)
        ret = INF if kind == INFO or comp is None else comp["index"]
        ops = per_key[key]
        ops.append(_Op(len(ops), f, arg, inv["index"], ret, kind == OK, inv, comp))
    anomalies: list[dict[str, Any]] = []
    unknown_keys: list[Any] = []
    steps = 0
    for key in sorted(per_key, key=repr):
        result = check_key(per_key[key], initial)
        steps += result["steps"]
        if result["valid"] == INVALID:
            anomalies.append({"type": "nonlinearizable", "key": key,
                              **{k: v for k, v in result.items() if k not in ("valid", "steps")},
                              "ops": result["could_not_place"]})
        elif result["valid"] == UNKNOWN:
            unknown_keys.append(key)
    valid = INVALID if anomalies else UNKNOWN if unknown_keys else VALID
    notes = [f"linearizability search gave up on keys {unknown_keys[:10]}"] if unknown_keys else []
    if not per_key:
        valid = UNKNOWN
        notes.append("no register ops")
    return {"valid": valid, "anomaly_types": ["nonlinearizable"] if anomalies else [],
            "anomalies": {"nonlinearizable": anomalies[:8]} if anomalies else {},
            "anomaly_counts": {"nonlinearizable": len(anomalies)} if anomalies else {},
            "notes": notes,
            "stats": {"keys": len(per_key), "ops": sum(len(v) for v in per_key.values()),
                      "search_steps": steps}}
