"""Transactions, results and their deterministic evaluation.

Everything here is pure: values in, values out. The numbering of the enums
matches ``proto/ordo/v1/types.proto`` so that the wire translation is a cast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from ordo.core import values as V
from ordo.core.limits import RANGE_KEYS_MAX, TXN_RANGE_BYTES_MAX, VALUE_BYTES_MAX
from ordo.core.values import Value


class Target(IntEnum):
    VALUE = 1
    INT_VALUE = 2
    VERSION = 3
    EXISTS = 4


class Operator(IntEnum):
    EQUAL = 1
    NOT_EQUAL = 2
    LESS = 3
    LESS_EQUAL = 4
    GREATER = 5
    GREATER_EQUAL = 6


class OpType(IntEnum):
    GET = 1
    PUT = 2
    DELETE = 3
    ADD = 4
    APPEND = 5
    RANGE = 6


class AbortReason(IntEnum):
    TYPE_MISMATCH = 1
    INT_OVERFLOW = 2
    VALUE_TOO_LARGE = 3


@dataclass(frozen=True, slots=True)
class Compare:
    key: bytes
    target: Target
    operator: Operator
    operand: Value


@dataclass(frozen=True, slots=True)
class Op:
    type: OpType
    key: bytes
    value: Value | None = None
    limit: int = 0
    # How the caller spelled the key (a str, say), for presenting results.
    # Not part of the transaction: never sent, compared or hashed.
    label: object = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True, slots=True)
class Txn:
    compares: tuple[Compare, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()

    def ops(self) -> tuple[Op, ...]:
        return self.success + self.failure


@dataclass(frozen=True, slots=True)
class Versioned:
    """A key's stored state: its value and the position of its last write."""

    value: Value
    version: int


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: Value | None
    version: int


@dataclass(frozen=True, slots=True)
class OpResult:
    index: int
    items: tuple[KeyValue, ...]
    more: bool = False


@dataclass(frozen=True, slots=True)
class Abort:
    reason: AbortReason
    message: str
    index: int
    in_compare: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What evaluating a transaction produced (on one shard, or on all)."""

    succeeded: bool
    abort: Abort | None
    # Key -> new value (None deletes), in the order of first write.
    writes: tuple[tuple[bytes, Value | None], ...]
    results: tuple[OpResult, ...]


@dataclass(frozen=True, slots=True)
class TxnResult:
    position: int
    request_id: str
    succeeded: bool
    abort: Abort | None
    results: tuple[OpResult, ...] = field(default=())


Reader = Callable[[bytes], Versioned | None]
Scanner = Callable[[bytes, int], tuple[list[KeyValue], bool]]


def input_keys(txn: Txn) -> list[bytes]:
    """Keys whose state every participant needs to evaluate ``txn``.

    Compares decide the branch; ADD and APPEND can abort the transaction on a
    type or size error, which every shard must find alike. GET and RANGE
    results are only computed by their owner, so they are not inputs. The
    order is first appearance, never set order, so it is deterministic.
    """
    seen: dict[bytes, None] = {}
    for cmp in txn.compares:
        seen.setdefault(cmp.key, None)
    for op in txn.ops():
        if op.type in (OpType.ADD, OpType.APPEND):
            seen.setdefault(op.key, None)
    return list(seen)


def decided_by_log(txn: Txn) -> bool:
    """True when the log alone decides ``txn``'s result, whatever the state.

    A transaction without compares whose success branch only puts and
    deletes always succeeds, writes exactly its ops and returns no values:
    its result is known once its position is durable, before any shard has
    applied it (the coordinator answers it then). Everything else needs
    the state: compares pick the branch, ADD and APPEND may abort, GET and
    RANGE return values.
    """
    return not txn.compares and all(
        op.type is OpType.PUT or op.type is OpType.DELETE for op in txn.success
    )


def _ordered(op: Operator, left: object, right: object) -> bool:
    if op is Operator.EQUAL:
        return left == right
    if op is Operator.NOT_EQUAL:
        return left != right
    if op is Operator.LESS:
        return bool(left < right)  # type: ignore[operator]
    if op is Operator.LESS_EQUAL:
        return bool(left <= right)  # type: ignore[operator]
    if op is Operator.GREATER:
        return bool(left > right)  # type: ignore[operator]
    return bool(left >= right)  # type: ignore[operator]


class _AbortError(Exception):
    def __init__(self, abort: Abort) -> None:
        self.abort = abort


def _compare(index: int, cmp: Compare, state: Versioned | None) -> bool:
    def mismatch(what: str) -> _AbortError:
        return _AbortError(
            Abort(AbortReason.TYPE_MISMATCH, what, index=index, in_compare=True)
        )

    if cmp.target is Target.EXISTS:
        return _ordered(cmp.operator, int(state is not None), cmp.operand)
    if cmp.target is Target.VERSION:
        return _ordered(cmp.operator, 0 if state is None else state.version, cmp.operand)
    if cmp.target is Target.INT_VALUE:
        current = 0 if state is None else state.value
        if not isinstance(current, int):
            raise mismatch(f"int compare on a {V.type_name(current)} value")
        return _ordered(cmp.operator, current, cmp.operand)
    # Target.VALUE: a missing key makes the compare false, as in etcd.
    if state is None:
        return False
    stored, operand = state.value, cmp.operand
    if V.type_name(stored) != V.type_name(operand):
        raise mismatch(
            f"compare of a {V.type_name(stored)} value with a {V.type_name(operand)} operand"
        )
    if isinstance(stored, tuple) and cmp.operator not in (Operator.EQUAL, Operator.NOT_EQUAL):
        raise mismatch("lists compare only with = and !=")
    return _ordered(cmp.operator, stored, operand)


def evaluate(
    txn: Txn,
    position: int,
    read: Reader,
    owns: Callable[[bytes], bool] = lambda key: True,
    scan: Scanner | None = None,
) -> Outcome:
    """Evaluate ``txn`` at ``position`` against the state just before it.

    ``read`` must answer for every key in :func:`input_keys` and for every
    owned key; ``owns`` says which keys this evaluator owns (all of them for
    the single-node reference); ``scan(prefix, limit)`` answers RANGE ops on
    owned prefixes. Writes and GET/RANGE results are returned only for owned
    keys; the branch and any abort are the same on every participant.
    """
    local: dict[bytes, Versioned | None] = {}
    written: dict[bytes, Value | None] = {}

    def state(key: bytes) -> Versioned | None:
        if key in local:
            return local[key]
        return read(key)

    try:
        succeeded = True
        for index, cmp in enumerate(txn.compares):
            # Every compare is evaluated, so a type error aborts whatever
            # the outcome of the others.
            if not _compare(index, cmp, state(cmp.key)):
                succeeded = False
        branch = txn.success if succeeded else txn.failure
        results: list[OpResult] = []
        for index, op in enumerate(branch):
            result = _apply_op(index, op, position, state, local, written, owns, scan)
            if result is not None:
                results.append(result)
    except _AbortError as error:
        return Outcome(
            succeeded=succeeded if error.abort.in_compare is False else False,
            abort=error.abort,
            writes=(),
            results=(),
        )
    writes = tuple((key, value) for key, value in written.items() if owns(key))
    return Outcome(succeeded=succeeded, abort=None, writes=writes, results=tuple(results))


def _apply_op(
    index: int,
    op: Op,
    position: int,
    state: Callable[[bytes], Versioned | None],
    local: dict[bytes, Versioned | None],
    written: dict[bytes, Value | None],
    owns: Callable[[bytes], bool],
    scan: Scanner | None,
) -> OpResult | None:
    def write(value: Value | None) -> None:
        local[op.key] = None if value is None else Versioned(value, position)
        written[op.key] = value

    def abort(reason: AbortReason, message: str) -> _AbortError:
        return _AbortError(Abort(reason, message, index=index))

    kind = op.type
    if kind is OpType.GET:
        if not owns(op.key):
            return None
        current = state(op.key)
        item = (
            KeyValue(op.key, None, 0)
            if current is None
            else KeyValue(op.key, current.value, current.version)
        )
        return OpResult(index, (item,))
    if kind is OpType.PUT:
        assert op.value is not None
        write(op.value)
        return None
    if kind is OpType.DELETE:
        write(None)
        return None
    if kind is OpType.ADD:
        current = state(op.key)
        base = 0 if current is None else current.value
        if not isinstance(base, int):
            raise abort(AbortReason.TYPE_MISMATCH, f"add on a {V.type_name(base)} value")
        assert isinstance(op.value, int)
        total = base + op.value
        if not V.INT64_MIN <= total <= V.INT64_MAX:
            raise abort(AbortReason.INT_OVERFLOW, "add overflows int64")
        write(total)
        return None
    if kind is OpType.APPEND:
        current = state(op.key)
        items = () if current is None else current.value
        if not isinstance(items, tuple):
            raise abort(AbortReason.TYPE_MISMATCH, f"append on a {V.type_name(items)} value")
        assert op.value is not None and not isinstance(op.value, tuple)
        grown = items + (op.value,)
        if V.size(grown) > VALUE_BYTES_MAX:
            raise abort(AbortReason.VALUE_TOO_LARGE, "append makes the list too large")
        write(grown)
        return None
    assert kind is OpType.RANGE
    if not owns(op.key):
        return None
    assert scan is not None, "a RANGE on an owned prefix needs a scanner"
    return _range(index, op, local, scan)


def _range(
    index: int, op: Op, local: dict[bytes, Versioned | None], scan: Scanner
) -> OpResult:
    # 0 means the largest answer; the constant, not a per-service setting,
    # so that every shard computes the same result.
    limit = op.limit or RANGE_KEYS_MAX
    pending = [key for key in local if key.startswith(op.key)]
    # Ask for enough stored keys that deletes in this transaction cannot
    # leave the answer short.
    stored, more = scan(op.key, limit + len(pending))
    merged = {kv.key: kv for kv in stored}
    for key in pending:
        now = local[key]
        if now is None:
            merged.pop(key, None)
        else:
            merged[key] = KeyValue(key, now.value, now.version)
    keys = sorted(merged)
    if len(keys) > limit:
        keys = keys[:limit]
        more = True
    items: list[KeyValue] = []
    size = 0
    for key in keys:
        kv = merged[key]
        size += len(key) + (0 if kv.value is None else V.size(kv.value))
        if items and size > TXN_RANGE_BYTES_MAX:
            more = True
            break
        items.append(kv)
    return OpResult(index, tuple(items), more)


def touched_keys(txn: Txn) -> Sequence[bytes]:
    """Every key (and RANGE prefix) the transaction names, first appearance first."""
    seen: dict[bytes, None] = {}
    for cmp in txn.compares:
        seen.setdefault(cmp.key, None)
    for op in txn.ops():
        seen.setdefault(op.key, None)
    return list(seen)
