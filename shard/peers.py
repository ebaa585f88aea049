"""Pulling the inputs of multi-shard transactions from their owner shards.

One long-lived ``ReadAt`` stream per peer. Requests for a whole batch of log
entries are written as soon as the entries arrive, without waiting for the
answers, so a multi-shard transaction does not cost a round trip of its own:
the owner answers each one as soon as it has applied everything before it.
If the stream breaks, every unanswered request is sent again on a new one,
in order; the owner's answers are deterministic, so a repeat is harmless.
"""

from __future__ import annotations

import asyncio
import collections
import logging

import grpc

from ordo import rpc, wire
from ordo.core.txn import Versioned
from ordo.v1 import shard_pb2 as spb
from ordo.v1 import shard_pb2_grpc

log = logging.getLogger("ordo.shard.peers")

Inputs = dict[bytes, Versioned | None]


class PeerReader:
    def __init__(self, shard: int, address: str, transport: rpc.Transport = rpc.PLAIN) -> None:
        self.shard = shard
        self.address = address
        self.transport = transport
        self._pending: collections.deque[tuple[spb.ReadAtRequest, asyncio.Future[Inputs]]] = (
            collections.deque()
        )
        self._outbox: asyncio.Queue[spb.ReadAtRequest | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-{self.shard}")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def request(self, position: int, keys: list[bytes]) -> asyncio.Future[Inputs]:
        future: asyncio.Future[Inputs] = asyncio.get_running_loop().create_future()
        req = spb.ReadAtRequest(position=position, keys=keys)
        self._pending.append((req, future))
        self._outbox.put_nowait(req)
        return future

    async def _run(self) -> None:
        backoff_s = 0.05
        while not self._closed:
            channel = self.transport.channel(self.address)
            try:
                await self._session(channel)
            except (grpc.aio.AioRpcError, ConnectionError) as error:
                log.info("peer %s stream broke: %s", self.shard, _brief(error))
            finally:
                await channel.close()
            await asyncio.sleep(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)

    async def _session(self, channel: grpc.aio.Channel) -> None:
        stub = shard_pb2_grpc.ShardServiceStub(channel)
        call = stub.ReadAt()
        # Resend what is unanswered, then whatever arrives.
        outbox: asyncio.Queue[spb.ReadAtRequest | None] = asyncio.Queue()
        for req, _ in self._pending:
            outbox.put_nowait(req)
        self._outbox = outbox

        async def writer() -> None:
            while True:
                req = await outbox.get()
                if req is None:
                    return
                await call.write(req)

        writing = asyncio.create_task(writer())
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise ConnectionError("peer closed the stream")
                req, future = self._pending.popleft()
                assert resp.position == req.position, (resp.position, req.position)
                if not future.done():
                    future.set_result({kv.key: _versioned(kv) for kv in resp.items})
        finally:
            writing.cancel()
            call.cancel()


def _versioned(msg: object) -> Versioned | None:
    kv = wire.kv_from_pb(msg)  # type: ignore[arg-type]
    return None if kv.value is None else Versioned(kv.value, kv.version)


def _brief(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error)
