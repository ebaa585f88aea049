"""The Python client: the blocking facade, and retries across a coordinator restart."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

import ordo
from tests.conftest import Cluster

pytestmark = pytest.mark.cluster


def test_blocking_client_has_the_same_methods(cluster: Cluster) -> None:
    key = f"blocking:{uuid.uuid4().hex}"
    with ordo.Client(cluster.address) as db:
        c = db.put(key, [1, "two", b"3"])
        assert db.get(key, min_position=c.position) == [1, "two", b"3"]
        r = db.txn(when=[ordo.exists(key)], then=[ordo.append(key, 4), ordo.get(key)])
        assert r.succeeded and r.values == {key: [1, "two", b"3", 4]}
        assert db.add(key + ":n", 5).position > r.position
        assert db.tail() >= r.position
        item = db.get_item(key, min_position=r.position)
        assert item.version == r.position
        with pytest.raises(ordo.TransactionAborted):
            db.add(key, 1)


async def test_submit_retries_through_a_coordinator_restart_and_commits_once(
    fresh_cluster: Cluster,
) -> None:
    key = f"retry:{uuid.uuid4().hex}"
    rid = uuid.uuid4().hex
    async with ordo.connect(fresh_cluster.address, timeout=30) as db:
        await db.put(key, 0)
        fresh_cluster.kill(0, signal.SIGKILL)
        submit = asyncio.create_task(db.txn(then=[ordo.add(key, 1)], request_id=rid))
        await asyncio.sleep(1.0)
        assert not submit.done(), "the client keeps retrying while the coordinator is down"
        fresh_cluster.revive(0, wait=False)
        r = await submit
        assert r.succeeded
        again = await db.txn(then=[ordo.add(key, 1)], request_id=rid)
        assert again.position == r.position and again.duplicate
        assert await db.get(key, min_position=r.position) == 1


async def test_shard_addresses_override_the_ones_the_coordinator_knows(
    cluster: Cluster,
) -> None:
    key = f"override:{uuid.uuid4().hex}"
    shards = [cluster.shard_address(i) for i in range(cluster.shards)]
    async with ordo.connect(cluster.address, shard_addresses=shards) as db:
        c = await db.put(key, 1)
        assert await db.get(key, min_position=c.position) == 1
    async with ordo.connect(cluster.address, shard_addresses=shards[:1]) as db:
        with pytest.raises(ordo.FailedPrecondition):
            await db.get(key)


async def test_submits_past_the_stream_limit_wait_in_the_client_in_order(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More concurrent submits than one stream carries wait in the client
    (not refused and retried), keep their order, and a waiter that is
    cancelled or times out gives its turn on."""
    from ordo.core import limits

    monkeypatch.setattr(limits, "STREAM_SUBMITS_INFLIGHT_MAX", 3)
    key = f"slots:{uuid.uuid4().hex}"
    async with ordo.connect(cluster.address, timeout=30) as db:
        await db.tail()
        pipe = db._pipe
        assert pipe is not None
        seen: list[int] = []

        async def sample() -> None:
            while True:
                seen.append(pipe.inflight)
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample())
        puts = [asyncio.create_task(db.append(key, i)) for i in range(60)]
        await asyncio.sleep(0)
        cancelled = puts[30:40]
        for task in cancelled:
            task.cancel()
        results = await asyncio.gather(*puts, return_exceptions=True)
        sampler.cancel()
        done = [r for r in results if isinstance(r, ordo.Result)]
        assert len(done) == 50
        assert all(isinstance(results[i], asyncio.CancelledError) for i in range(30, 40))
        assert max(seen) == 3, "the limit was reached and held"
        # Waiters were let in first come, first served: appends in call order.
        positions = [r.position for r in done]
        assert positions == sorted(positions)
        assert await db.get(key, min_position=positions[-1]) == [
            i for i in range(60) if not 30 <= i < 40
        ]
        assert pipe.inflight == 0 and not pipe.waiting
        # A submit that cannot get a slot within its timeout fails with
        # DEADLINE_EXCEEDED without being sent.
        pipe.inflight = 3
        with pytest.raises(ordo.DeadlineExceeded):
            await db.put(key + ":never", 1, timeout=0.2)
        pipe.inflight = 0
        assert await db.get(key + ":never") is None
