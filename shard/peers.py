"""Pulling the inputs of multi-shard transactions from their owner shards.

One long-lived ``ReadAt`` stream per peer (on the bus, see ``ordo.bus``, or
on gRPC with ``bus_port_offset`` 0). The reads of a whole batch of log
entries go out in one message as soon as the entries arrive, without waiting
for the answers; the owner answers each read once its earlier writers of the
keys are applied, several answers per message, matched here by position. If
the stream breaks, every unanswered read is sent again on a new one, in
order; the owner's answers are deterministic, so a repeat is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from ordo import bus, errors, rpc, wire
from ordo.core import limits as L
from ordo.core.txn import Versioned
from ordo.linklog import LinkLog
from ordo.v1 import shard_pb2 as spb
from ordo.v1 import shard_pb2_grpc

log = logging.getLogger("ordo.shard.peers")

Inputs = dict[bytes, Versioned | None]


class PeerReader:
    def __init__(self, shard: int, address: str, transport: rpc.Transport = rpc.PLAIN) -> None:
        self.shard = shard
        self.address = address
        self.transport = transport
        # Unanswered reads by position, in the order they were asked.
        self._pending: dict[int, tuple[spb.ReadAtQuery, asyncio.Future[Inputs]]] = {}
        self._unsent: list[spb.ReadAtQuery] = []
        self._wake = asyncio.Event()
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
        assert position not in self._pending, f"two reads at position {position}"
        future: asyncio.Future[Inputs] = asyncio.get_running_loop().create_future()
        query = spb.ReadAtQuery(position=position, keys=keys)
        self._pending[position] = (query, future)
        self._unsent.append(query)
        self._wake.set()
        return future

    async def _run(self) -> None:
        backoff_s = 0.05
        link = LinkLog(log, f"peer {self.shard} stream")
        while not self._closed:
            channel = self.transport.channel(self.address)
            try:
                call: Any
                if self.transport.bus_port_offset:
                    call = await bus.open_stream(
                        self.transport, self.address, "/ordo.v1.ShardService/ReadAt",
                        spb.ReadAtResponse.FromString,
                    )
                else:
                    call = shard_pb2_grpc.ShardServiceStub(channel).ReadAt()
                await self._session(call, link)
            except (grpc.aio.AioRpcError, errors.OrdoError, ConnectionError) as error:
                link.broke(_brief(error))
            finally:
                await channel.close()
            await asyncio.sleep(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)

    async def _session(self, call: Any, link: LinkLog) -> None:
        """Read through ``call`` (a grpc.aio ReadAt call or a bus call) until it breaks."""
        # Resend what is unanswered, then whatever arrives.
        self._unsent = [query for query, _ in self._pending.values()]
        self._wake.set()

        async def writer() -> None:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._unsent:
                    # Cut by count and by size (at least one read each).
                    size = 0
                    taken = 0
                    for query in self._unsent[:L.READ_AT_READS_PER_MESSAGE_MAX]:
                        if taken and size >= L.STREAM_MESSAGE_BYTES_MAX:
                            break
                        size += query.ByteSize()
                        taken += 1
                    reads = self._unsent[:taken]
                    del self._unsent[:taken]
                    await call.write(spb.ReadAtRequest(reads=reads))

        writing = asyncio.create_task(writer())
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise ConnectionError("peer closed the stream")
                link.up()
                for answer in resp.answers:
                    pending = self._pending.pop(answer.position, None)
                    if pending is None:
                        continue  # answered already, on a stream that broke
                    future = pending[1]
                    if not future.done():
                        future.set_result({kv.key: _versioned(kv) for kv in answer.items})
        finally:
            writing.cancel()
            call.cancel()


class LocalPeer:
    """A peer shard hosted in this same process: its reads are answered
    directly, by the same rule as ReadAt (see ``Shard.inputs_before``),
    without a stream, serialization or a trip through gRPC."""

    def __init__(self, shard: int, owner: Any) -> None:
        self.shard = shard
        self.owner = owner  # the peer's Shard

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def request(self, position: int, keys: list[bytes]) -> asyncio.Future[Inputs]:
        result: asyncio.Future[Inputs] = self.owner.inputs_before(position, keys)
        return result


def _versioned(msg: object) -> Versioned | None:
    kv = wire.kv_from_pb(msg)  # type: ignore[arg-type]
    return None if kv.value is None else Versioned(kv.value, kv.version)


def _brief(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, errors.OrdoError):
        return f"{error.code.name}: {error.message}"
    return str(error)
