"""gRPC plumbing shared by the services: error mapping, servers, channels.

Handlers raise :mod:`ordo.errors` classes; :func:`unary` and
:func:`server_stream` map them to status codes in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ordo import errors, metrics, security, trace
from ordo.core.limits import GRPC_MESSAGE_BYTES_MAX, STREAM_MESSAGE_BYTES_MAX
from ordo.security import TLSConfig

log = logging.getLogger("ordo.rpc")

T = TypeVar("T")

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after a peer restarts (the default backoff reaches 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES_MAX),
    # Two processes must never share a port: a restarted service that cannot
    # bind should fail loudly, not split traffic with a stale one.
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


async def _abort(context: grpc.aio.ServicerContext, error: errors.OrdoError) -> None:
    await context.abort(error.code, error.message, trailing_metadata=errors.to_grpc_metadata(error))


def unary(
    fn: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except errors.OrdoError as error:
            metrics.REJECTED.labels(error.code.name).inc()
            await _abort(context, error)
            raise AssertionError("unreachable") from error

    return wrapper


def server_stream(
    fn: Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[T]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[T]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[T]:
        try:
            async for item in fn(self, request, context):
                yield item
        except errors.OrdoError as error:
            await _abort(context, error)
        except asyncio.CancelledError:
            # The server is stopping or the caller went away: nothing to answer.
            return

    return wrapper


def wait_budget_s(context: grpc.aio.ServicerContext, default_s: float) -> float:
    """How long a server may wait for the caller: a little less than its
    deadline, so that the answer (DEADLINE_EXCEEDED with the position
    reached) arrives before gRPC's own bare one."""
    return budget_s(deadline_s(context, default_s))


def budget_s(left_s: float) -> float:
    """A little less than ``left_s`` (see :func:`wait_budget_s`)."""
    return max(0.0, left_s - min(0.05, left_s * 0.1))


def deadline_s(context: grpc.aio.ServicerContext, default_s: float) -> float:
    """Seconds left before the caller's deadline (``default_s`` without one)."""
    remaining = context.time_remaining()
    return default_s if remaining is None else max(0.0, remaining)


class Multiplexed:
    """The server side of a multiplexed stream (SubmitStream, GetStream).

    Each request on the stream carries a tag and is answered on its own, in
    completion order, with that tag; answers ready together go out in one
    message. ``start(item)`` begins one request and must lead to exactly one
    :meth:`answer` for it (an :class:`~ordo.errors.OrdoError` it raises is
    the answer). Past ``inflight_max`` unanswered requests, the excess is
    refused with RESOURCE_EXHAUSTED, at once and cheaply.
    """

    def __init__(self, reply_type: Any, response_type: Any, inflight_max: int, what: str) -> None:
        self.reply_type, self.response_type = reply_type, response_type
        self.inflight_max = inflight_max
        self.open = 0  # started, not answered yet
        self.replies: asyncio.Queue[Any] = asyncio.Queue()
        self.traced: dict[int, str] = {}  # tag -> request id, while tracing (ordo.trace)
        self.busy = errors.to_rpc_status(errors.ResourceExhausted(
            f"too many {what} in flight on this stream", retry_after_s=0.05
        )).SerializeToString()

    def answer(self, tag: int, outcome: Any) -> None:
        """Answer one request: with a response message or an OrdoError."""
        self.open -= 1
        reply = self.reply_type(tag=tag)
        if isinstance(outcome, errors.OrdoError):
            metrics.REJECTED.labels(outcome.code.name).inc()
            reply.error = errors.to_rpc_status(outcome).SerializeToString()
        else:
            reply.response.CopyFrom(outcome)
        self.replies.put_nowait(reply)

    async def serve(
        self,
        request_iterator: AsyncIterator[Any],
        items: Callable[[Any], Sequence[Any]],
        start: Callable[[Any], None],
    ) -> AsyncIterator[Any]:
        failure: list[BaseException] = []

        async def read() -> None:
            try:
                async for message in request_iterator:
                    for n, item in enumerate(items(message)):
                        if self.open >= self.inflight_max:
                            self.replies.put_nowait(self.reply_type(tag=item.tag, error=self.busy))
                        else:
                            self.open += 1
                            try:
                                start(item)
                            except errors.OrdoError as error:
                                self.answer(item.tag, error)
                        if n % 32 == 31:
                            await asyncio.sleep(0)  # a big message must not hold up the loop
            except Exception as error:  # a request that does not parse, say
                failure.append(error)
            finally:
                self.replies.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            open_ = True
            while open_ or self.open or not self.replies.empty():
                first = await self.replies.get()
                if first is None:
                    open_ = False
                    if failure:
                        raise failure[0]
                    continue
                batch = self.response_type(replies=[first])
                size = first.ByteSize()
                # Everything else already answered goes in the same message,
                # up to a size that keeps far below gRPC's message limit.
                while not self.replies.empty() and size < STREAM_MESSAGE_BYTES_MAX:
                    more = self.replies.get_nowait()
                    if more is None:
                        open_ = False
                        if failure:
                            raise failure[0]
                    else:
                        batch.replies.append(more)
                        size += more.ByteSize()
                if self.traced:
                    for reply in batch.replies:
                        request_id = self.traced.pop(reply.tag, None)
                        if request_id is not None:
                            trace.mark(request_id, "coord.answered")
                yield batch
        finally:
            reader.cancel()


class Server:
    """An aio gRPC server with health checking, reflection, TLS and token roles."""

    def __init__(
        self,
        address: str,
        service_names: Sequence[str],
        tls: TLSConfig | None = None,
        tokens: dict[str, str] | None = None,
        insecure_listen_any: bool = False,
    ) -> None:
        security.check_listen(address, tls, insecure_listen_any)
        self.address = address
        self.tls = tls
        interceptors = [security.EdgeInterceptor(tokens)]
        self.server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = list(service_names) + [health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        self.service_names = list(service_names)

    async def start(self) -> None:
        # The health servicer starts out SERVING; a service says so itself
        # once it is ready (a shard after catching up).
        await self.set_serving(False)
        if self.tls is not None and self.tls.enabled:
            port = self.server.add_secure_port(self.address, self.tls.server_credentials())
        else:
            port = self.server.add_insecure_port(self.address)
        if port == 0:
            raise RuntimeError(f"cannot listen on {self.address}")
        await self.server.start()

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            result = self.health.set(name, status)
            if result is not None:
                await result

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)


@dataclasses.dataclass(frozen=True, slots=True)
class Transport:
    """How this process dials others: TLS settings and its bearer token."""

    tls: TLSConfig | None = None
    token: str | None = None
    # Non-zero: this process's streams go over the bus (see ordo.bus), at the
    # gRPC port plus this offset.
    bus_port_offset: int = 0

    def channel(self, address: str) -> grpc.aio.Channel:
        interceptors = security.token_interceptors(self.token)
        if self.tls is not None and self.tls.enabled:
            return grpc.aio.secure_channel(
                address, self.tls.channel_credentials(), options=CHANNEL_OPTIONS,
                interceptors=interceptors,
            )
        return grpc.aio.insecure_channel(
            address, options=CHANNEL_OPTIONS, interceptors=interceptors
        )


PLAIN = Transport()

