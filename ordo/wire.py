"""Translation between protobuf messages and the core's dataclasses.

This is the only place that knows both. Incoming transactions are validated
here, before anything is logged: a bad one raises :class:`InvalidArgument`
naming the offending field.
"""

from __future__ import annotations

from ordo.core import values as V
from ordo.core.limits import Limits
from ordo.core.partition import ShardMap
from ordo.core.txn import (
    Abort,
    AbortReason,
    Compare,
    KeyValue,
    Op,
    Operator,
    OpResult,
    OpType,
    Target,
    Txn,
    TxnResult,
)
from ordo.errors import InvalidArgument
from ordo.v1 import types_pb2 as pb

# ---------------------------------------------------------------- values


def length_delimited(field_number: int, raw: bytes) -> bytes:
    """A serialized message whose only field ``field_number`` holds the
    serialized message ``raw``: what wrapping ``raw`` would serialize to,
    without parsing or copying it."""
    out = bytearray()
    for number in ((field_number << 3) | 2, len(raw)):
        while number >= 0x80:
            out.append((number & 0x7F) | 0x80)
            number >>= 7
        out.append(number)
    return bytes(out) + raw


def value_to_pb(value: V.Value, out: pb.Value | None = None) -> pb.Value:
    msg = pb.Value() if out is None else out
    if isinstance(value, bytes):
        msg.bytes_value = value
    elif isinstance(value, bool):
        raise TypeError("bool is not an ordo value")
    elif isinstance(value, int):
        msg.int_value = value
    elif isinstance(value, str):
        msg.text_value = value
    else:
        items = msg.list_value.items
        msg.list_value.SetInParent()
        for item in value:
            value_to_pb(item, items.add())
    return msg


def value_from_pb(msg: pb.Value, field: str = "value") -> V.Value:
    kind = msg.WhichOneof("kind")
    if kind == "bytes_value":
        return msg.bytes_value
    if kind == "int_value":
        return msg.int_value
    if kind == "text_value":
        return msg.text_value
    if kind == "list_value":
        items: list[V.Scalar] = []
        for i, item in enumerate(msg.list_value.items):
            scalar = value_from_pb(item, f"{field}.list_value.items[{i}]")
            if isinstance(scalar, tuple):
                raise InvalidArgument("lists hold scalars, not lists", field=field)
            items.append(scalar)
        return tuple(items)
    raise InvalidArgument("value has no kind set", field=field)


def kv_to_pb(kv: KeyValue, out: pb.KeyValue) -> pb.KeyValue:
    out.key = kv.key
    out.version = kv.version
    if kv.value is not None:
        value_to_pb(kv.value, out.value)
    return out


def kv_from_pb(msg: pb.KeyValue) -> KeyValue:
    value = value_from_pb(msg.value) if msg.HasField("value") else None
    return KeyValue(msg.key, value, msg.version)


# ---------------------------------------------------------- transactions


def txn_to_pb(txn: Txn, out: pb.Txn | None = None) -> pb.Txn:
    msg = pb.Txn() if out is None else out
    for cmp in txn.compares:
        c = msg.compares.add(key=cmp.key, target=int(cmp.target), operator=int(cmp.operator))
        value_to_pb(cmp.operand, c.operand)
    for ops, field in ((txn.success, msg.success), (txn.failure, msg.failure)):
        for op in ops:
            o = field.add(type=int(op.type), key=op.key, limit=op.limit)
            if op.value is not None:
                value_to_pb(op.value, o.value)
    return msg


def participants_pb(msg: pb.Txn, shard_map: ShardMap) -> list[int]:
    """The participants of a logged transaction, without decoding its values."""
    rng = pb.OP_TYPE_RANGE
    return shard_map.participants_of(
        [c.key for c in msg.compares],
        [(o.key, o.type == rng) for ops in (msg.success, msg.failure) for o in ops],
    )


def txn_from_pb_trusted(msg: pb.Txn) -> Txn:
    """Decode a transaction that was validated before it was logged."""
    compares = tuple(
        Compare(c.key, Target(c.target), Operator(c.operator), value_from_pb(c.operand))
        for c in msg.compares
    )
    return Txn(compares, _ops_trusted(msg.success), _ops_trusted(msg.failure))


def _ops_trusted(ops: object) -> tuple[Op, ...]:
    return tuple(
        Op(
            OpType(o.type),
            o.key,
            value_from_pb(o.value) if o.HasField("value") else None,
            o.limit,
        )
        for o in ops  # type: ignore[attr-defined]
    )


def validate_txn(msg: pb.Txn, limits: Limits, shard_map: ShardMap) -> Txn:
    """Check a submitted transaction against the limits and decode it."""
    n_ops = len(msg.compares) + len(msg.success) + len(msg.failure)
    if n_ops == 0:
        raise InvalidArgument("a transaction needs at least one compare or op", field="txn")
    if n_ops > limits.txn_ops_max:
        raise InvalidArgument(
            f"{n_ops} compares and ops, more than txn_ops_max={limits.txn_ops_max}",
            field="txn",
        )
    size = msg.ByteSize()
    if size > limits.txn_bytes_max:
        raise InvalidArgument(
            f"transaction is {size} bytes, more than txn_bytes_max={limits.txn_bytes_max}",
            field="txn",
        )
    compares = []
    for i, c in enumerate(msg.compares):
        field = f"txn.compares[{i}]"
        _check_key(c.key, limits, f"{field}.key")
        if c.target not in Target._value2member_map_:
            raise InvalidArgument(f"unknown compare target {c.target}", field=f"{field}.target")
        if c.operator not in Operator._value2member_map_:
            raise InvalidArgument(
                f"unknown compare operator {c.operator}", field=f"{field}.operator"
            )
        target, operator = Target(c.target), Operator(c.operator)
        if not c.HasField("operand"):
            raise InvalidArgument("compare needs an operand", field=f"{field}.operand")
        operand = value_from_pb(c.operand, f"{field}.operand")
        if target in (Target.INT_VALUE, Target.VERSION) and not isinstance(operand, int):
            raise InvalidArgument(
                f"{target.name.lower()} compares take an int operand", field=f"{field}.operand"
            )
        if target is Target.VERSION and operand < 0:  # type: ignore[operator]
            raise InvalidArgument("versions are not negative", field=f"{field}.operand")
        if target is Target.EXISTS:
            if operand not in (0, 1) or not isinstance(operand, int):
                raise InvalidArgument(
                    "exists compares take 0 or 1", field=f"{field}.operand"
                )
            if operator not in (Operator.EQUAL, Operator.NOT_EQUAL):
                raise InvalidArgument(
                    "exists compares take = or !=", field=f"{field}.operator"
                )
        _check_value_size(operand, limits, f"{field}.operand")
        compares.append(Compare(c.key, target, operator, operand))
    success = _validate_ops(msg.success, "txn.success", limits, shard_map)
    failure = _validate_ops(msg.failure, "txn.failure", limits, shard_map)
    return Txn(tuple(compares), success, failure)


def _validate_ops(
    ops: object, name: str, limits: Limits, shard_map: ShardMap
) -> tuple[Op, ...]:
    out = []
    for i, o in enumerate(ops):  # type: ignore[call-overload]
        field = f"{name}[{i}]"
        if o.type not in OpType._value2member_map_:
            raise InvalidArgument(f"unknown op type {o.type}", field=f"{field}.type")
        kind = OpType(o.type)
        if kind is OpType.RANGE:
            if len(o.key) > limits.key_bytes_max:
                raise InvalidArgument(
                    f"prefix is {len(o.key)} bytes, more than key_bytes_max", field=f"{field}.key"
                )
            if shard_map.shard_for_prefix(o.key) is None:
                raise InvalidArgument(
                    "a range in a transaction must stay on one shard: give its prefix a "
                    "hash tag, as in 'doc:{42}:'",
                    field=f"{field}.key",
                )
            if o.limit > limits.range_keys_max:
                raise InvalidArgument(
                    f"limit is more than range_keys_max={limits.range_keys_max}",
                    field=f"{field}.limit",
                )
        else:
            _check_key(o.key, limits, f"{field}.key")
        value: V.Value | None = None
        if kind in (OpType.PUT, OpType.ADD, OpType.APPEND):
            if not o.HasField("value"):
                raise InvalidArgument(f"{kind.name.lower()} needs a value", field=f"{field}.value")
            value = value_from_pb(o.value, f"{field}.value")
            _check_value_size(value, limits, f"{field}.value")
            if kind is OpType.ADD and not isinstance(value, int):
                raise InvalidArgument("add takes an int", field=f"{field}.value")
            if kind is OpType.APPEND and isinstance(value, tuple):
                raise InvalidArgument("append takes one scalar", field=f"{field}.value")
        elif o.HasField("value"):
            raise InvalidArgument(f"{kind.name.lower()} takes no value", field=f"{field}.value")
        limit = 0
        if kind is OpType.RANGE:
            # 0 means "as many as allowed": this service's range_keys_max,
            # written into the message so the logged transaction says it.
            if o.limit == 0:
                o.limit = limits.range_keys_max
            limit = o.limit
        out.append(Op(kind, o.key, value, limit))
    return tuple(out)


def _check_key(key: bytes, limits: Limits, field: str) -> None:
    if not key:
        raise InvalidArgument("key is empty", field=field)
    if len(key) > limits.key_bytes_max:
        raise InvalidArgument(
            f"key is {len(key)} bytes, more than key_bytes_max={limits.key_bytes_max}",
            field=field,
        )


def _check_value_size(value: V.Value, limits: Limits, field: str) -> None:
    size = V.size(value)
    if size > limits.value_bytes_max:
        raise InvalidArgument(
            f"value is {size} bytes, more than value_bytes_max={limits.value_bytes_max}",
            field=field,
        )


# --------------------------------------------------------------- results


def abort_to_pb(abort: Abort, out: pb.Abort) -> None:
    out.reason = int(abort.reason)
    out.message = abort.message
    out.index = abort.index
    out.in_compare = abort.in_compare


def abort_from_pb(msg: pb.Abort) -> Abort:
    return Abort(AbortReason(msg.reason), msg.message, msg.index, msg.in_compare)


def op_results_to_pb(results: tuple[OpResult, ...], out: object) -> None:
    for result in results:
        r = out.add(index=result.index, more=result.more)  # type: ignore[attr-defined]
        for kv in result.items:
            kv_to_pb(kv, r.items.add())


def op_results_from_pb(msgs: object) -> tuple[OpResult, ...]:
    return tuple(
        OpResult(r.index, tuple(kv_from_pb(kv) for kv in r.items), r.more)
        for r in msgs  # type: ignore[attr-defined]
    )


def result_to_pb(result: TxnResult, out: pb.TxnResult | None = None) -> pb.TxnResult:
    msg = pb.TxnResult() if out is None else out
    msg.position = result.position
    msg.request_id = result.request_id
    msg.succeeded = result.succeeded
    if result.abort is not None:
        abort_to_pb(result.abort, msg.abort)
    op_results_to_pb(result.results, msg.results)
    return msg


def result_from_pb(msg: pb.TxnResult) -> TxnResult:
    return TxnResult(
        position=msg.position,
        request_id=msg.request_id,
        succeeded=msg.succeeded,
        abort=abort_from_pb(msg.abort) if msg.HasField("abort") else None,
        results=op_results_from_pb(msg.results),
    )


def merge_shard_results(position: int, request_id: str, parts: list[pb.ShardResult]) -> TxnResult:
    """Assemble the client's result from every participant's part.

    Every participant evaluates the compares and any abort identically; they
    differ only in which GET/RANGE results they own. A disagreement is a
    determinism violation and is reported, never papered over.
    """
    assert parts, "a transaction has at least one participant"
    first = parts[0]
    for part in parts[1:]:
        if part.succeeded != first.succeeded or part.HasField("abort") != first.HasField("abort"):
            raise AssertionError(
                f"shards disagree on the outcome at position {position}: "
                f"shard {first.shard} and shard {part.shard}"
            )
    results: list[OpResult] = []
    for part in parts:
        results.extend(op_results_from_pb(part.results))
    results.sort(key=lambda r: r.index)
    return TxnResult(
        position=position,
        request_id=request_id,
        succeeded=first.succeeded,
        abort=abort_from_pb(first.abort) if first.HasField("abort") else None,
        results=tuple(results),
    )
