"""Reads and streams on a real cluster: consistency per call, snapshots, watch,
subscribe, history and the retention horizon."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import uuid

import grpc
import pytest

import ordo
from tests.conftest import Cluster
from tests.test_cluster import _keys_on_distinct_shards

pytestmark = pytest.mark.cluster


async def test_at_position_reads_the_state_as_of_that_position(cluster: Cluster) -> None:
    key = f"at:{uuid.uuid4().hex}"
    async with ordo.connect(cluster.address) as db:
        positions = [(await db.put(key, i)).position for i in range(5)]
        for i, p in enumerate(positions):
            assert await db.get(key, at_position=p) == i
            assert (await db.get_item(key, at_position=p)).version == p
        assert await db.get(key, at_position=positions[0] - 1) is None
        # The default read is linearizable: it sees the last acknowledged write.
        assert await db.get(key) == 4


async def test_snapshot_totals_hold_while_transfers_run(cluster: Cluster) -> None:
    run = uuid.uuid4().hex[:6]
    accounts = _keys_on_distinct_shards(f"snap:{run}:", 3)
    accounts += [f"snap:{run}:x{i}" for i in range(9)]
    async with ordo.connect(cluster.address) as db:
        await db.txn(then=[ordo.put(a, 50) for a in accounts])
        stop = asyncio.Event()

        async def transfers(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                a, b = rng.sample(accounts, 2)
                await db.txn(when=[ordo.value(a) >= 5], then=[ordo.add(a, -5), ordo.add(b, 5)])

        workers = [asyncio.create_task(transfers(i)) for i in range(12)]
        totals = []
        try:
            for _ in range(25):
                snap = db.snapshot()
                balances = await snap.get_many(accounts)
                totals.append((await snap.position(), sum(balances.values()),
                               min(balances.values())))
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.gather(*workers)
    assert len({p for p, _, _ in totals}) > 5, "snapshots were taken at many positions"
    for position, total, lowest in totals:
        assert total == 50 * len(accounts), f"total {total} at {position}"
        assert lowest >= 0


async def test_watch_from_a_position_delivers_history_then_live_changes(
    cluster: Cluster,
) -> None:
    prefix = f"w:{uuid.uuid4().hex}:"  # no hash tag: spread over every shard
    async with ordo.connect(cluster.address) as db:
        first = await db.put(prefix + "a", 0)
        for i in range(1, 10):
            await db.txn(then=[ordo.put(prefix + f"k{i % 4}", i), ordo.delete(prefix + "zz")])
        events: list[ordo.WatchEvent] = []

        async def follow() -> None:
            async for event in db.watch(prefix=prefix, from_position=first.position):
                events.append(event)
                if len(events) == 10 + 9 + 3:
                    return

        watcher = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        live = [await db.put(prefix + "live", i) for i in range(3)]
        await asyncio.wait_for(watcher, 10)
    positions = [e.position for e in events]
    assert positions == sorted(positions)
    assert events[0].key == prefix + "a" and events[0].value == 0
    assert sum(1 for e in events if e.deleted) == 9  # the deletes of a missing key
    assert [e.value for e in events[-3:]] == [0, 1, 2]
    assert [e.position for e in events[-3:]] == [r.position for r in live]
    assert events[-1].request_id == live[-1].request_id


async def test_watch_resumes_across_a_shard_restart_without_gap_or_duplicate(
    fresh_cluster: Cluster,
) -> None:
    prefix = "resume:"
    async with ordo.connect(fresh_cluster.address, timeout=30) as db:
        start = await db.tail()
        seen: list[int] = []
        written: list[int] = []

        async def follow() -> None:
            async for event in db.watch(prefix=prefix, from_position=start + 1):
                seen.append(event.value)
                if len(seen) == 60:
                    return

        watcher = asyncio.create_task(follow())
        for i in range(30):
            await db.put(f"{prefix}{i % 7}", i)
            written.append(i)
        fresh_cluster.kill(1 + 1, signal.SIGKILL)  # shard 1
        writer = asyncio.gather(
            *(db.put(f"{prefix}{i % 7}", i, timeout=30) for i in range(30, 60))
        )
        await asyncio.sleep(1.0)
        fresh_cluster.revive(1 + 1)
        await writer
        await asyncio.wait_for(watcher, 30)
    assert sorted(seen) == list(range(60)), "every change exactly once"


async def test_subscribe_delivers_every_transaction_in_log_order(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:6]
    async with ordo.connect(cluster.address) as db:
        start = await db.tail() + 1
        made = [await db.txn(then=[ordo.put(f"sub:{tag}:{i}", i), ordo.add(f"sub:{tag}:n", 1)])
                for i in range(5)]
        bad = await db.txn(then=[ordo.add(f"sub:{tag}:0", 1), ordo.append(f"sub:{tag}:1", 1)])
        seen: list[ordo.Committed] = []
        async for txn in db.subscribe(from_position=start):
            seen.append(txn)
            if txn.position >= bad.position:
                break
    mine = [t for t in seen if t.request_id in {r.request_id for r in made + [bad]}]
    assert [t.position for t in mine] == [r.position for r in made] + [bad.position]
    assert sorted(mine[0].writes) == sorted([(f"sub:{tag}:0".encode(), 0),
                                             (f"sub:{tag}:n".encode(), 1)])
    assert mine[-1].aborted and mine[-1].writes == []


async def test_subscribe_resumes_across_a_shard_restart_without_gap_or_duplicate(
    fresh_cluster: Cluster,
) -> None:
    """The coordinator joins the log with every shard's results stream (on
    the bus): a shard killed mid-stream makes it answer UNAVAILABLE, the
    client resumes from its last position, and each transaction arrives
    exactly once, in log order, with the writes of every shard."""
    tag = uuid.uuid4().hex[:6]
    async with ordo.connect(fresh_cluster.address, timeout=30) as db:
        start = await db.tail() + 1
        made: list[str] = []
        seen: list[ordo.Committed] = []

        async def follow() -> None:
            async for txn in db.subscribe(from_position=start):
                seen.append(txn)
                if len(made) == 40 and set(made) <= {t.request_id for t in seen}:
                    return

        follower = asyncio.create_task(follow())

        async def write(i: int) -> None:
            r = await db.txn(then=[ordo.put(f"sub:{tag}:{i}", i), ordo.put(f"sub:{tag}:{i}b", i)],
                             timeout=30)
            made.append(r.request_id)

        for i in range(20):
            await write(i)
        fresh_cluster.kill(1 + 1, signal.SIGKILL)  # shard 1
        later = asyncio.gather(*(write(i) for i in range(20, 40)))
        await asyncio.sleep(1.0)
        fresh_cluster.revive(1 + 1)
        await later
        await asyncio.wait_for(follower, 30)
    mine = [t for t in seen if t.request_id in set(made)]
    assert len(mine) == 40 and len({t.request_id for t in mine}) == 40, "each exactly once"
    assert [t.position for t in mine] == sorted(t.position for t in mine)
    assert all(len(t.writes) == 2 for t in mine)


async def test_history_lists_versions_and_deletions(cluster: Cluster) -> None:
    key = f"hist:{uuid.uuid4().hex}"
    async with ordo.connect(cluster.address) as db:
        a = await db.put(key, "one")
        b = await db.delete(key)
        c = await db.put(key, "two")
        versions = await db.history(key)
        assert [(v.version, v.value) for v in versions] == [
            (a.position, "one"), (b.position, None), (c.position, "two")]
        later = await db.history(key, from_position=b.position)
        assert [v.version for v in later] == [b.position, c.position]


async def test_below_the_retention_horizon_is_out_of_range(compacting_cluster: Cluster) -> None:
    key = "old:{1}:k"
    async with ordo.connect(compacting_cluster.address) as db:
        first = await db.put(key, 0)
        for i in range(1, 80):
            last = await db.put(key, i)
        async def horizon() -> int:
            status = await db.status()
            return min(s.oldest_position for s in status.shards)

        for _ in range(100):
            if await horizon() > first.position + 10:
                break
            await asyncio.sleep(0.1)
        oldest = await horizon()
        assert oldest > first.position
        with pytest.raises(ordo.OutOfRange) as raised:
            await db.get(key, at_position=first.position)
        assert raised.value.oldest_position > first.position
        with pytest.raises(ordo.OutOfRange):
            await db.history(key, from_position=first.position)
        with pytest.raises(ordo.OutOfRange):
            async for _ in db.watch(key=key, from_position=first.position):
                break
        # What is retained still reads, and the newest version survives.
        assert await db.get(key, at_position=last.position) == 79
        versions = await db.history(key)
        assert versions[-1].value == 79 and len(versions) < 80
        # The coordinator truncates its own log on its own schedule (every
        # compact interval, below what every shard has applied): the result
        # of a position that far back goes out of range soon after.
        for _ in range(100):
            try:
                await db.result(position=first.position)
            except ordo.OutOfRange:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the coordinator still serves a result far below its retention")


def test_cli_watch_history_and_get_at(cluster: Cluster) -> None:
    key = f"cliw:{uuid.uuid4().hex}"
    a = ("--address", cluster.address)

    def run(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "ordo", *args], capture_output=True,
                              text=True, timeout=60, check=True).stdout

    with ordo.Client(cluster.address) as db:
        p1 = db.put(key, "v1").position
        db.put(key, "v2")
    assert '"v1"' in run("get", *a, key, "--at", str(p1))
    assert len(run("history", *a, key).splitlines()) == 2
    lines = run("watch", *a, key, "--from", str(p1), "--count", "2").splitlines()
    assert [json.loads(line)["value"] for line in lines] == ["v1", "v2"]


async def test_range_pages_past_range_keys_max(cluster: Cluster) -> None:
    from ordo.core.limits import RANGE_KEYS_MAX

    tag = uuid.uuid4().hex[:6]
    prefix = f"big:{{{tag}}}:"
    total = RANGE_KEYS_MAX + 50
    async with ordo.connect(cluster.address) as db:
        await asyncio.gather(*(
            db.txn(then=[ordo.put(f"{prefix}{i:06d}", i) for i in range(start, min(total, start + 100))])
            for start in range(0, total, 100)))
        items = await db.range(prefix)
        assert [i.value for i in items] == list(range(total))
        assert [i.value for i in await db.range(prefix, limit=7)] == list(range(7))


async def test_a_read_that_times_out_says_how_far_the_shard_got(cluster: Cluster) -> None:
    async with ordo.connect(cluster.address) as db:
        tail = await db.tail()
        with pytest.raises(ordo.DeadlineExceeded) as raised:
            await db.get("never", min_position=tail + 10**6, timeout=1.0)
        assert raised.value.position >= tail


async def test_subscribe_reports_progress_across_entries_that_are_not_transactions(
    cluster: Cluster,
) -> None:
    import grpc

    from ordo.v1 import coordinator_pb2 as cpb
    from ordo.v1 import coordinator_pb2_grpc

    async with grpc.aio.insecure_channel(cluster.address) as ch:
        stub = coordinator_pb2_grpc.CoordinatorServiceStub(ch)
        call = stub.Subscribe(cpb.SubscribeRequest(from_position=1))
        first = await call.read()
        call.cancel()
    # Position 1 holds the shard map, not a transaction: no txn, yet progress.
    assert first.progress >= 1
    assert all(t.position > 1 for t in first.txns)


async def test_get_stream_answers_each_read_on_its_own(cluster: Cluster) -> None:
    """One GetStream message with reads that resolve differently: each is
    answered with its tag, the one waiting for a later position once that
    position is applied, the bad one alone refused."""
    from ordo import errors
    from ordo.v1 import shard_pb2 as spb
    from ordo.v1 import shard_pb2_grpc

    key = _keys_on_distinct_shards(f"gs:{uuid.uuid4().hex[:6]}:", cluster.shards)[0]
    async with ordo.connect(cluster.address) as db:
        first = (await db.put(key, "before")).position
        async with grpc.aio.insecure_channel(cluster.shard_address(0)) as channel:
            call = shard_pb2_grpc.ShardServiceStub(channel).GetStream()
            await call.write(spb.GetStreamRequest(gets=[
                spb.TaggedGet(tag=1, request=spb.GetRequest(key=key.encode(), min_position=first)),
                spb.TaggedGet(tag=2, request=spb.GetRequest(key=b"")),
                spb.TaggedGet(tag=3, timeout_ms=300, request=spb.GetRequest(
                    key=key.encode(), min_position=first + 10**9)),
                spb.TaggedGet(tag=4, request=spb.GetRequest(key=key.encode(),
                                                            min_position=first + 1)),
                spb.TaggedGet(tag=5, request=spb.GetRequest(
                    key=key.encode(), min_position=first + 1, at_position=first)),
            ]))
            replies: dict[int, spb.TaggedGetReply] = {}

            async def collect(until: int) -> None:
                while len(replies) < until:
                    message = await call.read()
                    for reply in message.replies:
                        assert reply.tag not in replies, "each read is answered once"
                        replies[reply.tag] = reply

            # Everything but the read of a later position is answered
            # without any write (the deadline of tag 3 passes first).
            await asyncio.wait_for(collect(4), 10)
            assert 4 not in replies
            assert replies[1].response.item.value.text_value == "before"
            assert replies[1].response.position >= first
            assert errors.from_status_bytes(replies[2].error).code == grpc.StatusCode.INVALID_ARGUMENT
            late = errors.from_status_bytes(replies[3].error)
            assert isinstance(late, errors.DeadlineExceeded) and late.position >= first
            assert errors.from_status_bytes(replies[5].error).code == grpc.StatusCode.INVALID_ARGUMENT
            second = (await db.put(key, "after")).position
            assert second > first
            await asyncio.wait_for(collect(5), 10)
            assert replies[4].response.position >= first + 1
            expected = "after" if replies[4].response.position >= second else "before"
            assert replies[4].response.item.value.text_value == expected
            await call.done_writing()


async def test_reads_recover_from_a_shard_killed_under_them(fresh_cluster: Cluster) -> None:
    """A read in flight on a GetStream whose shard dies is retried on a new
    stream and answered once the shard is back."""
    keys = _keys_on_distinct_shards("gk:", fresh_cluster.shards)
    async with ordo.connect(fresh_cluster.address, timeout=30) as db:
        positions = [(await db.put(k, i)).position for i, k in enumerate(keys)]
        assert [await db.get(k, min_position=p) for k, p in zip(keys, positions)] == [0, 1, 2][
            : len(keys)]
        fresh_cluster.kill(1 + 1, signal.SIGKILL)  # shard 1, whose GetStream is open
        tail = await db.tail()
        # Waits for a position past the tail: in flight while the shard is down.
        pending = asyncio.create_task(db.get(keys[1], min_position=tail + 1))
        await asyncio.sleep(0.5)
        fresh_cluster.revive(1 + 1)
        written = await db.put(keys[1], "again")
        assert await asyncio.wait_for(pending, 30) in (1, "again")
        assert await db.get(keys[1], min_position=written.position) == "again"
        assert await db.get(keys[0]) == 0


async def test_linearizable_reads_share_tail_calls_never_one_sent_before_them(
    cluster: Cluster,
) -> None:
    """Concurrent default reads share Tail calls (as etcd batches ReadIndex).
    With other reads keeping a Tail call in flight almost all the time, a
    read that begins after a write is acknowledged still sees it. (The rule
    that makes it so, joining the next call and never one already sent, is
    pinned step by step in test_client_units.)"""
    from ordo import rpc

    class OwnConnection(ordo.AsyncClient):
        """gRPC shares one TCP connection among a process's channels to an
        address, which would order the reader's Tail answers before the
        writer's acknowledgements: give the reader its own."""

        def _dial(self, address: str) -> grpc.aio.Channel:
            options = [*rpc.CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
            return grpc.aio.insecure_channel(address, options=options)

    key = f"lin:{uuid.uuid4().hex}"
    async with ordo.connect(cluster.address) as db, OwnConnection(cluster.address) as reader:
        stop = asyncio.Event()
        background_reads = [0]

        async def busy(i: int) -> None:
            while not stop.is_set():
                await reader.get(f"lin:other:{i}")
                background_reads[0] += 1

        others = [asyncio.create_task(busy(i)) for i in range(16)]
        try:
            for i in range(400):
                await db.put(key, i)
                assert await reader.get(key) == i, f"read {i} missed the write before it"
        finally:
            stop.set()
            await asyncio.gather(*others)
        assert background_reads[0] > 400
