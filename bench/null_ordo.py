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
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ordo import bus, rpc
from ordo.core import limits as L
from ordo.v1 import coordinator_pb2 as cpb
from ordo.v1 import coordinator_pb2_grpc


class NullCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    def __init__(self, listen: str, bus_port_offset: int) -> None:
        self.listen, self.offset = listen, bus_port_offset
        self.position = 1  # position 1 would hold the shard map

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
            self.position += 1
            stream.answer(item.tag, cpb.SubmitResponse(position=self.position))

        async for message in stream.serve(request_iterator, lambda m: m.submits, start):
            yield message


async def serve(listen: str, bus_port_offset: int) -> None:
    service = NullCoordinator(listen, bus_port_offset)
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
    await bus_server.stop()
    await server.stop(0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--bus-port-offset", type=int, required=True)
    args = p.parse_args()
    import uvloop

    uvloop.run(serve(args.listen, args.bus_port_offset))


if __name__ == "__main__":
    main()
