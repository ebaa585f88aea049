"""A real cluster (`ordo dev` layout: a coordinator and 3 shards as processes)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

import ordo
from ordo.core.partition import ShardMap
from shard.service import BLOCKED_FLUSH_DELAY_S, SYNC_INTERVAL_S
from tests.conftest import Cluster, free_port_block

pytestmark = pytest.mark.cluster

ACCOUNTS = 12
BALANCE = 100


def _keys_on_distinct_shards(prefix: str, shards: int) -> list[str]:
    """One key per shard, so a transaction over them touches every shard."""
    shard_map = ShardMap(shards)
    found: dict[int, str] = {}
    i = 0
    while len(found) < shards:
        key = f"{prefix}{i}"
        found.setdefault(shard_map.shard_for_key(key.encode()), key)
        i += 1
    return [found[s] for s in range(shards)]


async def test_transfers_across_shards_keep_the_total(cluster: Cluster) -> None:
    run = uuid.uuid4().hex[:6]
    accounts = _keys_on_distinct_shards(f"acct:{run}:s", cluster.shards)
    accounts += [f"acct:{run}:{i}" for i in range(ACCOUNTS - len(accounts))]
    shard_map = ShardMap(cluster.shards)
    assert len({shard_map.shard_for_key(a.encode()) for a in accounts}) == cluster.shards
    async with ordo.connect(cluster.address) as setup:
        await setup.txn(then=[ordo.put(a, BALANCE) for a in accounts])

    stop = asyncio.Event()
    committed = 0
    snapshots: list[tuple[int, int, int]] = []

    async def transfer(db: ordo.AsyncClient, rng: random.Random) -> None:
        nonlocal committed
        while not stop.is_set():
            a, b = rng.sample(accounts, 2)
            amount = rng.randint(1, 30)
            r = await db.txn(
                when=[ordo.value(a) >= amount],
                then=[ordo.add(a, -amount), ordo.add(b, amount)],
            )
            committed += r.succeeded

    async def audit(db: ordo.AsyncClient) -> None:
        # A transaction of gets is a consistent read at its position.
        while not stop.is_set():
            r = await db.txn(then=[ordo.get(a) for a in accounts])
            balances = [r.values[a] for a in accounts]
            snapshots.append((r.position, sum(balances), min(balances)))

    clients = [ordo.connect(cluster.address) for _ in range(4)]
    for c in clients:
        await c.connect()
    try:
        workers = [
            asyncio.create_task(transfer(clients[i % 4], random.Random(i))) for i in range(24)
        ]
        workers.append(asyncio.create_task(audit(clients[0])))
        await asyncio.sleep(4)
        stop.set()
        await asyncio.gather(*workers)
        tail = await clients[1].tail()
        final = [await clients[2].get(a, min_position=tail) for a in accounts]
    finally:
        for c in clients:
            await c.close()
    assert committed > 50, "transfers made progress"
    assert snapshots, "audits ran"
    for position, total, lowest in snapshots:
        assert total == ACCOUNTS * BALANCE, f"total {total} at position {position}"
        assert lowest >= 0, f"negative balance at position {position}"
    assert sum(final) == ACCOUNTS * BALANCE
    assert min(final) >= 0


async def test_every_reader_sees_its_own_last_commit(cluster: Cluster) -> None:
    async def writer(n: int) -> int:
        stale = 0
        key = f"ryw:{uuid.uuid4().hex}:{n}"
        async with ordo.connect(cluster.address) as w, ordo.connect(cluster.address) as r:
            for i in range(25):
                c = await w.put(key, i)
                seen = await r.get(key, min_position=c.position)
                stale += seen != i
        return stale

    stale = await asyncio.gather(*(writer(n) for n in range(8)))
    assert sum(stale) == 0


async def test_a_retried_request_id_commits_once(cluster: Cluster) -> None:
    key = f"counter:{uuid.uuid4().hex}"
    rid = uuid.uuid4().hex
    async with ordo.connect(cluster.address) as db:
        answers = await asyncio.gather(
            *(db.txn(then=[ordo.add(key, 1)], request_id=rid) for _ in range(5))
        )
        again = await db.txn(then=[ordo.add(key, 1)], request_id=rid)
        assert len({a.position for a in answers} | {again.position}) == 1
        assert again.duplicate
        assert await db.get(key, min_position=again.position) == 1
        with pytest.raises(ordo.FailedPrecondition):
            await db.txn(then=[ordo.add(key, 2)], request_id=rid)
        assert await db.get(key, min_position=await db.tail()) == 1


async def test_logged_answer_then_result_by_request_id(cluster: Cluster) -> None:
    keys = _keys_on_distinct_shards(f"logged:{uuid.uuid4().hex}:", cluster.shards)
    async with ordo.connect(cluster.address) as db:
        r = await db.txn(then=[ordo.put(k, "v") for k in keys] + [ordo.get(keys[0])],
                         wait="logged")
        assert not r.applied and r.position > 0
        full = await db.result(r.request_id)
        assert full.position == r.position and full.succeeded
        assert full.values == {keys[0].encode(): "v"}
        by_position = await db.result(position=r.position)
        assert by_position.request_id == r.request_id


async def test_a_shard_waiting_on_a_paused_peer_reports_what_it_applied(
    cluster: Cluster,
) -> None:
    """A shard blocked on a peer's input still publishes the transactions it
    applied before that one (shortly, not at once: BLOCKED_FLUSH_DELAY_S),
    instead of holding their results until the peer answers."""
    a, b = _keys_on_distinct_shards(f"blocked:{uuid.uuid4().hex}:", cluster.shards)[:2]
    owner, peer = cluster.procs[1], cluster.procs[2]  # shards 0 and 1
    async with ordo.connect(cluster.address) as db:
        await db.txn(then=[ordo.put(a, 0), ordo.put(b, 1)])
        owner.send_signal(signal.SIGSTOP)
        peer.send_signal(signal.SIGSTOP)
        try:
            # Logged while both sleep, so the owner finds them all queued
            # when it wakes: five of its own, then one that needs b.
            logged = await asyncio.gather(
                *[db.add(a, 1, wait="logged") for _ in range(5)],
                db.txn(when=[ordo.int_value(b) == 1], then=[ordo.add(a, 100)], wait="logged"),
            )
            owner.send_signal(signal.SIGCONT)
            for r in logged[:5]:
                done = await db.result(position=r.position, timeout=5)
                assert done.succeeded
            with pytest.raises(ordo.DeadlineExceeded):
                await db.result(position=logged[5].position, timeout=0.5)
        finally:
            owner.send_signal(signal.SIGCONT)
            peer.send_signal(signal.SIGCONT)
        assert (await db.result(position=logged[5].position, timeout=10)).succeeded
        assert await db.get(a) == 105


@contextlib.contextmanager
def _metered_cluster(shards: int) -> Iterator[tuple[Cluster, int]]:
    """A cluster of its own whose first shard process serves Prometheus
    metrics (on the port yielded with it); every process must stop cleanly."""
    with tempfile.TemporaryDirectory(prefix="ordo-test-") as data:
        metrics = free_port_block(1)
        c = Cluster(shards=shards, data=data, port=free_port_block(shards + 1),
                    per_process={1: ["--metrics-port", str(metrics)]})
        c.start()
        try:
            yield c, metrics
        finally:
            assert c.stop() == [0] * (shards + 1), c.logs()


def _counter(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    raise AssertionError(f"no metric {name}")


async def test_a_chain_across_two_shards_is_not_flushed_per_transaction() -> None:
    """Hot keys split across two shards: each transaction of a chain waits on
    the other shard for the state its predecessor left. The applier goes on
    through such short waits and writes the chain in a few batches, not one
    write (and one results message) per transaction."""
    chain = 100
    with _metered_cluster(2) as (c, metrics):
        a, b = _keys_on_distinct_shards(f"chain:{uuid.uuid4().hex}:", 2)
        async with ordo.connect(c.address) as db:
            await db.txn(then=[ordo.put(a, 1000), ordo.put(b, 1000)])
            flushes = _counter(metrics, "ordo_shard_flush_seconds_count")
            for proc in c.procs[1:]:
                proc.send_signal(signal.SIGSTOP)
            try:
                # Logged while the shards sleep: one log batch, all queued.
                pairs = [(a, b) if k % 2 == 0 else (b, a) for k in range(chain)]
                logged = await asyncio.gather(*[
                    db.txn(when=[ordo.int_value(x) >= 1],
                           then=[ordo.add(x, -1), ordo.add(y, 1)], wait="logged")
                    for x, y in pairs
                ])
            finally:
                for proc in c.procs[1:]:
                    proc.send_signal(signal.SIGCONT)
            started = time.monotonic()
            for r in logged:
                assert (await db.result(position=r.position, timeout=20)).succeeded
            elapsed = time.monotonic() - started
            assert await db.get(a) + await db.get(b) == 2000
        written = _counter(metrics, "ordo_shard_flush_seconds_count") - flushes
        # About one write per BLOCKED_FLUSH_DELAY_S of the chain, however
        # long it took; one per transaction before.
        assert written <= min(chain / 2, 4 + elapsed / BLOCKED_FLUSH_DELAY_S), (
            f"{written:.0f} writes for a chain of {chain} in {elapsed:.3f} s")


async def test_a_shard_under_load_syncs_at_most_every_interval_and_catches_up() -> None:
    """Flushes come every few milliseconds under load; the sync loop makes
    them durable together, at most once per SYNC_INTERVAL_S, and the durable
    applied position reaches the tail once the load stops."""
    with _metered_cluster(1) as (c, metrics):
        async with ordo.connect(c.address) as db:
            syncs = _counter(metrics, "ordo_shard_sync_seconds_count")
            flushes = _counter(metrics, "ordo_shard_flush_seconds_count")
            started = time.monotonic()
            stop = started + 1.5

            async def writer(i: int) -> None:
                while time.monotonic() < stop:
                    await db.put(f"sync:{i}", i)

            await asyncio.gather(*(writer(i) for i in range(32)))
            elapsed = time.monotonic() - started
            tail = await db.tail()
            for _ in range(100):
                status = await db.status()
                if status.shards[0].applied_position >= tail:
                    break
                await asyncio.sleep(0.05)
            assert status.shards[0].applied_position >= tail, "durable position stuck"
        synced = _counter(metrics, "ordo_shard_sync_seconds_count") - syncs
        written = _counter(metrics, "ordo_shard_flush_seconds_count") - flushes
        assert 0 < synced <= 3 + elapsed / SYNC_INTERVAL_S, (
            f"{synced:.0f} syncs for {written:.0f} flushes in {elapsed:.2f} s")


async def test_type_error_aborts_on_every_shard_with_no_writes(cluster: Cluster) -> None:
    text_key, other, third = _keys_on_distinct_shards(f"abort:{uuid.uuid4().hex}:", 3)
    async with ordo.connect(cluster.address) as db:
        await db.put(text_key, "not a number")
        r = await db.txn(then=[ordo.put(other, 1), ordo.append(third, "x"), ordo.add(text_key, 1)])
        assert r.aborted and r.abort_reason == "TYPE_MISMATCH"
        assert await db.get(other, min_position=r.position) is None
        assert await db.get(third, min_position=r.position) is None
        assert await db.get(text_key, min_position=r.position) == "not a number"
        with pytest.raises(ordo.TransactionAborted):
            await db.append(text_key, "x")


async def test_compares_branches_and_ranges(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    doc = f"doc:{{{tag}}}:"
    async with ordo.connect(cluster.address) as db:
        c = await db.txn(then=[ordo.put(doc + "title", "hello"), ordo.put(doc + "body", b"\x00b"),
                               ordo.append(doc + "tags", "x"), ordo.append(doc + "tags", 2)])
        r = await db.txn(
            when=[ordo.version(doc + "title") == c.position, ordo.exists(doc + "body"),
                  ordo.exists(doc + "nope") == False],  # noqa: E712
            then=[ordo.range(doc), ordo.delete(doc + "body"), ordo.range(doc)],
            otherwise=[ordo.get(doc + "title")],
        )
        assert r.succeeded
        # Ranges see the transaction's own earlier writes; last one wins in the dict.
        assert [i.key for i in r.ranges[doc]] == [doc + "tags", doc + "title"]
        items = await db.range(doc, min_position=r.position)
        assert [(i.key, i.value) for i in items] == [(doc + "tags", ["x", 2]),
                                                    (doc + "title", "hello")]
        miss = await db.txn(when=[ordo.value(doc + "title") == "other"],
                            then=[ordo.put(doc + "title", "bad")],
                            otherwise=[ordo.get(doc + "title")])
        assert not miss.succeeded and miss.values == {doc + "title": "hello"}


async def test_restart_on_the_same_data_keeps_acknowledged_writes(
    fresh_cluster: Cluster,
) -> None:
    keys = [f"durable:{i}" for i in range(60)]
    async with ordo.connect(fresh_cluster.address) as db:
        results = await asyncio.gather(*(db.put(k, i) for i, k in enumerate(keys)))
        cross = await db.txn(then=[ordo.add("durable:sum", 1), ordo.add("durable:{x}", 1)])
    last = max([r.position for r in results] + [cross.position])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        fresh_cluster.restart(sig)
        async with ordo.connect(fresh_cluster.address) as db:
            got = await asyncio.gather(*(db.get(k, min_position=last) for k in keys))
            assert got == list(range(60))
            assert await db.get("durable:sum", min_position=last) == 1
            after = await db.put("durable:after", sig)
            assert after.position > last
            last = after.position
