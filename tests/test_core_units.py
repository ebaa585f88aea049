"""Unit tests of the pure core: values, routing, evaluation, wire and errors.

Each test pins one behaviour and is named for it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordo import errors, wire
from ordo.core import values as V
from ordo.core.apply import MemoryMVCC
from ordo.core.limits import RANGE_KEYS_MAX, Limits
from ordo.core.partition import ShardMap, hash_tag
from ordo.core.txn import (
    Abort,
    AbortReason,
    Compare,
    KeyValue,
    Op,
    Operator,
    OpResult,
    OpType,
    Outcome,
    Target,
    Txn,
    TxnResult,
    Versioned,
    evaluate,
)
from ordo.v1 import types_pb2 as pb

# ------------------------------------------------------------- helpers


def store_with(*puts: tuple[bytes, V.Value], position: int = 1) -> MemoryMVCC:
    store = MemoryMVCC()
    if puts:
        store.write(position, tuple(puts))
    return store


def run(txn: Txn, store: MemoryMVCC | None = None, position: int = 10) -> Outcome:
    """Evaluate on one node that owns every key, as the reference does."""
    store = MemoryMVCC() if store is None else store
    return evaluate(
        txn,
        position,
        read=lambda k: store.read_before(k, position),
        owns=lambda k: True,
        scan=lambda prefix, limit: store.scan_before(prefix, position, limit),
    )


def cmp(key: bytes, target: Target, operator: Operator, operand: V.Value) -> Compare:
    return Compare(key, target, operator, operand)


def get(key: bytes) -> Op:
    return Op(OpType.GET, key)


def put(key: bytes, value: V.Value) -> Op:
    return Op(OpType.PUT, key, value)


def blake_slot(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


# -------------------------------------------------------------- values

int64s = st.integers(V.INT64_MIN, V.INT64_MAX)
scalars = st.one_of(st.binary(max_size=16), int64s, st.text(max_size=16))
ordo_values = st.one_of(scalars, st.lists(scalars, max_size=6).map(tuple))


@given(ordo_values)
def test_values_encode_decode_round_trip(value: V.Value) -> None:
    assert V.check_value(value) == value
    decoded = V.decode(V.encode(value))
    assert decoded == value
    assert type(decoded) is type(value)
    if isinstance(value, tuple):
        assert [type(x) for x in decoded] == [type(x) for x in value]  # type: ignore[union-attr]


@given(ordo_values, ordo_values)
def test_values_encoding_is_injective(a: V.Value, b: V.Value) -> None:
    same = a == b and V.type_name(a) == V.type_name(b)
    if isinstance(a, tuple) and isinstance(b, tuple) and same:
        same = [type(x) for x in a] == [type(x) for x in b]
    assert (V.encode(a) == V.encode(b)) == same


def test_values_tombstone_round_trips_as_none() -> None:
    assert V.decode(V.encode(None)) is None


@pytest.mark.parametrize("value", [True, False, (1, True), (b"a", False)])
def test_values_bool_is_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        V.check_value(value)


def test_values_type_name_rejects_bool() -> None:
    with pytest.raises(TypeError):
        V.type_name(True)


def test_wire_value_to_pb_rejects_bool() -> None:
    with pytest.raises(TypeError):
        wire.value_to_pb(True)


@pytest.mark.parametrize("value", [V.INT64_MAX + 1, V.INT64_MIN - 1, ((1, 2),), [1], 1.5, None])
def test_values_check_value_rejects_non_values(value: object) -> None:
    with pytest.raises(ValueError):
        V.check_value(value)


# ------------------------------------------------------------- routing


@pytest.mark.parametrize("shard_count", range(1, 33))
def test_hash_tag_keys_share_a_shard_for_any_shard_count(shard_count: int) -> None:
    shard_map = ShardMap(shard_count)
    assert shard_map.shard_for_key(b"doc:{42}:title") == shard_map.shard_for_key(b"doc:{42}:body")
    assert shard_map.shard_for_key(b"doc:{42}:title") == blake_slot(b"42") % shard_count


@settings(max_examples=50)
@given(st.binary(max_size=8), st.binary(max_size=8), st.integers(1, 16))
def test_hash_tag_routes_by_the_tag_alone(before: bytes, after: bytes, shard_count: int) -> None:
    before = before.replace(b"{", b"")
    shard_map = ShardMap(shard_count)
    key = before + b"{user7}" + after
    assert shard_map.shard_for_key(key) == shard_map.shard_for_key(b"{user7}")


def test_empty_hash_tag_hashes_the_whole_key() -> None:
    assert hash_tag(b"x{}1") is None
    # Only the first {...} counts: an empty one means no tag at all.
    assert hash_tag(b"x{}{t}") is None
    for n in range(2, 17):
        shard_map = ShardMap(n)
        for key in (b"x{}1", b"x{}2", b"x{}{t}"):
            assert shard_map.shard_for_key(key) == blake_slot(key) % n
    # ...so keys with an empty tag do spread over shards.
    spread = {ShardMap(8).shard_for_key(b"x{}%d" % i) for i in range(64)}
    assert len(spread) > 1


def test_unclosed_brace_hashes_the_whole_key() -> None:
    assert hash_tag(b"doc:{42") is None
    assert ShardMap(7).shard_for_key(b"doc:{42") == blake_slot(b"doc:{42") % 7


@pytest.mark.parametrize("shard_count", [2, 3, 8])
def test_prefix_routing_is_none_without_a_tag_when_sharded(shard_count: int) -> None:
    shard_map = ShardMap(shard_count)
    assert shard_map.shard_for_prefix(b"doc:") is None
    assert shard_map.shard_for_prefix(b"") is None
    assert shard_map.shard_for_prefix(b"doc:{}") is None
    assert shard_map.shard_for_prefix(b"doc:{42") is None


def test_prefix_routing_is_shard_zero_with_one_shard() -> None:
    assert ShardMap(1).shard_for_prefix(b"doc:") == 0
    assert ShardMap(1).shard_for_prefix(b"") == 0


@pytest.mark.parametrize("shard_count", range(1, 9))
def test_prefix_with_a_tag_routes_with_every_key_under_it(shard_count: int) -> None:
    shard_map = ShardMap(shard_count)
    owner = shard_map.shard_for_prefix(b"doc:{42}")
    assert owner is not None
    for suffix in (b"", b":title", b":body", b"{other}"):
        assert shard_map.shard_for_key(b"doc:{42}" + suffix) == owner


# ---------------------------------------------------------- evaluation


def test_add_on_missing_key_counts_as_zero() -> None:
    out = run(Txn(success=(Op(OpType.ADD, b"n", 5),)))
    assert out.abort is None
    assert out.writes == ((b"n", 5),)


def test_add_on_text_aborts_with_type_mismatch_and_no_writes() -> None:
    store = store_with((b"n", "five"))
    out = run(Txn(success=(put(b"other", 1), Op(OpType.ADD, b"n", 1), get(b"n"))), store)
    assert out.abort is not None
    assert out.abort.reason is AbortReason.TYPE_MISMATCH
    assert out.abort.index == 1 and out.abort.in_compare is False
    assert out.succeeded is True  # the success branch ran, then aborted
    assert out.writes == ()
    assert out.results == ()


def test_append_on_int_aborts_with_type_mismatch() -> None:
    out = run(Txn(success=(Op(OpType.APPEND, b"l", b"x"),)), store_with((b"l", 3)))
    assert out.abort is not None and out.abort.reason is AbortReason.TYPE_MISMATCH
    assert out.writes == ()


def test_append_on_missing_key_starts_a_list() -> None:
    out = run(Txn(success=(Op(OpType.APPEND, b"l", b"x"), Op(OpType.APPEND, b"l", 2))))
    assert out.writes == ((b"l", (b"x", 2)),)


@pytest.mark.parametrize(
    ("start", "delta"),
    [(V.INT64_MAX, 1), (V.INT64_MIN, -1), (V.INT64_MAX - 5, 6), (V.INT64_MIN, V.INT64_MIN)],
)
def test_add_int64_overflow_aborts_with_int_overflow(start: int, delta: int) -> None:
    out = run(Txn(success=(Op(OpType.ADD, b"n", delta),)), store_with((b"n", start)))
    assert out.abort is not None and out.abort.reason is AbortReason.INT_OVERFLOW
    assert out.writes == ()


def test_add_up_to_int64_bounds_does_not_abort() -> None:
    out = run(Txn(success=(Op(OpType.ADD, b"n", 1),)), store_with((b"n", V.INT64_MAX - 1)))
    assert out.abort is None and out.writes == ((b"n", V.INT64_MAX),)


@pytest.mark.parametrize("operator", list(Operator))
def test_value_compare_on_a_missing_key_is_false(operator: Operator) -> None:
    out = run(Txn((cmp(b"k", Target.VALUE, operator, b"x"),)))
    assert out.abort is None
    assert out.succeeded is False


@pytest.mark.parametrize(
    ("present", "operator", "operand", "holds"),
    [
        (False, Operator.EQUAL, 0, True),
        (False, Operator.EQUAL, 1, False),
        (False, Operator.NOT_EQUAL, 1, True),
        (True, Operator.EQUAL, 1, True),
        (True, Operator.EQUAL, 0, False),
        (True, Operator.NOT_EQUAL, 0, True),
    ],
)
def test_exists_compare(present: bool, operator: Operator, operand: int, holds: bool) -> None:
    store = store_with((b"k", b"")) if present else MemoryMVCC()
    out = run(Txn((cmp(b"k", Target.EXISTS, operator, operand),)), store)
    assert out.abort is None and out.succeeded is holds


def test_exists_compare_sees_a_deleted_key_as_missing() -> None:
    store = store_with((b"k", 1))
    store.write(2, ((b"k", None),))
    out = run(Txn((cmp(b"k", Target.EXISTS, Operator.EQUAL, 0),)), store)
    assert out.succeeded is True


def test_version_compare_of_a_missing_key_is_zero() -> None:
    out = run(Txn((cmp(b"k", Target.VERSION, Operator.EQUAL, 0),)))
    assert out.abort is None and out.succeeded is True


def test_version_compare_is_the_position_of_the_last_write() -> None:
    store = store_with((b"k", 1), position=3)
    store.write(7, ((b"k", 2),))
    assert run(Txn((cmp(b"k", Target.VERSION, Operator.EQUAL, 7),)), store).succeeded
    assert not run(Txn((cmp(b"k", Target.VERSION, Operator.EQUAL, 3),)), store).succeeded


def test_int_value_compare_on_a_missing_key_counts_as_zero() -> None:
    out = run(Txn((cmp(b"k", Target.INT_VALUE, Operator.EQUAL, 0),)))
    assert out.abort is None and out.succeeded is True


@pytest.mark.parametrize("mismatch_first", [True, False])
def test_compare_type_mismatch_aborts_even_if_another_compare_is_false(
    mismatch_first: bool,
) -> None:
    store = store_with((b"text", "hello"), (b"n", 1))
    false_cmp = cmp(b"n", Target.INT_VALUE, Operator.EQUAL, 2)
    bad_cmp = cmp(b"text", Target.VALUE, Operator.EQUAL, 5)  # text vs int
    compares = (bad_cmp, false_cmp) if mismatch_first else (false_cmp, bad_cmp)
    out = run(Txn(compares, (put(b"s", 1),), (put(b"f", 1),)), store)
    assert out.abort is not None
    assert out.abort.reason is AbortReason.TYPE_MISMATCH
    assert out.abort.in_compare is True
    assert out.abort.index == (0 if mismatch_first else 1)
    assert out.succeeded is False
    assert out.writes == ()


def test_list_value_compares_only_with_equal_and_not_equal() -> None:
    store = store_with((b"l", (1, 2)))
    assert run(Txn((cmp(b"l", Target.VALUE, Operator.EQUAL, (1, 2)),)), store).succeeded
    out = run(Txn((cmp(b"l", Target.VALUE, Operator.LESS, (1, 3)),)), store)
    assert out.abort is not None and out.abort.reason is AbortReason.TYPE_MISMATCH


def test_int_value_compare_on_bytes_aborts() -> None:
    out = run(Txn((cmp(b"k", Target.INT_VALUE, Operator.LESS, 3),)), store_with((b"k", b"3")))
    assert out.abort is not None and out.abort.reason is AbortReason.TYPE_MISMATCH


def test_put_then_get_in_one_txn_sees_the_put() -> None:
    out = run(Txn(success=(put(b"k", "v"), get(b"k"))), store_with((b"k", "old")), position=12)
    assert out.results == (OpResult(1, (KeyValue(b"k", "v", 12),)),)
    assert out.writes == ((b"k", "v"),)


def test_delete_then_get_in_one_txn_sees_a_missing_key() -> None:
    out = run(Txn(success=(Op(OpType.DELETE, b"k"), get(b"k"))), store_with((b"k", 1)))
    assert out.results == (OpResult(1, (KeyValue(b"k", None, 0),)),)
    assert out.writes == ((b"k", None),)


def test_writes_keep_the_order_of_first_write_and_the_last_value() -> None:
    out = run(Txn(success=(put(b"b", 1), put(b"a", 2), put(b"b", 3))))
    assert out.writes == ((b"b", 3), (b"a", 2))


def test_failure_branch_runs_when_a_compare_is_false() -> None:
    out = run(Txn((cmp(b"k", Target.EXISTS, Operator.EQUAL, 1),), (put(b"s", 1),), (put(b"f", 1),)))
    assert out.succeeded is False and out.writes == ((b"f", 1),)


def test_range_in_a_txn_sees_its_own_earlier_puts_and_deletes() -> None:
    store = store_with((b"d{1}a", 1), (b"d{1}b", 2), (b"d{1}c", 3), (b"e{1}z", 9), position=4)
    txn = Txn(
        success=(
            Op(OpType.DELETE, b"d{1}a"),
            put(b"d{1}bb", 5),
            put(b"d{1}c", 30),
            Op(OpType.RANGE, b"d{1}", None, 10),
            put(b"d{1}d", 7),  # after the range: not seen by it
        )
    )
    out = run(txn, store, position=10)
    assert out.results == (
        OpResult(
            3,
            (
                KeyValue(b"d{1}b", 2, 4),
                KeyValue(b"d{1}bb", 5, 10),
                KeyValue(b"d{1}c", 30, 10),
            ),
            more=False,
        ),
    )


def test_range_respects_limit_and_sets_more() -> None:
    store = store_with(*((b"p{1}%d" % i, i) for i in range(5)), position=2)
    out = run(Txn(success=(Op(OpType.RANGE, b"p{1}", None, 2),)), store)
    assert out.results == (
        OpResult(0, (KeyValue(b"p{1}0", 0, 2), KeyValue(b"p{1}1", 1, 2)), more=True),
    )
    exact = run(Txn(success=(Op(OpType.RANGE, b"p{1}", None, 5),)), store)
    assert len(exact.results[0].items) == 5 and exact.results[0].more is False


def test_range_limit_counts_after_the_txns_own_deletes() -> None:
    store = store_with(*((b"p{1}%d" % i, i) for i in range(4)), position=2)
    txn = Txn(
        success=(
            Op(OpType.DELETE, b"p{1}0"),
            Op(OpType.DELETE, b"p{1}1"),
            Op(OpType.RANGE, b"p{1}", None, 2),
        )
    )
    out = run(txn, store)
    assert out.results == (
        OpResult(2, (KeyValue(b"p{1}2", 2, 2), KeyValue(b"p{1}3", 3, 2)), more=False),
    )


def test_range_more_is_set_when_own_puts_exceed_the_limit() -> None:
    txn = Txn(success=(put(b"p{1}a", 1), put(b"p{1}b", 2), Op(OpType.RANGE, b"p{1}", None, 1)))
    out = run(txn)
    assert out.results == (OpResult(2, (KeyValue(b"p{1}a", 1, 10),), more=True),)


def test_range_limit_zero_means_range_keys_max() -> None:
    keys = [b"p{1}%06d" % i for i in range(RANGE_KEYS_MAX + 1)]
    store = store_with(*((k, b"") for k in keys), position=2)
    out = run(Txn(success=(Op(OpType.RANGE, b"p{1}", None, 0),)), store)
    (result,) = out.results
    assert [kv.key for kv in result.items] == keys[:RANGE_KEYS_MAX]
    assert result.more is True


def test_a_range_in_a_transaction_stops_at_txn_range_bytes_max() -> None:
    from ordo.core.limits import TXN_RANGE_BYTES_MAX

    value = b"v" * 10_000
    keys = [b"p{1}%03d" % i for i in range(40)]
    store = store_with(*((k, value) for k in keys), position=2)
    (result,) = run(Txn(success=(Op(OpType.RANGE, b"p{1}", None, 0),)), store).results
    taken = len(result.items)
    assert result.more is True and 0 < taken < len(keys)
    assert taken * (len(keys[0]) + len(value)) <= TXN_RANGE_BYTES_MAX
    assert (taken + 1) * (len(keys[0]) + len(value)) > TXN_RANGE_BYTES_MAX


def test_aborted_txn_returns_no_results() -> None:
    out = run(Txn(success=(get(b"k"), Op(OpType.ADD, b"t", 1))), store_with((b"t", "x")))
    assert out.abort is not None and out.results == ()


def test_memory_mvcc_reads_the_state_just_before_a_position() -> None:
    store = store_with((b"k", 1), position=3)
    store.write(5, ((b"k", None),))
    store.write(8, ((b"k", 2),))
    assert store.read_before(b"k", 3) is None
    assert store.read_before(b"k", 4) == Versioned(1, 3)
    assert store.read_before(b"k", 6) is None
    assert store.read_before(b"k", 9) == Versioned(2, 8)


# ---------------------------------------------------------------- wire

ALL_SHARDS = ShardMap(4)


@st.composite
def wire_txns(draw: st.DrawFn) -> Txn:
    keys = st.sampled_from([b"k", b"doc:{42}:a", b"x{}y"])
    compares = []
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(Target))
        operator = draw(st.sampled_from(Operator))
        operand: V.Value
        if target is Target.VALUE:
            operand = draw(ordo_values)
        elif target is Target.INT_VALUE:
            operand = draw(int64s)
        elif target is Target.VERSION:
            operand = draw(st.integers(0, 2**63 - 1))
        else:
            operand = draw(st.integers(0, 1))
            operator = draw(st.sampled_from([Operator.EQUAL, Operator.NOT_EQUAL]))
        compares.append(Compare(draw(keys), target, operator, operand))

    def ops() -> tuple[Op, ...]:
        out = []
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(OpType))
            if kind is OpType.RANGE:
                out.append(Op(kind, b"doc:{42}", None, draw(st.integers(0, 10_000))))
            elif kind is OpType.PUT:
                out.append(Op(kind, draw(keys), draw(ordo_values)))
            elif kind is OpType.ADD:
                out.append(Op(kind, draw(keys), draw(int64s)))
            elif kind is OpType.APPEND:
                out.append(Op(kind, draw(keys), draw(scalars)))
            else:
                out.append(Op(kind, draw(keys)))
        return tuple(out)

    txn = Txn(tuple(compares), ops(), ops())
    if not txn.compares and not txn.ops():
        txn = Txn(success=(get(b"k"),))
    return txn


@settings(max_examples=200)
@given(wire_txns())
def test_wire_txn_round_trip(txn: Txn) -> None:
    msg = wire.txn_to_pb(txn)
    validated = wire.validate_txn(msg, Limits(), ALL_SHARDS)
    assert validated == _with_range_limits(txn, Limits().range_keys_max)
    parsed = pb.Txn.FromString(msg.SerializeToString())
    assert wire.txn_from_pb_trusted(parsed) == validated


def _with_range_limits(txn: Txn, limit: int) -> Txn:
    """The transaction as validation logs it: RANGE limit 0 made explicit."""
    def fix(ops: tuple[Op, ...]) -> tuple[Op, ...]:
        return tuple(
            Op(o.type, o.key, o.value, limit) if o.type is OpType.RANGE and o.limit == 0 else o
            for o in ops
        )
    return Txn(txn.compares, fix(txn.success), fix(txn.failure))


def test_wire_range_limit_zero_is_logged_as_the_configured_maximum() -> None:
    msg = wire.txn_to_pb(Txn(success=(Op(OpType.RANGE, b"doc:{42}", None, 0),)))
    txn = wire.validate_txn(msg, Limits(range_keys_max=77), ALL_SHARDS)
    assert txn.success[0].limit == 77
    assert wire.txn_from_pb_trusted(msg).success[0].limit == 77


key_values = st.builds(
    KeyValue,
    st.binary(min_size=1, max_size=8),
    st.one_of(st.none(), ordo_values),
    st.integers(0, 2**63),
)
op_results = st.builds(
    OpResult, st.integers(0, 127), st.lists(key_values, max_size=3).map(tuple), st.booleans()
)
aborts = st.builds(
    Abort, st.sampled_from(AbortReason), st.text(max_size=10), st.integers(0, 127), st.booleans()
)
txn_results = st.builds(
    TxnResult,
    st.integers(1, 2**63),
    st.text(max_size=12),
    st.booleans(),
    st.one_of(st.none(), aborts),
    st.lists(op_results, max_size=3).map(tuple),
)


@settings(max_examples=200)
@given(txn_results)
def test_wire_result_round_trip(result: TxnResult) -> None:
    msg = wire.result_to_pb(result)
    assert wire.result_from_pb(pb.TxnResult.FromString(msg.SerializeToString())) == result


def test_wire_result_round_trip_keeps_present_default_values() -> None:
    # b"", 0, "" and [] are values, not "missing": the KeyValue must say so.
    items = tuple(KeyValue(b"k%d" % i, v, 3) for i, v in enumerate((b"", 0, "", ())))
    result = TxnResult(5, "r", True, None, (OpResult(0, items),))
    assert wire.result_from_pb(wire.result_to_pb(result)) == result


# -------------------------------------------------------- validate_txn


def pb_txn(**kwargs: Any) -> pb.Txn:
    return pb.Txn(**kwargs)


def pb_op(kind: OpType, key: bytes, value: V.Value | None = None, limit: int = 0) -> pb.Op:
    op = pb.Op(type=int(kind), key=key, limit=limit)
    if value is not None:
        wire.value_to_pb(value, op.value)
    return op


def pb_cmp(key: bytes, target: int, operator: int, operand: V.Value) -> pb.Compare:
    c = pb.Compare(key=key, target=target, operator=operator)
    wire.value_to_pb(operand, c.operand)
    return c


def nested_list_value() -> pb.Value:
    v = pb.Value()
    inner = v.list_value.items.add()
    inner.list_value.SetInParent()
    return v


SMALL = Limits(key_bytes_max=8, value_bytes_max=16, txn_ops_max=4, txn_bytes_max=200)

INVALID: list[tuple[str, pb.Txn, Limits, ShardMap, str]] = [
    ("empty txn", pb_txn(), Limits(), ALL_SHARDS, "txn"),
    (
        "empty op key",
        pb_txn(success=[pb_op(OpType.GET, b"")]),
        Limits(),
        ALL_SHARDS,
        "txn.success[0].key",
    ),
    (
        "empty compare key",
        pb_txn(compares=[pb_cmp(b"", int(Target.VALUE), int(Operator.EQUAL), b"x")]),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].key",
    ),
    (
        "key over key_bytes_max",
        pb_txn(success=[pb_op(OpType.GET, b"k"), pb_op(OpType.PUT, b"123456789", b"v")]),
        SMALL,
        ALL_SHARDS,
        "txn.success[1].key",
    ),
    (
        "failure key over key_bytes_max",
        pb_txn(failure=[pb_op(OpType.DELETE, b"x" * 9)]),
        SMALL,
        ALL_SHARDS,
        "txn.failure[0].key",
    ),
    (
        "range prefix over key_bytes_max",
        pb_txn(success=[pb_op(OpType.RANGE, b"{1}" + b"x" * 6, limit=1)]),
        SMALL,
        ALL_SHARDS,
        "txn.success[0].key",
    ),
    (
        "value over value_bytes_max",
        pb_txn(success=[pb_op(OpType.PUT, b"k", b"x" * 17)]),
        SMALL,
        ALL_SHARDS,
        "txn.success[0].value",
    ),
    (
        "list value over value_bytes_max",
        pb_txn(success=[pb_op(OpType.PUT, b"k", (b"x" * 9, b"y" * 8))]),
        SMALL,
        ALL_SHARDS,
        "txn.success[0].value",
    ),
    (
        "operand over value_bytes_max",
        pb_txn(compares=[pb_cmp(b"k", int(Target.VALUE), int(Operator.EQUAL), "x" * 17)]),
        SMALL,
        ALL_SHARDS,
        "txn.compares[0].operand",
    ),
    (
        "more than txn_ops_max",
        pb_txn(success=[pb_op(OpType.GET, b"k")] * 5),
        SMALL,
        ALL_SHARDS,
        "txn",
    ),
    (
        "compares count toward txn_ops_max",
        pb_txn(
            compares=[pb_cmp(b"k", int(Target.EXISTS), int(Operator.EQUAL), 1)] * 3,
            failure=[pb_op(OpType.GET, b"k")] * 2,
        ),
        SMALL,
        ALL_SHARDS,
        "txn",
    ),
    (
        "txn over txn_bytes_max",
        pb_txn(success=[pb_op(OpType.PUT, b"k%d" % i, b"x" * 16) for i in range(4)]),
        Limits(key_bytes_max=8, value_bytes_max=16, txn_ops_max=4, txn_bytes_max=60),
        ALL_SHARDS,
        "txn",
    ),
    (
        "unknown compare target",
        pb_txn(compares=[pb_cmp(b"k", 99, int(Operator.EQUAL), 1)]),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].target",
    ),
    (
        "unspecified compare target",
        pb_txn(compares=[pb_cmp(b"k", 0, int(Operator.EQUAL), 1)]),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].target",
    ),
    (
        "unknown compare operator",
        pb_txn(compares=[pb_cmp(b"k", int(Target.VALUE), 99, 1)]),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].operator",
    ),
    (
        "unknown op type",
        pb_txn(success=[pb.Op(type=99, key=b"k")]),
        Limits(),
        ALL_SHARDS,
        "txn.success[0].type",
    ),
    (
        "unspecified op type",
        pb_txn(failure=[pb.Op(type=0, key=b"k")]),
        Limits(),
        ALL_SHARDS,
        "txn.failure[0].type",
    ),
    (
        "range without hash tag when sharded",
        pb_txn(success=[pb_op(OpType.RANGE, b"doc:", limit=5)]),
        Limits(),
        ShardMap(2),
        "txn.success[0].key",
    ),
    (
        "range with an empty hash tag when sharded",
        pb_txn(success=[pb_op(OpType.RANGE, b"doc:{}", limit=5)]),
        Limits(),
        ShardMap(3),
        "txn.success[0].key",
    ),
    (
        "range limit over range_keys_max",
        pb_txn(success=[pb_op(OpType.RANGE, b"doc:{1}", limit=11)]),
        Limits(range_keys_max=10),
        ALL_SHARDS,
        "txn.success[0].limit",
    ),
    (
        "put without a value",
        pb_txn(success=[pb_op(OpType.PUT, b"k")]),
        Limits(),
        ALL_SHARDS,
        "txn.success[0].value",
    ),
    (
        "get with a value",
        pb_txn(success=[pb_op(OpType.GET, b"k", b"v")]),
        Limits(),
        ALL_SHARDS,
        "txn.success[0].value",
    ),
    (
        "add of a non-int",
        pb_txn(success=[pb_op(OpType.ADD, b"k", b"1")]),
        Limits(),
        ALL_SHARDS,
        "txn.success[0].value",
    ),
    (
        "append of a list",
        pb_txn(success=[pb_op(OpType.APPEND, b"k", (1,))]),
        Limits(),
        ALL_SHARDS,
        "txn.success[0].value",
    ),
    (
        "list of lists",
        pb_txn(success=[pb.Op(type=int(OpType.PUT), key=b"k", value=nested_list_value())]),
        Limits(),
        ALL_SHARDS,
        "txn.success[0].value",
    ),
    (
        "value with no kind",
        pb_txn(success=[pb.Op(type=int(OpType.PUT), key=b"k", value=pb.Value())]),
        Limits(),
        ALL_SHARDS,
        "txn.success[0].value",
    ),
    (
        "compare without operand",
        pb_txn(
            compares=[pb.Compare(key=b"k", target=int(Target.VALUE), operator=int(Operator.EQUAL))]
        ),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].operand",
    ),
    (
        "int compare with a bytes operand",
        pb_txn(compares=[pb_cmp(b"k", int(Target.INT_VALUE), int(Operator.LESS), b"1")]),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].operand",
    ),
    (
        "negative version operand",
        pb_txn(compares=[pb_cmp(b"k", int(Target.VERSION), int(Operator.LESS), -1)]),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].operand",
    ),
    (
        "exists operand not 0 or 1",
        pb_txn(compares=[pb_cmp(b"k", int(Target.EXISTS), int(Operator.EQUAL), 2)]),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].operand",
    ),
    (
        "exists with an ordering operator",
        pb_txn(compares=[pb_cmp(b"k", int(Target.EXISTS), int(Operator.LESS), 1)]),
        Limits(),
        ALL_SHARDS,
        "txn.compares[0].operator",
    ),
]


@pytest.mark.parametrize(
    ("msg", "limits", "shard_map", "field"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_wire_validate_txn_rejects_with_the_field_named(
    msg: pb.Txn, limits: Limits, shard_map: ShardMap, field: str
) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        wire.validate_txn(msg, limits, shard_map)
    assert info.value.field == field


def test_range_limit_zero_stays_within_a_smaller_configured_range_keys_max() -> None:
    limits = Limits(range_keys_max=3)
    msg = pb_txn(success=[pb_op(OpType.RANGE, b"p{1}", limit=0)])
    try:
        txn = wire.validate_txn(msg, limits, ALL_SHARDS)
    except errors.InvalidArgument:
        return  # rejecting limit 0 here would also enforce the limit
    store = store_with(*((b"p{1}%d" % i, i) for i in range(5)), position=2)
    (result,) = run(txn, store).results
    assert len(result.items) <= limits.range_keys_max


def test_wire_validate_txn_accepts_values_at_the_limits() -> None:
    msg = pb_txn(success=[pb_op(OpType.PUT, b"x" * 8, b"v" * 16)] * 4)
    txn = wire.validate_txn(
        msg, Limits(key_bytes_max=8, value_bytes_max=16, txn_ops_max=4), ALL_SHARDS
    )
    assert len(txn.success) == 4


def test_wire_validate_txn_accepts_untagged_range_on_one_shard() -> None:
    msg = pb_txn(success=[pb_op(OpType.RANGE, b"doc:", limit=5)])
    txn = wire.validate_txn(msg, Limits(), ShardMap(1))
    assert txn.success == (Op(OpType.RANGE, b"doc:", None, 5),)


# -------------------------------------------------------------- errors


class FakeRpcError(grpc.RpcError):
    """What a failed gRPC call raises, as far as from_rpc_error looks."""

    def __init__(self, error: errors.OrdoError) -> None:
        self._code = error.code
        self._details = error.message
        self._trailing = errors.to_grpc_metadata(error)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailing


def round_trip(error: errors.OrdoError) -> errors.OrdoError:
    status = errors.to_rpc_status(error)
    assert status.code == error.code.value[0]
    assert status.message == error.message
    return errors.from_rpc_error(FakeRpcError(error))  # type: ignore[arg-type]


ERRORS: list[errors.OrdoError] = [
    errors.InvalidArgument("key is empty", field="txn.success[0].key"),
    errors.InvalidArgument("no field"),
    errors.FailedPrecondition("request id reused"),
    errors.NotFound("no such position"),
    errors.OutOfRange("below the horizon", oldest_position=1234),
    errors.ResourceExhausted("slow down", retry_after_s=0.25),
    errors.ResourceExhausted("slow down"),
    errors.Unavailable("restarting"),
    errors.DeadlineExceeded("waited too long", position=42),
    errors.DeadlineExceeded("waited too long"),
    errors.Unauthenticated("who are you"),
    errors.PermissionDenied("no"),
    errors.Cancelled("cancelled"),
    errors.Internal("broken invariant"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: f"{type(e).__name__}:{e.metadata}")
def test_errors_round_trip_through_rpc_status(error: errors.OrdoError) -> None:
    back = round_trip(error)
    assert type(back) is type(error)
    assert back.message == error.message
    assert back.metadata == error.metadata


def test_errors_round_trip_keeps_the_field() -> None:
    back = round_trip(errors.InvalidArgument("bad", field="txn.compares[2].operand"))
    assert back.field == "txn.compares[2].operand"  # type: ignore[attr-defined]


def test_errors_round_trip_keeps_oldest_position_as_an_int() -> None:
    back = round_trip(errors.OutOfRange("gone", oldest_position=99))
    assert back.oldest_position == 99  # type: ignore[attr-defined]


def test_errors_round_trip_keeps_position_as_an_int() -> None:
    back = round_trip(errors.DeadlineExceeded("late", position=7))
    assert back.position == 7  # type: ignore[attr-defined]


def test_errors_round_trip_keeps_retry_after_and_retryable() -> None:
    back = round_trip(errors.ResourceExhausted("busy", retry_after_s=0.5))
    assert back.retry_after_s == 0.5  # type: ignore[attr-defined]
    assert back.retryable is True


@pytest.mark.parametrize("retry_after_s", [0.001, 0.25, 1.001, 1.003, 2.5, 30.0])
def test_errors_retry_after_keeps_whole_milliseconds(retry_after_s: float) -> None:
    # RetryInfo carries milliseconds; a whole number of them must survive.
    # (1.001 * 1000 is 1000.9999999999999 in floating point.)
    back = round_trip(errors.ResourceExhausted("busy", retry_after_s=retry_after_s))
    assert back.retry_after_s == retry_after_s  # type: ignore[attr-defined]


def test_errors_unknown_status_code_maps_to_the_base_class() -> None:
    class Unknown(FakeRpcError):
        def __init__(self) -> None:
            self._code = grpc.StatusCode.DATA_LOSS
            self._details = "lost"
            self._trailing = ()

    back = errors.from_rpc_error(Unknown())  # type: ignore[arg-type]
    assert type(back) is errors.OrdoError
    assert "lost" in back.message


def test_errors_invalid_argument_status_carries_a_bad_request() -> None:
    from google.rpc import error_details_pb2

    status = errors.to_rpc_status(errors.InvalidArgument("bad", field="txn"))
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(bad.DESCRIPTOR))
    assert bad.field_violations[0].field == "txn"


@given(
    sizes=st.lists(st.integers(0, 300), max_size=40),
    big=st.sampled_from([0, 127, 128, 16_383, 16_384, 2_097_152]),
)
def test_length_delimited_matches_protobuf_wrapping(sizes: list[int], big: int) -> None:
    """The coordinator sends every log reader the same pre-serialized
    ReadLogResponse, built from the batch's bytes with length_delimited."""
    from ordo.v1 import coordinator_pb2 as cpb
    from ordo.v1 import types_pb2 as pb

    batch = pb.LogBatch()
    for i, size in enumerate(sizes + ([big] if big else []), start=1):
        batch.entries.add(position=i, request_id="r" * (size % 100)).txn.success.add(
            key=b"k", value=pb.Value(bytes_value=b"v" * size)
        )
    raw = batch.SerializeToString()
    expected = cpb.ReadLogResponse(batch=batch).SerializeToString()
    assert wire.length_delimited(1, raw) == expected
    assert cpb.ReadLogResponse.FromString(wire.length_delimited(1, raw)) == cpb.ReadLogResponse(
        batch=batch
    )
