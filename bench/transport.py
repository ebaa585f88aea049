"""What one message of an internal stream costs: grpc.aio against ordo's bus.

``.venv/bin/python -m bench.transport [--messages N] [--window W]``

A server process answers every ``ReadAtRequest`` (a batch of 7 reads, the
size of a three-shard batch's reads) with one ``ReadAtResponse`` on a
bidirectional stream, the shape of the ``ReadAt`` link between shards; a
client process keeps ``W`` requests in flight. Both ends run uvloop, as the
services do. It prints messages per second and the CPU (user + system) of
each end per request/response pair, for gRPC and then for the bus, each
server a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ordo import bus
from ordo.v1 import shard_pb2 as spb
from ordo.v1 import shard_pb2_grpc
from ordo.v1 import types_pb2 as pb

METHOD = "/ordo.v1.ShardService/ReadAt"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _echo(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        yield spb.ReadAtResponse(answers=[
            spb.ReadAtAnswer(position=q.position, items=[pb.KeyValue(key=k) for k in q.keys])
            for q in request.reads
        ])


class _Servicer(shard_pb2_grpc.ShardServiceServicer):
    async def ReadAt(  # noqa: N802 - gRPC's name
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[Any]:
        async for response in _echo(request_iterator, context):
            yield response


def _serve(kind: str, address: str, ready: Any, done: Any, out: Any) -> None:
    import uvloop

    async def main() -> None:
        server: Any
        if kind == "grpc":
            server = grpc.aio.server()
            shard_pb2_grpc.add_ShardServiceServicer_to_server(_Servicer(), server)
            server.add_insecure_port(address)
            await server.start()
        else:
            server = bus.Server(address, {METHOD: bus.Method(
                spb.ReadAtRequest.FromString, _echo, client_streams=True)})
            await server.start()
        ready.set()
        started = _cpu_s()
        await asyncio.to_thread(done.wait)
        out.put(_cpu_s() - started)
        await server.stop(None) if kind == "grpc" else await server.stop()

    uvloop.run(main())


async def _client(kind: str, address: str, messages: int, window: int) -> tuple[float, float]:
    request = spb.ReadAtRequest(reads=[
        spb.ReadAtQuery(position=i, keys=[f"acct:{i}".encode()]) for i in range(7)
    ])
    call: Any
    channel = None
    if kind == "grpc":
        channel = grpc.aio.insecure_channel(address)
        call = shard_pb2_grpc.ShardServiceStub(channel).ReadAt()
    else:
        call = await bus.Call.open(address, METHOD, spb.ReadAtResponse.FromString)
    credit = asyncio.Semaphore(window)
    started, cpu = time.perf_counter(), _cpu_s()

    async def write() -> None:
        for _ in range(messages):
            await credit.acquire()
            await call.write(request)

    writer = asyncio.create_task(write())
    for _ in range(messages):
        await call.read()
        credit.release()
    await writer
    elapsed, cpu = time.perf_counter() - started, _cpu_s() - cpu
    call.cancel()
    if channel is not None:
        await channel.close()
    return elapsed, cpu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(kind: str, messages: int, window: int) -> dict[str, float]:
    import uvloop

    ctx = multiprocessing.get_context("spawn")
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    address = f"127.0.0.1:{_free_port()}"
    proc = ctx.Process(target=_serve, args=(kind, address, ready, done, out))
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError(f"{kind} server did not start")
        elapsed, client_cpu = uvloop.run(_client(kind, address, messages, window))
        done.set()
        server_cpu = out.get(timeout=30)
    finally:
        done.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return {"per_s": messages / elapsed, "client_us": client_cpu / messages * 1e6,
            "server_us": server_cpu / messages * 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=20_000, help="request/response pairs")
    p.add_argument("--window", type=int, default=8, help="requests in flight")
    args = p.parse_args()
    print(f"{args.messages:,} ReadAt request/response pairs, {args.window} in flight, uvloop")
    print("| transport | pairs/s | client CPU per pair | server CPU per pair |")
    print("|---|---:|---:|---:|")
    for kind in ("grpc", "bus"):
        r = measure(kind, args.messages, args.window)
        print(f"| {'grpc.aio' if kind == 'grpc' else 'bus'} | {r['per_s']:,.0f} | "
              f"{r['client_us']:.0f} µs | {r['server_us']:.0f} µs |", flush=True)


if __name__ == "__main__":
    main()
