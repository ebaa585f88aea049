"""Property test: the sharded apply path equals a single-node reference.

Random logs of transactions over a small key set are evaluated twice:

* by a REFERENCE interpreter: one :class:`MemoryMVCC`, :func:`evaluate` with
  every key owned;
* by a SHARDED run: one :class:`ShardApplier` and one :class:`MemoryMVCC` per
  shard, each participant pulling its remote inputs from the owner shard's
  store as of just before the position, exactly as a Calvin shard does.

Per transaction, the participants must agree with each other and with the
reference on the branch and the abort; the union of their GET/RANGE results
and of their writes must be the reference's. At the end, every key's state
in its owner shard must be the reference's. The apply is deterministic: the
same log gives the same digests whatever order the shards run in, and a shard
that does not take part in a transaction keeps its digest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ordo import wire
from ordo.core import values as V
from ordo.core.apply import (
    PendingWriters,
    GENESIS_DIGEST,
    Applied,
    MemoryMVCC,
    Plan,
    ShardApplier,
    chain_digest,
)
from ordo.core.limits import RANGE_KEYS_MAX, TXN_RANGE_BYTES_MAX, VALUE_BYTES_MAX, Limits
from ordo.core.partition import ShardMap
from ordo.core.txn import (
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
    decided_by_log,
    evaluate,
)

# ------------------------------------------------------------------ keys

# Four keys share the hash tag t1 (three of them under the RANGE prefix
# b"a{t1}"), one has tag t2, two are plain and one has an empty tag, which
# hashes the whole key. The plain ones are picked so that, with the
# blake2b64-mod partitioner, every shard of 1..4 owns a key (see
# test_key_set_spreads_over_every_shard).
KEYS: tuple[bytes, ...] = (
    b"a{t1}x",
    b"a{t1}y",
    b"a{t1}z",
    b"b{t1}w",
    b"c{t2}v",
    b"k5",
    b"k6",
    b"{}k2",
)
# RANGE prefixes: each contains a complete hash tag, so it routes to one shard
# whatever the shard count. b"{t1}" matches no key (an empty range).
# b"a{t1}", over three keys, is drawn most often.
PREFIXES: tuple[bytes, ...] = (
    b"a{t1}",
    b"a{t1}",
    b"a{t1}",
    b"a{t1}",
    b"a{t1}x",
    b"b{t1}",
    b"c{t2}",
    b"{t1}",
)
# Ops pick the keys under the RANGE prefix b"a{t1}" twice as often, so that
# ranges often follow the transaction's own writes and deletes under them.
OP_KEYS: tuple[bytes, ...] = KEYS + KEYS[:3]
FAR_POSITION = 10**9

# --------------------------------------------------------------- values

INT_EDGES = (
    V.INT64_MAX,
    V.INT64_MAX - 1,
    V.INT64_MIN,
    V.INT64_MIN + 1,
    2**62,
    -(2**62),
)
ints = st.one_of(st.integers(-3, 3), st.sampled_from(INT_EDGES))
# Small alphabets so that VALUE compares are often true.
byte_values = st.sampled_from([b"", b"a", b"b", b"ab"])
text_values = st.sampled_from(["", "a", "b", "\u00e9"])
scalars = st.one_of(byte_values, ints, text_values)
lists = st.lists(scalars, max_size=3).map(tuple)
values = st.one_of(scalars, lists)
# A list one APPEND away from VALUE_BYTES_MAX: every append aborts with
# VALUE_TOO_LARGE, since each item counts its payload plus
# LIST_ITEM_OVERHEAD_BYTES (so appending b"" cannot grow a list for ever).
BIG_LIST = (b"x" * (VALUE_BYTES_MAX - 2 - V.LIST_ITEM_OVERHEAD_BYTES),)
put_values = st.integers(0, 15).flatmap(lambda i: st.just(BIG_LIST) if i == 0 else values)
append_values = st.one_of(scalars, st.just(b"abc"))


@st.composite
def compares(draw: st.DrawFn, max_position: int, wire_valid: bool) -> Compare:
    key = draw(st.sampled_from(KEYS))
    target = draw(st.sampled_from(Target))
    operator = draw(st.sampled_from(Operator))
    operand: V.Value
    if target is Target.VALUE:
        operand = draw(values)
    elif target is Target.INT_VALUE:
        operand = draw(ints)
    elif target is Target.VERSION:
        operand = draw(st.integers(0, max_position + 1))
    else:
        operand = draw(st.integers(0, 1))
        if wire_valid:
            # The edge takes only = and != for EXISTS; the core takes all six.
            operator = draw(st.sampled_from([Operator.EQUAL, Operator.NOT_EQUAL]))
    return Compare(key, target, operator, operand)


# Weighted: writes and ranges more often than the ops that can abort.
OP_KINDS = (
    OpType.GET,
    OpType.PUT,
    OpType.PUT,
    OpType.PUT,
    OpType.DELETE,
    OpType.DELETE,
    OpType.ADD,
    OpType.APPEND,
    OpType.RANGE,
    OpType.RANGE,
)


@st.composite
def ops(draw: st.DrawFn) -> Op:
    kind = draw(st.sampled_from(OP_KINDS))
    if kind is OpType.RANGE:
        # Limit 0 means RANGE_KEYS_MAX.
        return Op(OpType.RANGE, draw(st.sampled_from(PREFIXES)), None, draw(st.integers(0, 3)))
    key = draw(st.sampled_from(OP_KEYS))
    if kind is OpType.PUT:
        return Op(kind, key, draw(put_values))
    if kind is OpType.ADD:
        return Op(kind, key, draw(ints))
    if kind is OpType.APPEND:
        return Op(kind, key, draw(append_values))
    return Op(kind, key)


@st.composite
def txns(draw: st.DrawFn, max_position: int, wire_valid: bool = False) -> Txn:
    cmps = draw(st.lists(compares(max_position, wire_valid), max_size=3))
    success = draw(st.lists(ops(), max_size=4))
    failure = draw(st.lists(ops(), max_size=4))
    if not (cmps or success or failure):
        # The edge rejects an empty transaction; it would have no participant.
        success = [draw(ops())]
    return Txn(tuple(cmps), tuple(success), tuple(failure))


UNDER_PREFIX: tuple[bytes, ...] = (b"a{t1}x", b"a{t1}y", b"a{t1}z")


@st.composite
def seed_txns(draw: st.DrawFn) -> Txn:
    """Puts to every key under b"a{t1}" and some others, so that later
    compares, ADDs and RANGEs (cut by their limits) meet stored values."""
    others = [k for k in KEYS if k not in UNDER_PREFIX]
    keys = list(UNDER_PREFIX) + draw(st.lists(st.sampled_from(others), unique=True))
    return Txn((), tuple(Op(OpType.PUT, k, draw(put_values)) for k in keys), ())


MAX_LOG = 10
# Three logs in four start with a seed transaction.
logs = st.builds(
    lambda seed, rest: seed + rest,
    st.sampled_from([False, True, True, True]).flatmap(
        lambda seeded: seed_txns().map(lambda t: [t]) if seeded else st.just([])
    ),
    st.lists(txns(MAX_LOG), min_size=1, max_size=MAX_LOG - 1),
)


# ------------------------------------------------------------ reference


def run_reference(log: list[Txn]) -> tuple[MemoryMVCC, list[Outcome]]:
    store = MemoryMVCC()
    outcomes = []
    for p, txn in enumerate(log, start=1):
        outcome = evaluate(
            txn,
            p,
            read=lambda k, p=p: store.read_before(k, p),
            owns=lambda k: True,
            scan=lambda prefix, limit, p=p: store.scan_before(prefix, p, limit),
        )
        if outcome.writes:
            store.write(p, outcome.writes)
        outcomes.append(outcome)
    return store, outcomes


# ---------------------------------------------------------------- model
#
# An independent, deliberately naive model of the semantics in DESIGN.md
# ("Transactions") and types.proto. The reference above shares evaluate()
# with the sharded run, so only this model can catch a semantic slip that
# both would make alike.

ModelState = dict[bytes, tuple[V.Value, int]]


class _ModelAbort(Exception):
    def __init__(self, reason: AbortReason, index: int, in_compare: bool) -> None:
        self.key = (reason, index, in_compare)


def _holds(operator: Operator, left: object, right: object) -> bool:
    return {
        Operator.EQUAL: lambda: left == right,
        Operator.NOT_EQUAL: lambda: left != right,
        Operator.LESS: lambda: left < right,  # type: ignore[operator]
        Operator.LESS_EQUAL: lambda: left <= right,  # type: ignore[operator]
        Operator.GREATER: lambda: left > right,  # type: ignore[operator]
        Operator.GREATER_EQUAL: lambda: left >= right,  # type: ignore[operator]
    }[operator]()


def _kind(value: object) -> type:
    return tuple if isinstance(value, tuple) else type(value)


def model_compare(i: int, c: Compare, state: ModelState) -> bool:
    now = state.get(c.key)
    if c.target is Target.EXISTS:
        return _holds(c.operator, 1 if now else 0, c.operand)
    if c.target is Target.VERSION:
        return _holds(c.operator, now[1] if now else 0, c.operand)
    if c.target is Target.INT_VALUE:
        value = now[0] if now else 0
        if _kind(value) is not int:
            raise _ModelAbort(AbortReason.TYPE_MISMATCH, i, True)
        return _holds(c.operator, value, c.operand)
    if now is None:
        return False
    if _kind(now[0]) is not _kind(c.operand):
        raise _ModelAbort(AbortReason.TYPE_MISMATCH, i, True)
    if _kind(now[0]) is tuple and c.operator not in (Operator.EQUAL, Operator.NOT_EQUAL):
        raise _ModelAbort(AbortReason.TYPE_MISMATCH, i, True)
    return _holds(c.operator, now[0], c.operand)


def model_apply(
    state: ModelState, txn: Txn, p: int
) -> tuple[bool, tuple[AbortReason, int, bool] | None, dict[bytes, V.Value | None], tuple]:
    """(succeeded, abort key, writes, results); updates ``state`` unless aborted."""
    succeeded = True
    try:
        oks = [model_compare(i, c, state) for i, c in enumerate(txn.compares)]
        succeeded = all(oks)
        view = dict(state)
        writes: dict[bytes, V.Value | None] = {}
        results = []
        for i, op in enumerate(txn.success if succeeded else txn.failure):
            now = view.get(op.key)
            if op.type is OpType.GET:
                item = KeyValue(op.key, now[0], now[1]) if now else KeyValue(op.key, None, 0)
                results.append(OpResult(i, (item,)))
                continue
            if op.type is OpType.RANGE:
                limit = op.limit or RANGE_KEYS_MAX
                found = sorted(k for k in view if k.startswith(op.key))
                kept: list[KeyValue] = []
                used = 0
                for k in found[:limit]:
                    # At most TXN_RANGE_BYTES_MAX of keys and values, but
                    # always the first key.
                    used += len(k) + V.size(view[k][0])
                    if kept and used > TXN_RANGE_BYTES_MAX:
                        break
                    kept.append(KeyValue(k, *view[k]))
                results.append(OpResult(i, tuple(kept), len(found) > len(kept)))
                continue
            new: V.Value | None
            if op.type is OpType.PUT:
                new = op.value
            elif op.type is OpType.DELETE:
                new = None
            elif op.type is OpType.ADD:
                base = now[0] if now else 0
                if _kind(base) is not int:
                    raise _ModelAbort(AbortReason.TYPE_MISMATCH, i, False)
                new = base + op.value  # type: ignore[operator]
                if not -(2**63) <= new < 2**63:
                    raise _ModelAbort(AbortReason.INT_OVERFLOW, i, False)
            else:
                base = now[0] if now else ()
                if _kind(base) is not tuple:
                    raise _ModelAbort(AbortReason.TYPE_MISMATCH, i, False)
                new = base + (op.value,)  # type: ignore[operator]
                if V.size(new) > VALUE_BYTES_MAX:
                    raise _ModelAbort(AbortReason.VALUE_TOO_LARGE, i, False)
            writes[op.key] = new
            if new is None:
                view.pop(op.key, None)
            else:
                view[op.key] = (new, p)
    except _ModelAbort as abort:
        in_compare = abort.key[2]
        return (False if in_compare else succeeded), abort.key, {}, ()
    state.clear()
    state.update(view)
    return succeeded, None, writes, tuple(results)


# -------------------------------------------------------------- sharded


@dataclass
class Step:
    plans: dict[int, Plan]
    applied: dict[int, Applied]
    digests_before: list[bytes]
    digests_after: list[bytes]


@dataclass
class ShardedRun:
    shard_map: ShardMap
    stores: list[MemoryMVCC]
    appliers: list[ShardApplier]
    steps: list[Step] = field(default_factory=list)


def run_sharded(log: list[Txn], shard_count: int, order: list[int] | None = None) -> ShardedRun:
    """Apply ``log`` on ``shard_count`` shards; ``order`` is the order in
    which the shards take each position (each writes right after it applies,
    so later shards read peers that already hold this position's writes)."""
    shard_map = ShardMap(shard_count)
    run = ShardedRun(
        shard_map,
        [MemoryMVCC() for _ in range(shard_count)],
        [ShardApplier(s, shard_map) for s in range(shard_count)],
    )
    order = list(range(shard_count)) if order is None else order
    for p, txn in enumerate(log, start=1):
        plans = {s: run.appliers[s].plan(txn) for s in range(shard_count)}
        before = [a.digest for a in run.appliers]
        applied: dict[int, Applied] = {}
        for s in order:
            plan = plans[s]
            if not plan.participant:
                continue
            remote = {
                key: run.stores[owner].read_before(key, p)
                for owner, keys in plan.remote_inputs.items()
                for key in keys
            }
            store = run.stores[s]
            result = run.appliers[s].apply(
                p,
                f"req-{p}",
                txn,
                read_local=lambda k, store=store, p=p: store.read_before(k, p),
                remote=remote,
                scan_local=lambda prefix, limit, store=store, p=p: store.scan_before(
                    prefix, p, limit
                ),
            )
            if result.outcome.writes:
                store.write(p, result.outcome.writes)
            applied[s] = result
        run.steps.append(Step(plans, applied, before, [a.digest for a in run.appliers]))
    return run


def expected_participants(shard_map: ShardMap, txn: Txn) -> set[int]:
    shards = {shard_map.shard_for_key(c.key) for c in txn.compares}
    for op in txn.ops():
        if op.type is OpType.RANGE:
            shard = shard_map.shard_for_prefix(op.key)
            assert shard is not None, "test bug: a RANGE prefix without a tag"
            shards.add(shard)
        else:
            shards.add(shard_map.shard_for_key(op.key))
    return shards


def state_of(store: MemoryMVCC, key: bytes) -> tuple[V.Value, int] | None:
    s = store.read_before(key, FAR_POSITION)
    return None if s is None else (s.value, s.version)


# ---------------------------------------------------------------- tests


def test_key_set_spreads_over_every_shard() -> None:
    """Guard for the generator: otherwise some shard counts test less."""
    for n in range(1, 5):
        shard_map = ShardMap(n)
        assert {shard_map.shard_for_key(k) for k in KEYS} == set(range(n)), n


# Budgets: the whole file takes about 8 s of CPU; the first two carry the weight.
def _budget(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


PROPERTY = _budget(200)


@PROPERTY
@given(log=logs, shard_count=st.integers(1, 4), data=st.data())
def test_sharded_apply_equals_single_node_reference(
    log: list[Txn], shard_count: int, data: st.DataObject
) -> None:
    order = data.draw(st.permutations(range(shard_count)), label="shard order")
    ref_store, ref_outcomes = run_reference(log)
    run = run_sharded(log, shard_count, order)
    shard_map = run.shard_map

    for p, (txn, ref, step) in enumerate(zip(log, ref_outcomes, run.steps, strict=True), start=1):
        where = f"at position {p}, txn={txn!r}"
        participants = {s for s, plan in step.plans.items() if plan.participant}
        event(f"participants: {len(participants)}")
        event(f"abort: {'none' if ref.abort is None else ref.abort.reason.name}")
        event(f"branch: {'success' if ref.succeeded else 'failure'}")
        for r in ref.results:
            if len(r.items) > 1 or r.more:
                event(f"multi-item range, more={r.more}")
        branch = txn.success if ref.succeeded else txn.failure
        for i, op in enumerate(branch):
            if op.type is OpType.RANGE and any(
                o.type in (OpType.PUT, OpType.DELETE) and o.key.startswith(op.key)
                for o in branch[:i]
            ):
                event("range after own write under its prefix")
        assert participants == expected_participants(shard_map, txn), where
        assert set(step.applied) == participants, where

        for s in participants:
            for owner, keys in step.plans[s].remote_inputs.items():
                assert owner != s, f"shard {s} plans to read itself {where}"
                for key in keys:
                    assert shard_map.shard_for_key(key) == owner, where

        # Every participant finds the same branch and abort as the reference.
        for s, applied in step.applied.items():
            assert applied.position == p
            assert applied.outcome.succeeded == ref.succeeded, f"shard {s} {where}"
            assert applied.outcome.abort == ref.abort, f"shard {s} {where}"

        # The union of the parts is the reference's outcome.
        results = sorted(
            (r for a in step.applied.values() for r in a.outcome.results),
            key=lambda r: r.index,
        )
        assert tuple(results) == ref.results, where

        merged_writes: dict[bytes, V.Value | None] = {}
        for s, applied in step.applied.items():
            for key, value in applied.outcome.writes:
                assert shard_map.shard_for_key(key) == s, f"shard {s} wrote {key!r} {where}"
                assert key not in merged_writes, f"{key!r} written twice {where}"
                merged_writes[key] = value
        assert merged_writes == dict(ref.writes), where
        if ref.abort is not None:
            assert ref.writes == () and ref.results == (), where

        # A shard that takes no part keeps its digest.
        for s in range(shard_count):
            if s not in participants:
                assert step.digests_after[s] == step.digests_before[s], f"shard {s} {where}"

    # Final state: each key lives in its owner's store, as in the reference.
    all_keys = set(ref_store.keys()).union(*(set(st_.keys()) for st_ in run.stores))
    for key in sorted(all_keys):
        owner = shard_map.shard_for_key(key)
        assert state_of(run.stores[owner], key) == state_of(ref_store, key), key
        for s, store in enumerate(run.stores):
            if s != owner:
                assert key not in store.keys(), f"shard {s} holds {key!r} it does not own"


@_budget(150)
@given(log=logs)
def test_reference_matches_an_independent_model(log: list[Txn]) -> None:
    ref_store, ref_outcomes = run_reference(log)
    state: ModelState = {}
    for p, (txn, ref) in enumerate(zip(log, ref_outcomes, strict=True), start=1):
        where = f"at position {p}, txn={txn!r}"
        before = dict(state)
        succeeded, abort, writes, results = model_apply(state, txn, p)
        if abort is None:
            branch = txn.success if succeeded else txn.failure
            for i, op in enumerate(branch):
                if (
                    op.type is OpType.RANGE
                    and 0 < op.limit < sum(k.startswith(op.key) for k in before)
                    and any(
                        o.type is OpType.DELETE and o.key.startswith(op.key) and o.key in before
                        for o in branch[:i]
                    )
                ):
                    event("range cut by limit after deleting a stored key under it")
        ref_abort = (
            None if ref.abort is None else (ref.abort.reason, ref.abort.index, ref.abort.in_compare)
        )
        assert (ref.succeeded, ref_abort) == (succeeded, abort), where
        assert ref.results == results, where
        assert dict(ref.writes) == writes, where
        assert [k for k, _ in ref.writes] == list(writes), f"order of first write {where}"
    for key in KEYS:
        assert state_of(ref_store, key) == state.get(key), key


RANGE_KEYS = tuple(b"r{t}%d" % i for i in range(6))
range_heavy_ops = st.one_of(
    st.builds(Op, st.just(OpType.PUT), st.sampled_from(RANGE_KEYS), st.integers(0, 3)),
    st.builds(Op, st.just(OpType.DELETE), st.sampled_from(RANGE_KEYS)),
    st.builds(
        lambda prefix, limit: Op(OpType.RANGE, prefix, None, limit),
        st.sampled_from([b"r{t}", b"r{t}", b"r{t}1"]),
        st.integers(0, 7),
    ),
)


@_budget(200)
@given(
    stored=st.lists(st.sampled_from(RANGE_KEYS), min_size=2, unique=True),
    deleted=st.lists(st.sampled_from(RANGE_KEYS), max_size=2, unique=True),
    branch=st.lists(range_heavy_ops, min_size=1, max_size=8),
)
def test_range_over_own_writes_and_deletes_matches_the_model(
    stored: list[bytes], deleted: list[bytes], branch: list[Op]
) -> None:
    """RANGE limits and `more` against stored keys, tombstones and the
    transaction's own earlier PUTs and DELETEs (the scan-window logic)."""
    log = [Txn(success=tuple(Op(OpType.PUT, k, 1) for k in stored))] if stored else []
    if deleted:
        log.append(Txn(success=tuple(Op(OpType.DELETE, k) for k in deleted)))
    log.append(Txn(success=tuple(branch)))
    _, ref_outcomes = run_reference(log)
    state: ModelState = {}
    for p, txn in enumerate(log, start=1):
        _, _, _, results = model_apply(state, txn, p)
    assert ref_outcomes[-1].results == results


@_budget(60)
@given(log=logs, shard_count=st.integers(1, 4), data=st.data())
def test_sharded_apply_is_deterministic_whatever_the_shard_order(
    log: list[Txn], shard_count: int, data: st.DataObject
) -> None:
    first_order = data.draw(st.permutations(range(shard_count)), label="first order")
    second_order = data.draw(st.permutations(range(shard_count)), label="second order")
    first = run_sharded(log, shard_count, first_order)
    second = run_sharded(log, shard_count, second_order)
    for a, b in zip(first.steps, second.steps, strict=True):
        assert a.digests_after == b.digests_after
        assert {s: x.outcome for s, x in a.applied.items()} == {
            s: x.outcome for s, x in b.applied.items()
        }
    for s in range(shard_count):
        assert first.stores[s].keys() == second.stores[s].keys()
        for key in first.stores[s].keys():
            assert state_of(first.stores[s], key) == state_of(second.stores[s], key)


@_budget(50)
@given(log=logs, probe=txns(MAX_LOG), strip=st.booleans())
def test_a_log_decided_txn_has_the_same_result_whatever_the_state(
    log: list[Txn], probe: Txn, strip: bool
) -> None:
    """The coordinator answers a txn that :func:`decided_by_log` accepts
    without waiting for the shards; that is only sound if applying it after
    any prefix gives exactly that answer: success, no abort, no values, and
    the writes of its ops."""
    if strip:  # half of the probes are cut down to a blind write
        blind = tuple(o for o in probe.success if o.type in (OpType.PUT, OpType.DELETE))
        probe = Txn((), blind or (Op(OpType.DELETE, KEYS[0]),), probe.failure)
    decided = decided_by_log(probe)
    event(f"decided: {decided}")
    assert decided == (not probe.compares and all(
        o.type in (OpType.PUT, OpType.DELETE) for o in probe.success))
    if not decided:
        return
    _, outcomes = run_reference(log + [probe])
    outcome = outcomes[-1]
    expected: dict[bytes, V.Value | None] = {}
    for op in probe.success:
        expected[op.key] = op.value if op.type is OpType.PUT else None
    assert outcome.succeeded and outcome.abort is None and outcome.results == ()
    assert dict(outcome.writes) == expected


@given(log=logs, shard_count=st.integers(1, 4), data=st.data())
def test_a_read_may_be_answered_once_the_pending_writers_before_it_are_applied(
    log: list[Txn], shard_count: int, data: st.DataObject
) -> None:
    """What lets an owner answer ReadAt(keys, p) early: the state of its keys
    just after its newest pending writer below p (its other transactions
    not applied) is their state just before p."""
    run = run_sharded(log, shard_count)
    for s in range(shard_count):
        owned = [k for k in KEYS if run.shard_map.shard_for_key(k) == s]
        if not owned:
            continue
        store = run.stores[s]
        writers = PendingWriters()
        for p in range(1, len(log) + 2):
            keys = data.draw(st.lists(st.sampled_from(owned), min_size=1, unique=True))
            newest = writers.newest_before(keys, p)
            assert newest < p
            event(f"answered early: {newest < p - 1}")
            for key in keys:
                assert store.read_before(key, newest + 1) == store.read_before(key, p), (s, p, key)
            if p <= len(log):
                plan = run.steps[p - 1].plans[s]
                if plan.participant:
                    writes = run.steps[p - 1].applied[s].outcome.writes
                    assert {k for k, _ in writes} <= set(plan.local_writes)
                    writers.add(p, plan.local_writes)


@given(
    txns_keys=st.lists(st.lists(st.sampled_from(KEYS[:6]), unique=True), max_size=12),
    applied_count=st.integers(0, 12),
    queries=st.lists(
        st.tuples(st.lists(st.sampled_from(KEYS[:6]), min_size=1), st.integers(1, 14)),
        max_size=8,
    ),
)
def test_pending_writers_match_a_model(
    txns_keys: list[list[bytes]], applied_count: int, queries: list[tuple[list[bytes], int]]
) -> None:
    writers = PendingWriters()
    for p, keys in enumerate(txns_keys, start=1):
        writers.add(p, tuple(keys))
    applied = min(applied_count, len(txns_keys))
    for p in range(1, applied + 1):
        writers.done(p, tuple(txns_keys[p - 1]))
    pending = {p: set(keys) for p, keys in enumerate(txns_keys, start=1) if p > applied}
    for keys, position in queries:
        expected = max(
            (p for p, writes in pending.items() if p < position and writes & set(keys)),
            default=0,
        )
        assert writers.newest_before(keys, position) == expected
    assert len(writers) == len(set().union(*pending.values()))


@given(log=logs)
def test_one_shard_digest_is_the_chain_over_the_reference_outcomes(log: list[Txn]) -> None:
    _, ref_outcomes = run_reference(log)
    digest = GENESIS_DIGEST
    for p, outcome in enumerate(ref_outcomes, start=1):
        digest = chain_digest(digest, p, outcome)
    run = run_sharded(log, 1)
    assert run.appliers[0].digest == digest


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(txn=txns(MAX_LOG, wire_valid=True), shard_count=st.integers(1, 4))
def test_generated_txns_survive_the_wire(txn: Txn, shard_count: int) -> None:
    msg = wire.txn_to_pb(txn)
    # Several BIG_LIST values can exceed the default txn_bytes_max.
    limits = Limits(txn_bytes_max=16 * 1024 * 1024)
    validated = wire.validate_txn(msg, limits, ShardMap(shard_count))
    # Validation makes a RANGE limit of 0 explicit (the configured maximum).
    expected = Txn(
        txn.compares,
        *(tuple(Op(o.type, o.key, o.value, limits.range_keys_max)
                if o.type is OpType.RANGE and o.limit == 0 else o for o in ops)
          for ops in (txn.success, txn.failure)),
    )
    assert validated == expected
    assert wire.txn_from_pb_trusted(msg) == expected


# The digest must not depend on PYTHONHASHSEED (set order of bytes/str).
# Many distinct keys, so that a hash-ordered iteration would show.
_DIGEST_SCRIPT = textwrap.dedent(
    """
    import json, random, sys
    sys.path.insert(0, sys.argv[1])
    import test_core_property as t
    rng = random.Random(7)
    keys = [b"u{t%d}k%d" % (i % 3, i) for i in range(24)] + [b"p%d" % i for i in range(24)]
    prefixes = [b"u{t0}", b"u{t1}", b"u{t2}k1"]
    def op():
        kind = rng.choice(list(t.OpType))
        if kind is t.OpType.RANGE:
            return t.Op(kind, rng.choice(prefixes), None, rng.randint(0, 5))
        key = rng.choice(keys)
        if kind is t.OpType.ADD:
            return t.Op(kind, key, rng.randint(-3, 3))
        if kind is t.OpType.PUT:
            return t.Op(kind, key, rng.choice([1, -2, 7]))
        if kind is t.OpType.APPEND:
            return t.Op(kind, key, rng.choice([b"a", 1, "x"]))
        return t.Op(kind, key)
    log = []
    for _ in range(80):
        cmps = tuple(
            t.Compare(rng.choice(keys), t.Target.EXISTS, t.Operator.EQUAL, rng.randint(0, 1))
            for _ in range(rng.randint(0, 2))
        )
        log.append(t.Txn(cmps, tuple(op() for _ in range(6)), tuple(op() for _ in range(6))))
    run = t.run_sharded(log, 4)
    print(json.dumps([a.digest.hex() for a in run.appliers]))
    """
)


def test_digests_do_not_depend_on_pythonhashseed() -> None:
    tests_dir = str(Path(__file__).resolve().parent)
    seen = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT, tests_dir],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        seen.append(json.loads(out.stdout))
    assert seen[0] == seen[1]
    assert len(set(seen[0])) == 4, "every shard should have applied something"
