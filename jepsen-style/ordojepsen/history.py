"""Operations and histories, in Jepsen's shape.

An operation is a dict with Jepsen's fields::

    index    position in the history, from 0
    time     nanoseconds since the run started (monotonic clock)
    process  the logical client process (int), or "nemesis"
    type     "invoke", "ok", "fail" or "info"
    f        what the op does: "txn", "transfer", "read", "write", "cas", ...
    value    its argument (invoke) or its result (completion)
    error    why it failed or is indeterminate (completions only, optional)

plus optional extra fields (``position``: the ordo log position, ``final``:
a read made after the faults healed). Every invoke is followed, in the same
process, by exactly one completion; ``info`` means "may or may not have taken
effect" and its process is never reused: the worker continues under a new
process number, as in Jepsen.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
NEMESIS = "nemesis"

Op = dict[str, Any]


class History:
    """An append-only, thread-safe history recorder."""

    def __init__(self) -> None:
        self.t0 = time.monotonic_ns()
        self.ops: list[Op] = []
        self._lock = threading.Lock()

    def now_s(self) -> float:
        return (time.monotonic_ns() - self.t0) / 1e9

    def _append(self, op: Op) -> Op:
        with self._lock:
            op["index"] = len(self.ops)
            op["time"] = time.monotonic_ns() - self.t0
            self.ops.append(op)
        return op

    def invoke(self, process: int, f: str, value: Any, **extra: Any) -> Op:
        return self._append({"process": process, "type": INVOKE, "f": f, "value": value, **extra})

    def complete(
        self, invoke: Op, type_: str, value: Any, error: str | None = None, **extra: Any
    ) -> Op:
        assert type_ in (OK, FAIL, INFO)
        op: Op = {"process": invoke["process"], "type": type_, "f": invoke["f"], "value": value}
        if error is not None:
            op["error"] = error
        op.update(extra)
        return self._append(op)

    def nemesis(self, f: str, value: Any) -> Op:
        return self._append({"process": NEMESIS, "type": INFO, "f": f, "value": value})


# ----------------------------------------------------------------- reading


def ordered(ops: Iterable[Op]) -> list[Op]:
    out = sorted(ops, key=lambda o: o["index"])
    for i, op in enumerate(out):
        if op["index"] != i:
            raise ValueError(f"history indexes are not 0..n-1 (op {op['index']} at {i})")
    return out


def pairs(history: Iterable[Op]) -> list[tuple[Op, Op | None]]:
    """Each client invoke with its completion (None if the history ended first).

    Nemesis ops are skipped. A completion without an invoke is an error.
    """
    open_: dict[Any, Op] = {}
    out: list[tuple[Op, Op | None]] = []
    slot: dict[int, int] = {}
    for op in history:
        if op["process"] == NEMESIS:
            continue
        p = op["process"]
        if op["type"] == INVOKE:
            if p in open_:
                raise ValueError(f"process {p} invoked op {op['index']} while op "
                                 f"{open_[p]['index']} is still open")
            open_[p] = op
            slot[op["index"]] = len(out)
            out.append((op, None))
        else:
            inv = open_.pop(p, None)
            if inv is None:
                raise ValueError(f"completion {op['index']} of process {p} has no invoke")
            out[slot[inv["index"]]] = (inv, op)
    return out


def completion_type(pair: tuple[Op, Op | None]) -> str:
    return INFO if pair[1] is None else str(pair[1]["type"])


# ------------------------------------------------------------ JSON Lines


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "backslashreplace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)


def dumps(op: Op) -> str:
    ordered_op = {k: op[k] for k in ("index", "time", "process", "type", "f", "value") if k in op}
    if "error" in op:
        ordered_op["error"] = op["error"]
    for k, v in op.items():
        if k not in ordered_op:
            ordered_op[k] = v
    return json.dumps(ordered_op, default=_json_default, sort_keys=False)


def write_jsonl(path: str, ops: Iterable[Op]) -> None:
    with open(path, "w") as f:
        for op in ops:
            f.write(dumps(op) + "\n")


def read_jsonl(path: str) -> list[Op]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------- EDN


_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9_\-?!*+]*$")


class Keyword(str):
    """A string written as an EDN keyword."""


MICRO_OPS = ("append", "r", "w")


def _edn(obj: Any) -> str:
    if obj is None:
        return "nil"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, Keyword):
        return ":" + "".join(c if c.isalnum() or c in "-_?!*+./<>=" else "-" for c in obj)
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return repr(obj) if obj == obj and obj not in (float("inf"), float("-inf")) else "nil"
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8", "backslashreplace")
    if isinstance(obj, str):
        return json.dumps(obj)  # EDN strings escape like JSON for what we emit
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            key = Keyword(k) if isinstance(k, str) and _KEYWORD.match(k) else k
            items.append(f"{_edn(key)} {_edn(v)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(obj, (list, tuple)):
        elems = list(obj)
        # Micro-ops of transactions, Elle-style: [:append k v], [:r k [..]].
        if len(elems) == 3 and isinstance(elems[0], str) and elems[0] in MICRO_OPS:
            elems[0] = Keyword(elems[0])
        return "[" + " ".join(_edn(e) for e in elems) + "]"
    return json.dumps(repr(obj))


def edn_op(op: Op) -> str:
    out: dict[str, Any] = {}
    for k in ("index", "time", "type", "process", "f", "value", "error"):
        if k not in op:
            continue
        v = op[k]
        if k in ("type", "f") or (k == "process" and v == NEMESIS):
            v = Keyword(v)
        out[k] = v
    for k, v in op.items():
        if k not in out:
            out[k] = v
    return _edn(out)


def write_edn(path: str, ops: Iterable[Op]) -> None:
    with open(path, "w") as f:
        for op in ops:
            f.write(edn_op(op) + "\n")


def iter_client_completions(history: Iterable[Op]) -> Iterator[Op]:
    for op in history:
        if op["process"] != NEMESIS and op["type"] != INVOKE:
            yield op
