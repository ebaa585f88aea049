"""Property test: reads at any position from the shard's LevelDB store (with
its unflushed overlay, its batched writes and compaction) equal the reference
interpreter's state at that position.

Random transactions are applied through the real :class:`ShardStore` the way
the shard service does (overlay first, one write batch per flush, in order),
interleaved with reads at random positions and with compactions. Every
``at_position`` read (a get and a prefix scan) must equal the state the
single-node reference had at that position; below the horizon nothing is
promised, at or above it everything is.
"""

from __future__ import annotations

import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from ordo.core.apply import MemoryMVCC, ShardApplier
from ordo.core.partition import ShardMap
from ordo.core.txn import Op, OpType, Txn, Versioned, evaluate
from ordo.core.limits import NEWEST_CACHE_BYTES
from shard.store import ShardStore

KEYS = [b"a", b"a\x00", b"ab", b"b", b"b\xff", b"c"]
PREFIXES = [b"", b"a", b"b", b"c", b"ab"]

ops = st.one_of(
    st.builds(lambda k, v: Op(OpType.PUT, k, v), st.sampled_from(KEYS),
              st.one_of(st.integers(-5, 5), st.binary(max_size=3), st.text(max_size=3))),
    st.builds(lambda k: Op(OpType.DELETE, k), st.sampled_from(KEYS)),
    st.builds(lambda k, d: Op(OpType.ADD, k, d), st.sampled_from(KEYS), st.integers(-3, 3)),
    st.builds(lambda k, x: Op(OpType.APPEND, k, x), st.sampled_from(KEYS), st.integers(0, 9)),
)
txns = st.lists(ops, min_size=1, max_size=4).map(lambda o: Txn((), tuple(o), ()))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("txn"), txns),
        st.tuples(st.just("flush"), st.none()),
        st.tuples(st.just("compact"), st.integers(0, 8)),
        st.tuples(st.just("reopen"), st.none()),
        st.tuples(st.just("read"), st.tuples(st.integers(0, 8), st.sampled_from(PREFIXES),
                                             st.integers(1, 4))),
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(steps, st.sampled_from([0, 400, NEWEST_CACHE_BYTES]))
def test_reads_at_any_retained_position_equal_the_reference(plan: list, cache: int) -> None:
    """With the newest-version cache off, so small that it evicts all the
    time, and at its default size; and across reopening the store."""
    reference = MemoryMVCC()
    applier = ShardApplier(0, ShardMap(1))
    position = 0
    horizon = 0
    pending: list[tuple[int, bytes, object]] = []
    with tempfile.TemporaryDirectory() as path:
        store = ShardStore(path, cache)
        try:
            def flush() -> None:
                nonlocal pending
                store.write_batch(pending, [], [], position, applier.digest, None, sync=False)  # type: ignore[arg-type]
                store.overlay.drop_upto(position, (k for _, k, _ in pending))
                pending = []

            for kind, arg in plan:
                if kind == "txn":
                    position += 1
                    p = position
                    ref = evaluate(arg, p, lambda k: reference.read_before(k, p))
                    if ref.writes:
                        reference.write(p, ref.writes)
                    got = applier.apply(
                        p, "", arg, lambda k: store.read_before(k, p), {},
                        lambda pre, lim: store.scan_before(pre, p, lim),
                    )
                    assert got.outcome.writes == ref.writes
                    store.overlay.add(p, got.outcome.writes)
                    pending.extend((p, k, v) for k, v in got.outcome.writes)
                elif kind == "flush":
                    flush()
                elif kind == "reopen":
                    flush()
                    store.close()
                    store = ShardStore(path, cache)
                elif kind == "compact":
                    flush()
                    target = position - arg  # compact up to a few positions back
                    if target > horizon:
                        store.compact(target, applier.digest, sync=False)
                        horizon = target
                        # The state as of the horizon itself stays intact.
                        for key in KEYS:
                            assert store.read_before(key, horizon + 1) == \
                                reference.read_before(key, horizon + 1)
                else:
                    back, prefix, limit = arg
                    at = max(position - back, horizon)
                    for key in KEYS:
                        assert store.read_before(key, at + 1) == reference.read_before(key, at + 1)
                    assert store.scan_before(prefix, at + 1, limit) == \
                        reference.scan_before(prefix, at + 1, limit)
            flush()
            for key in KEYS:
                assert store.read_before(key, position + 1) == \
                    reference.read_before(key, position + 1)
        finally:
            store.close()


def test_newest_cache_never_keeps_a_value_it_cannot_replace() -> None:
    from shard.store import NewestCache

    cache = NewestCache(10_000)
    cache.put(b"k", 5, b"small", 5)
    assert cache.get(b"k") == (5, b"small")
    # A newer value too large to keep: the old entry must go, not stay stale.
    cache.put(b"k", 9, b"x" * 5000, 5000)
    assert cache.get(b"k") is None
    # The budget holds: the oldest entries go first.
    for i in range(200):
        cache.put(b"key%d" % i, i + 1, i, 8)
    assert cache.size <= cache.budget
    assert cache.get(b"key0") is None and cache.get(b"key199") == (200, 199)
    assert cache.size == sum(cost for _, _, cost in cache.items.values())
    # Lists decode to many objects: not kept (and an older entry goes).
    cache.put(b"key199", 300, (1, 2, 3), 10)
    assert cache.get(b"key199") is None


def test_a_write_batch_that_fails_stores_nothing_and_caches_nothing() -> None:
    with tempfile.TemporaryDirectory() as path:
        store = ShardStore(path)
        try:
            store.write_batch([(1, b"k", 1)], [], [], 1, b"\0" * 32, None, sync=False)
            bad: list = [(2, b"k", 2), (2, b"j", object())]  # the second cannot be encoded
            try:
                store.write_batch(bad, [], [], 2, b"\0" * 32, None, sync=False)
            except Exception:
                pass
            else:
                raise AssertionError("an unencodable value was written")
            assert store.read_before(b"k", 5) == Versioned(1, 1)
            assert store.versions(b"k", 0, 10) == ([(1, 1)], False)
            assert store.written == 1
        finally:
            store.close()
