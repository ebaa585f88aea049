"""A coordinator that does nothing: the ceiling of ordo's client and transport.

``.venv/bin/python -m bench.null_ordo --listen 127.0.0.1:7600 --bus-port-offset 2``

It answers ``ClusterInfo`` as a one-shard cluster would and every submit on
``SubmitStream`` (on the bus, and on gRPC) at once, with the next position,
through the coordinator's own stream machinery (``ordo.rpc.Multiplexed``),
without validating, sequencing, logging or applying anything. Whatever
``put`` rate the benchmark's harness reaches against it (system ``null`` in
``bench.run``) is the most any ordo server could give that harness on this
machine: the cost of the Python client, the bus and the stream framing at
both ends, with no server work at all. It is not a database: no data is
kept, and only ``put`` runs against it.

With ``--fsync FILE`` it is instead the least a durable coordinator could
do: each burst of submits is appended to FILE (their requests, serialized)
and ``fdatasync``-ed in a thread, one write in flight at a time, before
they are answered (group commit), after lingering ``--linger-ms`` for the
burst to grow (ordo's coordinator lingers 1 ms). For example::

    .venv/bin/python -m bench.run --systems null --workloads put --null-fsync-linger-ms 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ordo import bus, rpc
from ordo.core import limits as L
from ordo.v1 import coordinator_pb2 as cpb
from ordo.v1 import coordinator_pb2_grpc


class NullCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    def __init__(self, listen: str, bus_port_offset: int, fsync: str | None = None,
                 linger_s: float = 0.0) -> None:
        self.listen, self.offset = listen, bus_port_offset
        self.position = 1  # position 1 would hold the shard map
        self.fd = None if fsync is None else os.open(
            fsync, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.linger_s = linger_s
        # (the stream to answer on, the submit) waiting for the next group commit
        self.waiting: list[tuple[rpc.Multiplexed, cpb.TaggedSubmit]] = []
        self.wake = asyncio.Event()

    async def group_commit(self) -> None:
        assert self.fd is not None
        fd, loop = self.fd, asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            if self.linger_s:
                await asyncio.sleep(self.linger_s)
            self.wake.clear()
            burst, self.waiting = self.waiting, []
            data = b"".join(item.request.SerializeToString() for _, item in burst)

            def write(data: bytes = data) -> None:
                os.write(fd, data)
                os.fdatasync(fd)

            await loop.run_in_executor(None, write)
            for stream, item in burst:
                self.position += 1
                stream.answer(item.tag, cpb.SubmitResponse(position=self.position))

    async def ClusterInfo(  # noqa: N802 - gRPC's name
        self, request: cpb.ClusterInfoRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ClusterInfoResponse:
        response = cpb.ClusterInfoResponse(bus_port_offset=self.offset)
        response.shard_map.shard_count = 1
        response.shards.add(shard=0, address=self.listen)
        return response

    async def SubmitStream(  # noqa: N802 - gRPC's name
        self, request_iterator: AsyncIterator[cpb.SubmitStreamRequest], context: Any,
    ) -> AsyncIterator[cpb.SubmitStreamResponse]:
        stream = rpc.Multiplexed(cpb.TaggedReply, cpb.SubmitStreamResponse,
                                 L.STREAM_SUBMITS_INFLIGHT_MAX, "submits")

        def start(item: cpb.TaggedSubmit) -> None:
            if self.fd is not None:
                self.waiting.append((stream, item))
                self.wake.set()
                return
            self.position += 1
            stream.answer(item.tag, cpb.SubmitResponse(position=self.position))

        async for message in stream.serve(request_iterator, lambda m: m.submits, start):
            yield message


async def serve(listen: str, bus_port_offset: int, fsync: str | None, linger_s: float) -> None:
    service = NullCoordinator(listen, bus_port_offset, fsync, linger_s)
    committer = asyncio.create_task(service.group_commit()) if fsync is not None else None
    server = rpc.Server(listen, ["ordo.v1.CoordinatorService"])
    coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(service, server.server)
    bus_server = bus.Server(bus.address(listen, bus_port_offset), {
        "/ordo.v1.CoordinatorService/SubmitStream":
            bus.Method(cpb.SubmitStreamRequest.FromString, service.SubmitStream,
                       client_streams=True),
    })
    await server.start()
    await bus_server.start()
    await server.set_serving(True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if committer is not None:
        committer.cancel()
    await bus_server.stop()
    await server.stop(0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--bus-port-offset", type=int, required=True)
    p.add_argument("--fsync", metavar="FILE", default=None,
                   help="append and fdatasync each burst of submits to FILE before answering")
    p.add_argument("--linger-ms", type=float, default=0.0,
                   help="with --fsync: wait this long after a burst's first submit")
    args = p.parse_args()
    import uvloop

    uvloop.run(serve(args.listen, args.bus_port_offset, args.fsync, args.linger_ms / 1000))


if __name__ == "__main__":
    main()
