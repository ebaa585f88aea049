"""The Python client: asyncio first, with a blocking facade of the same shape.

Transactions go to the coordinator; reads go straight to the shard that owns
the key, routed with the shard map the coordinator publishes. Concurrent
transactions share one multiplexed stream to the coordinator, and reads one
per shard; when the cluster runs the bus (``ordo.bus``) those streams travel
on it, else on gRPC. Every submit
carries a request id; on ``UNAVAILABLE`` (or ``RESOURCE_EXHAUSTED``) the
client retries with the same id, with full-jitter backoff bounded by the
caller's timeout, and the coordinator's deduplication makes sure a retry never
commits twice.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from ordo import bus, errors, ops, rpc, security, trace, wire
from ordo.core import limits as L
from ordo.core.partition import ShardMap
from ordo.core.txn import Compare, Op, OpType, Txn, TxnResult
from ordo.errors import TransactionAborted
from ordo.ops import Key, UserValue, from_value, key_bytes
from ordo.security import TLSConfig
from ordo.v1 import coordinator_pb2 as cpb
from ordo.v1 import coordinator_pb2_grpc, shard_pb2_grpc
from ordo.v1 import shard_pb2 as spb

T = TypeVar("T")

log = logging.getLogger("ordo.client")

DEFAULT_TIMEOUT_S = 10.0
# After a service's bus port does not answer, its streams use gRPC this long.
BUS_RETRY_S = 30.0


@dataclass(frozen=True, slots=True)
class Item:
    """A key read from ordo: its value (None when missing) and version."""

    key: Any
    value: Any
    version: int


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of a transaction.

    ``values`` maps each key read by a ``get`` that ran to its value (None when
    missing); ``ranges`` maps each ``range`` prefix to its items. ``applied``
    is False for ``wait="logged"`` answers, which carry only the position.
    """

    position: int
    request_id: str
    applied: bool = True
    succeeded: bool = False
    values: dict[Any, Any] = field(default_factory=dict)
    ranges: dict[Any, list[Item]] = field(default_factory=dict)
    abort_reason: str | None = None
    abort_message: str | None = None
    duplicate: bool = False

    @property
    def aborted(self) -> bool:
        return self.abort_reason is not None

    @property
    def abort(self) -> Any:
        return _AbortView(self.abort_reason or "", self.abort_message or "")


@dataclass(frozen=True, slots=True)
class _AbortView:
    reason: str
    message: str


# Stream errors that mean the stream was refused before its handler ran.
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class _Pipe:
    """Concurrent calls multiplexed over one bidirectional stream
    (SubmitStream for transactions, one GetStream per shard for reads).

    Calls made while a message is being written go together in the next one,
    so under load many share a message (and the server's replies are batched
    the same way). If the stream breaks, every call in flight fails with
    :class:`Unavailable`, which the caller retries (a submit with the same
    request id) on a new stream.

    At most ``inflight_max`` calls are in flight on the stream (what the
    server accepts on one); more wait here, in order, within their timeout,
    instead of being refused and retried: under overload the queue is in the
    caller, and the servers only see work they take.
    """

    def __init__(
        self, open_stream: Callable[[], Any], tagged: Any, message: Callable[[list[Any]], Any],
        inflight_max: int, what: str,
    ) -> None:
        self.open_stream, self.tagged, self.message = open_stream, tagged, message
        self.inflight_max, self.what = inflight_max, what
        self.call: Any = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.outbox: list[Any] = []
        self.wake = asyncio.Event()
        self.tags = itertools.count(1)
        self.tasks: list[asyncio.Task[None]] = []
        self.inflight = 0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self.traced: dict[int, str] = {}  # tag -> request id, while tracing (ordo.trace)

    def _open(self) -> None:
        self.call = self.open_stream()
        call = self.call
        self.tasks = [asyncio.ensure_future(self._send(call)),
                      asyncio.ensure_future(self._receive(call))]

    async def ask(self, request: Any, timeout_s: float) -> Any:
        """Send ``request`` and wait for its response (at most ``timeout_s``)."""
        loop = asyncio.get_running_loop()
        if self.inflight >= self.inflight_max or self.waiting:
            started = loop.time()
            await self._slot(loop, timeout_s)
            timeout_s -= loop.time() - started
        else:
            self.inflight += 1
        try:
            if self.call is None:
                self._open()
            tag = next(self.tags)
            future: asyncio.Future[Any] = loop.create_future()
            self.pending[tag] = future
            self.outbox.append(self.tagged(
                tag=tag, request=request, timeout_ms=max(1, int(timeout_s * 1000))))
            self.wake.set()
            # A little slack past the server's own deadline, which answers
            # DEADLINE_EXCEEDED with the position. (A timer, not wait_for,
            # which costs more than the rest of the call.)
            timer = loop.call_later(timeout_s + 0.5, self._expire, future)
            try:
                return await future
            finally:
                timer.cancel()
                self.pending.pop(tag, None)
        finally:
            self._release()

    def _expire(self, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(errors.DeadlineExceeded(f"client timeout waiting for the {self.what}"))

    async def _slot(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        """Wait, in order, for a call in flight to hand over its slot."""
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiting.append(waiter)
        timer = loop.call_later(max(0.0, timeout_s), self._expire_slot, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release()  # handed over just as the caller went away
            raise
        finally:
            timer.cancel()

    def _expire_slot(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(errors.DeadlineExceeded(
                f"client timeout waiting to send a {self.what}: this client already has "
                f"{self.inflight_max} in flight on one stream"
            ))

    def _release(self) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: inflight unchanged
                return
        self.inflight -= 1

    async def _send(self, call: Any) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if not self.outbox:
                    continue
                batch, self.outbox = self.outbox, []
                if trace.ON:
                    self._trace(batch, "client.send")
                await call.write(self.message(batch))
                if trace.ON:
                    self._trace(batch, "client.sent")
        except Exception as error:  # a write on a broken stream, a failure to open it
            self._broken(error)

    async def _receive(self, call: Any) -> None:
        try:
            async for message in call:
                if self.traced:
                    for reply in message.replies:
                        request_id = self.traced.pop(reply.tag, None)
                        if request_id is not None:
                            trace.mark(request_id, "client.answer")
                for reply in message.replies:
                    future = self.pending.get(reply.tag)
                    if future is None or future.done():
                        continue
                    if reply.HasField("response"):
                        future.set_result(reply.response)
                    else:
                        future.set_exception(errors.from_status_bytes(reply.error))
            self._broken(None)
        except Exception as error:  # a broken stream, a failure to open it
            self._broken(error)

    def _trace(self, batch: list[Any], stage: str) -> None:
        """Mark ``stage`` for the sampled submits of ``batch``; at
        client.send, remember their tags for client.answer. (The answer may
        be in before the write returns: client.sent then finds the tag gone.)"""
        for item in batch:
            if stage == "client.send":
                request_id = getattr(item.request, "request_id", "")
                if trace.sampled(request_id):
                    trace.mark(request_id, stage)
                    self.traced[item.tag] = request_id
            else:
                request_id = self.traced.get(item.tag)
                if request_id is not None:
                    trace.mark(request_id, stage)

    def _broken(self, error: BaseException | None) -> None:
        if self.call is None:
            return
        call, self.call = self.call, None
        call.cancel()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        # Whatever broke the stream, a call in flight on it may or may not
        # have been carried out (a submit logged): that is UNAVAILABLE (retry;
        # a submit with the same request id, which deduplicates), never a
        # certain failure.
        failure: errors.OrdoError
        if isinstance(error, grpc.aio.AioRpcError):
            error = errors.from_rpc_error(error)
        if isinstance(error, errors.OrdoError) and error.code in _REFUSED:
            # Refused before the handler ran: nothing on it was carried out.
            failure = error
        elif isinstance(error, errors.OrdoError):
            failure = errors.Unavailable(f"{self.what} stream broke: {error.message}")
        elif error is not None:
            if not isinstance(error, (grpc.aio.UsageError, asyncio.InvalidStateError)):
                # Not a transport failure: keep the traceback for the bug report.
                log.warning("%s stream failed", self.what, exc_info=error)
            failure = errors.Unavailable(f"{self.what} stream broke: {error!r}")
        else:
            failure = errors.Unavailable(f"{self.what} stream ended")
        self.outbox = []
        self.traced.clear()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(failure)

    async def close(self) -> None:
        if self.call is not None:
            call, self.call = self.call, None
            call.cancel()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)


class _SharedTail:
    """Linearizable reads share Tail calls, as etcd batches ReadIndex requests.

    A read joins the next call to go out, never one already sent, so the tail
    it gets was read after the read began and covers every write acknowledged
    before then. One call is in flight at a time; reads that arrive meanwhile
    share the one after it. The call itself runs with the client's timeout;
    each read waits at most its own.
    """

    def __init__(self, fetch: Callable[[], Awaitable[int]]) -> None:
        self.fetch = fetch
        self.next: asyncio.Future[int] | None = None  # the call that reads join now
        self.busy = False  # a call is in flight or about to go

    async def get(self, timeout_s: float) -> int:
        future = self.next
        if future is None:
            loop = asyncio.get_running_loop()
            future = self.next = loop.create_future()
            future.add_done_callback(_retrieve)
            if not self.busy:
                # Sent from the next loop pass: reads begun in this one share it.
                self.busy = True
                loop.call_soon(self._go)
        try:
            # Shielded: one reader giving up must not cancel the others' call.
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise errors.DeadlineExceeded("client timeout waiting for the log tail") from None

    def _go(self) -> None:
        future, self.next = self.next, None
        assert future is not None and self.busy
        call = asyncio.ensure_future(self.fetch())

        def done(call: asyncio.Future[int]) -> None:
            if not future.done():
                if call.cancelled():
                    future.set_exception(errors.Cancelled("the tail call was cancelled"))
                elif call.exception() is not None:
                    future.set_exception(call.exception())  # type: ignore[arg-type]
                else:
                    future.set_result(call.result())
            if self.next is not None:
                self._go()  # reads that came while this call was out
            else:
                self.busy = False

        call.add_done_callback(done)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared future's exception seen (every reader may have gone)."""
    if not future.cancelled():
        future.exception()


class _Opening:
    """A stream call that is still being opened (on the bus, or on gRPC
    once the bus is found missing), used meanwhile like a grpc.aio call:
    writes and reads wait for it, and a failure to open breaks the stream.

    ``unheard`` is called when a bus stream that opened (its hello was
    accepted) breaks or fails before its first message, other than by
    refusing the token, so the caller may stop trying the bus there for a
    while. Whatever does not accept the hello (a load balancer without a
    backend, another service, an older ordo without the method) already
    fails the opening, see ``_open_bus_stream``."""

    def __init__(self, opening: Awaitable[Any], unheard: Callable[[], None]) -> None:
        self.unheard = unheard
        self.cancelled = False
        self.heard = False
        self.opening: asyncio.Future[Any] = asyncio.ensure_future(opening)
        self.opening.add_done_callback(self._opened)

    def _opened(self, opening: asyncio.Future[Any]) -> None:
        if opening.cancelled() or opening.exception() is not None:
            return
        if self.cancelled:  # cancelled just as it opened: close what opened
            opening.result().cancel()

    async def write(self, message: Any) -> None:
        call = await asyncio.shield(self.opening)
        try:
            await call.write(message)
        except errors.Unavailable:
            self._broke_unheard(call)
            raise

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        call = await asyncio.shield(self.opening)
        try:
            async for message in call:
                self.heard = True
                yield message
        except errors.OrdoError as error:
            if error.code not in _REFUSED:
                self._broke_unheard(call)
            raise
        self._broke_unheard(call)

    def _broke_unheard(self, call: Any) -> None:
        if not self.heard and isinstance(call, bus.Call):
            self.heard = True  # once
            self.unheard()

    def cancel(self) -> None:
        self.cancelled = True
        if self.opening.done():
            self._opened(self.opening)
        else:
            self.opening.cancel()


_SUBMIT_STREAM = "/ordo.v1.CoordinatorService/SubmitStream"
_GET_STREAM = "/ordo.v1.ShardService/GetStream"


def _submit_pipe(open_stream: Callable[[], Any]) -> _Pipe:
    return _Pipe(open_stream, cpb.TaggedSubmit,
                 lambda batch: cpb.SubmitStreamRequest(submits=batch),
                 L.STREAM_SUBMITS_INFLIGHT_MAX, "submit")


def _get_pipe(open_stream: Callable[[], Any]) -> _Pipe:
    return _Pipe(open_stream, spb.TaggedGet, lambda batch: spb.GetStreamRequest(gets=batch),
                 L.STREAM_GETS_INFLIGHT_MAX, "read")


def _check_count(name: str, value: int | None, low: int = 0) -> None:
    """A position or a limit given by the caller: an int, ``low`` or more
    (None: not given). Checked here, as protobuf's bare "Value out of
    range" would not say which argument."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < low):
        raise ValueError(f"{name} is an integer, {low} or more, not {value!r}")


def _check_read(min_position: int | None, at_position: int | None) -> None:
    _check_count("min_position", min_position)
    _check_count("at_position", at_position, 1)


def _retryable(error: BaseException) -> bool:
    return isinstance(error, errors.OrdoError) and error.retryable


class AsyncClient:
    """``async with ordo.connect(address) as db: ...``"""

    def __init__(
        self, address: str, *, timeout: float = DEFAULT_TIMEOUT_S, token: str | None = None,
        tls: TLSConfig | str | bool | None = None, shard_addresses: list[str] | None = None,
        bus: bool = True,
    ) -> None:
        """``token``: a bearer token. ``tls``: a CA file to verify the servers
        with, ``True`` for the system roots, or a :class:`TLSConfig` (with a
        client certificate, for mutual TLS). ``shard_addresses``: where this
        client reaches each shard, in shard order, when that differs from the
        addresses the coordinator knows them by (behind a proxy or NAT).
        ``bus``: carry the transaction and read streams on the cluster's bus
        when it runs one (its ports: the gRPC ones plus the offset the
        coordinator reports), which costs a fraction of gRPC's per-message
        CPU; a bus port that does not answer falls back to gRPC. False: gRPC
        only. (With ``tls=True``, the system roots, always gRPC.)"""
        self.address = address
        self.shard_addresses = shard_addresses
        self.use_bus = bus
        self.timeout = timeout
        if isinstance(tls, str):
            tls = TLSConfig(ca=tls)
        self._transport = rpc.Transport(tls if isinstance(tls, TLSConfig) else None, token)
        self._tls_system_roots = tls is True
        self._channel: grpc.aio.Channel | None = None
        self._stub: coordinator_pb2_grpc.CoordinatorServiceStub | None = None
        self._shard_map: ShardMap | None = None
        self._shard_addrs: list[str] = []
        self._info: cpb.ClusterInfoResponse | None = None  # asked once per connection
        # By gRPC address: until when (monotonic) streams there use gRPC.
        self._bus_down: dict[str, float] = {}
        self._shards: list[shard_pb2_grpc.ShardServiceStub] = []
        self._shard_channels: list[grpc.aio.Channel] = []
        self._pipe: _Pipe | None = None
        self._get_pipes: dict[int, _Pipe] = {}  # by shard, opened on first use
        self._tails = _SharedTail(lambda: self.tail())

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if self._channel is None:
            self._channel = self._dial(self.address)
            self._stub = coordinator_pb2_grpc.CoordinatorServiceStub(self._channel)
            stub = self._stub
            self._pipe = _submit_pipe(lambda: self._open_stream(
                self.address, _SUBMIT_STREAM, cpb.SubmitStreamResponse.FromString,
                stub.SubmitStream,
            ))

    def _dial(self, address: str) -> grpc.aio.Channel:
        if self._tls_system_roots:
            return grpc.aio.secure_channel(
                address, grpc.ssl_channel_credentials(), options=rpc.CHANNEL_OPTIONS,
                interceptors=security.token_interceptors(self._transport.token),
            )
        return self._transport.channel(address)

    async def close(self) -> None:
        pipes, self._get_pipes = self._get_pipes, {}
        for get_pipe in pipes.values():
            await get_pipe.close()
        for ch in self._shard_channels:
            await ch.close()
        self._shard_channels, self._shards, self._shard_map = [], [], None
        self._info = None
        if self._pipe is not None:
            await self._pipe.close()
            self._pipe = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # ---------------------------------------------------------- plumbing

    async def _call(
        self, attempt: Callable[[float], Awaitable[T]], timeout: float | None
    ) -> T:
        """Run ``attempt(seconds_left)``, retrying retryable errors until the timeout."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        # The first try goes without the retry machinery, which costs more
        # than the call itself on the hot path.
        try:
            return await attempt(budget)
        except grpc.aio.AioRpcError as error:
            mapped = errors.from_rpc_error(error)
            if not mapped.retryable:
                raise mapped from None
        except errors.OrdoError as error:
            if not error.retryable:
                raise
        budget = deadline - time.monotonic()
        if budget <= 0:
            raise errors.DeadlineExceeded("client timeout")
        async for retry in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_delay(budget),
            wait=wait_random_exponential(multiplier=0.02, max=1.0),
            reraise=True,
        ):
            with retry:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.DeadlineExceeded("client timeout")
                try:
                    return await attempt(left)
                except grpc.aio.AioRpcError as error:
                    raise errors.from_rpc_error(error) from None
        raise AssertionError("unreachable")

    def _open_stream(
        self, address: str, method: str, parse: Callable[[bytes], Any],
        grpc_call: Callable[[], Any],
    ) -> Any:
        """A multiplexed stream to the service at ``address``: on the bus when
        the cluster runs one (see ``bus`` in the constructor), else gRPC."""
        if (not self.use_bus or self._tls_system_roots
                or time.monotonic() < self._bus_down.get(address, 0.0)):
            return grpc_call()
        return _Opening(self._open_bus_stream(address, method, parse, grpc_call),
                        lambda: self._bus_is_down(address, "the bus stream broke unanswered"))

    def _bus_is_down(self, address: str, why: str) -> None:
        log.info("%s: %s; streams there use gRPC for %.0f s", address, why, BUS_RETRY_S)
        self._bus_down[address] = time.monotonic() + BUS_RETRY_S

    async def _open_bus_stream(
        self, address: str, method: str, parse: Callable[[bytes], Any],
        grpc_call: Callable[[], Any],
    ) -> Any:
        # One try: if it fails, the stream breaks and its callers retry.
        offset = int((await self._cluster_info(retry=False)).bus_port_offset)
        if not offset:
            return grpc_call()
        try:
            return await bus.Call.open(
                bus.address(address, offset), method, parse,
                self._transport.tls, self._transport.token,
            )
        except Exception as error:
            if isinstance(error, errors.OrdoError) and error.code in _REFUSED:
                raise  # the token: gRPC would refuse it too
            # A firewall, a proxy that forwards gRPC only, a service that is
            # restarting, an older ordo without the method, an address whose
            # port plus the offset is no port: gRPC works wherever the bus
            # does not.
            why = error.message if isinstance(error, errors.OrdoError) else str(error)
            self._bus_is_down(address, f"bus unusable ({why})")
            return grpc_call()

    @property
    def stub(self) -> coordinator_pb2_grpc.CoordinatorServiceStub:
        if self._stub is None:
            raise errors.Cancelled("the client is not connected")
        return self._stub

    async def _cluster_info(self, retry: bool = True) -> cpb.ClusterInfoResponse:
        """The coordinator's ClusterInfo (shard map, shard addresses, bus
        offset), asked once and shared by routing and stream opening."""
        if self._info is None:
            def ask(left: float) -> Awaitable[cpb.ClusterInfoResponse]:
                return self.stub.ClusterInfo(cpb.ClusterInfoRequest(), timeout=left)

            self._info = await (self._call(ask, None) if retry else ask(self.timeout))
        return self._info

    async def _routing(self) -> tuple[ShardMap, list[shard_pb2_grpc.ShardServiceStub]]:
        if self._shard_map is None:
            info = await self._cluster_info()
            shard_map = ShardMap(info.shard_map.shard_count, info.shard_map.partitioner)
            addresses = [s.address for s in sorted(info.shards, key=lambda s: s.shard)]
            if self.shard_addresses is not None:
                if len(self.shard_addresses) != len(addresses):
                    raise errors.FailedPrecondition(
                        f"the cluster has {len(addresses)} shards, but "
                        f"{len(self.shard_addresses)} shard addresses were given"
                    )
                addresses = list(self.shard_addresses)
            channels = [self._dial(address) for address in addresses]
            self._shard_addrs = addresses
            self._shard_channels = channels
            self._shards = [shard_pb2_grpc.ShardServiceStub(ch) for ch in channels]
            self._shard_map = shard_map
        return self._shard_map, self._shards

    # ------------------------------------------------------- transactions

    async def txn(
        self,
        when: Iterable[Compare | Any] = (),
        then: Sequence[Op] = (),
        otherwise: Sequence[Op] = (),
        *,
        request_id: str | None = None,
        wait: str = "applied",
        timeout: float | None = None,
    ) -> Result:
        """Run ``then`` if every compare in ``when`` holds, else ``otherwise``."""
        compares = tuple(ops.as_compare(c) for c in when)
        txn = Txn(compares, tuple(then), tuple(otherwise))
        for op in txn.ops():
            if not isinstance(op, Op):
                raise TypeError(f"not an op: {op!r}")
        if wait not in ("applied", "logged"):
            raise ValueError("wait is 'applied' or 'logged'")
        request = cpb.SubmitRequest(
            request_id=request_id or uuid.uuid4().hex,
            wait=cpb.WAIT_FOR_LOGGED if wait == "logged" else cpb.WAIT_FOR_APPLIED,
        )
        wire.txn_to_pb(txn, request.txn)
        pipe = self._pipe
        if pipe is None:
            raise errors.Cancelled("the client is not connected")
        if trace.ON:
            trace.mark(request.request_id, "client.call")
        response = await self._call(lambda left: pipe.ask(request, left), timeout)
        if trace.ON:
            trace.mark(request.request_id, "client.done")
        if not response.HasField("result"):
            return Result(response.position, request.request_id, applied=False,
                          duplicate=response.duplicate)
        return _to_result(wire.result_from_pb(response.result), txn, response.duplicate)

    async def put(self, key: Key, value: UserValue, **kw: Any) -> Result:
        return await self.txn(then=[ops.put(key, value)], **kw)

    async def delete(self, key: Key, **kw: Any) -> Result:
        return await self.txn(then=[ops.delete(key)], **kw)

    async def add(self, key: Key, delta: int, **kw: Any) -> Result:
        return _raise_on_abort(await self.txn(then=[ops.add(key, delta)], **kw))

    async def append(self, key: Key, item: bytes | int | str, **kw: Any) -> Result:
        return _raise_on_abort(await self.txn(then=[ops.append(key, item)], **kw))

    async def result(
        self, request_id: str | None = None, *, position: int | None = None,
        timeout: float | None = None,
    ) -> Result:
        """The outcome of an earlier transaction, by request id or position."""
        if (request_id is None) == (position is None):
            raise ValueError("give a request id or a position")
        _check_count("position", position, 1)
        request = (
            cpb.GetResultRequest(request_id=request_id)
            if request_id is not None
            else cpb.GetResultRequest(position=position)
        )
        response = await self._call(
            lambda left: self.stub.GetResult(request, timeout=left), timeout
        )
        return _to_result(wire.result_from_pb(response.result), None, False)

    async def tail(self, *, timeout: float | None = None) -> int:
        response = await self._call(
            lambda left: self.stub.Tail(cpb.TailRequest(), timeout=left), timeout
        )
        return int(response.position)

    async def status(self, *, timeout: float | None = None) -> cpb.StatusResponse:
        return await self._call(
            lambda left: self.stub.Status(cpb.StatusRequest(), timeout=left), timeout
        )

    # -------------------------------------------------------------- reads

    async def _read_at(
        self, min_position: int | None, at_position: int | None, timeout: float | None
    ) -> tuple[int, int]:
        """(min_position, at_position) for a read; neither given means linearizable.
        The caller checked them (``_check_read``) before any call."""
        if at_position is not None:
            return 0, at_position
        if min_position is None:
            # Linearizable, as etcd's default read: at least the log tail as
            # of now, so every write acknowledged before this call is seen.
            return await self._tails.get(self.timeout if timeout is None else timeout), 0
        return min_position, 0

    async def get_item(
        self, key: Key, *, min_position: int | None = None, at_position: int | None = None,
        timeout: float | None = None,
    ) -> Item:
        """A key's value and version.

        By default the read is linearizable. ``min_position=P`` reads at least
        at P (read-your-writes: pass your commit's position); ``at_position=P``
        reads exactly as of P.
        """
        _check_read(min_position, at_position)
        raw = key_bytes(key)
        shard_map, shards = await self._routing()
        low, at = await self._read_at(min_position, at_position, timeout)
        shard = shard_map.shard_for_key(raw)
        pipe = self._get_pipes.get(shard)
        if pipe is None:
            stub, address = shards[shard], self._shard_addrs[shard]
            pipe = self._get_pipes[shard] = _get_pipe(lambda: self._open_stream(
                address, _GET_STREAM, spb.GetStreamResponse.FromString, stub.GetStream,
            ))
        request = spb.GetRequest(key=raw, min_position=low, at_position=at)
        response = await self._call(lambda left: pipe.ask(request, left), timeout)
        kv = wire.kv_from_pb(response.item)
        return Item(key, from_value(kv.value), kv.version)

    async def get(
        self, key: Key, *, min_position: int | None = None, at_position: int | None = None,
        timeout: float | None = None,
    ) -> Any:
        """A key's value (None when missing); consistency as in :meth:`get_item`."""
        item = await self.get_item(
            key, min_position=min_position, at_position=at_position, timeout=timeout
        )
        return item.value

    async def range(
        self, prefix: Key, *, min_position: int | None = None, at_position: int | None = None,
        limit: int = 0, timeout: float | None = None,
    ) -> list[Item]:
        """Keys starting with ``prefix``, in key order, across every shard that may hold them.

        Consistency as in :meth:`get_item`; with ``at_position`` the answer is
        one consistent cut across shards.
        """
        _check_read(min_position, at_position)
        _check_count("limit", limit)
        raw = key_bytes(prefix)
        shard_map, shards = await self._routing()
        low, at = await self._read_at(min_position, at_position, timeout)
        one = shard_map.shard_for_prefix(raw)
        targets = [shards[one]] if one is not None else shards
        async def pages(stub: shard_pb2_grpc.ShardServiceStub) -> list[Any]:
            """Every key of one shard (or the first ``limit``), page by page,
            all as of the position of the first page."""
            out: list[Any] = []
            start, position_at = b"", at
            while True:
                request = spb.RangeRequest(prefix=raw, min_position=low, at_position=position_at,
                                           limit=limit - len(out) if limit else 0,
                                           start_key=start)
                reply = await self._call(
                    lambda left, r=request: stub.Range(r, timeout=left), timeout
                )
                out.extend(reply.items)
                if not reply.more or (limit and len(out) >= limit):
                    return out
                start, position_at = reply.items[-1].key + b"\x00", reply.position

        replies = await asyncio.gather(*(pages(stub) for stub in targets))
        items = sorted(
            (wire.kv_from_pb(kv) for reply in replies for kv in reply), key=lambda kv: kv.key
        )
        if limit:
            items = items[:limit]
        as_text = isinstance(prefix, str)
        return [
            Item(kv.key.decode() if as_text else kv.key, from_value(kv.value), kv.version)
            for kv in items
        ]

    async def history(
        self, key: Key, *, from_position: int | None = None, limit: int = 0,
        min_position: int | None = None, timeout: float | None = None,
    ) -> list[Item]:
        """The key's retained versions, oldest first; a deletion has value None.

        Without ``from_position`` it starts at the oldest retained version;
        below the retention horizon it raises :class:`OutOfRange`.
        """
        _check_read(min_position, None)
        _check_count("from_position", from_position)
        _check_count("limit", limit)
        raw = key_bytes(key)
        shard_map, shards = await self._routing()
        low, _ = await self._read_at(min_position, None, timeout)
        stub = shards[shard_map.shard_for_key(raw)]
        request = spb.HistoryRequest(
            key=raw, from_position=from_position or 0, limit=limit, min_position=low
        )
        response = await self._call(lambda left: stub.History(request, timeout=left), timeout)
        return [
            Item(key, from_value(wire.kv_from_pb(v).value), v.version)
            for v in response.versions
        ]

    def snapshot(self, position: int | None = None) -> Snapshot:
        """A consistent cut across every shard at ``position`` (default: the tail)."""
        _check_count("position", position, 1)
        return Snapshot(self, position)

    async def watch(
        self, key: Key | None = None, *, prefix: Key | None = None,
        from_position: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Changes to a key or a prefix, in position order: retained history
        from ``from_position``, then live. Without ``from_position`` it starts
        after the current tail. After a disconnect it resumes from the last
        position it delivered, with no gap and no duplicate.
        """
        if (key is None) == (prefix is None):
            raise ValueError("watch a key or a prefix")
        _check_count("from_position", from_position)
        pattern = key_bytes(key if key is not None else prefix)  # type: ignore[arg-type]
        as_text = isinstance(key if key is not None else prefix, str)
        shard_map, shards = await self._routing()
        if key is not None:
            targets = [shard_map.shard_for_key(pattern)]
            request_kw: dict[str, Any] = {"key": pattern}
        else:
            one = shard_map.shard_for_prefix(pattern)
            targets = [one] if one is not None else list(range(len(shards)))
            request_kw = {"prefix": pattern}
        next_position = (
            from_position if from_position is not None else await self.tail() + 1
        )
        backoff_s = 0.05
        while True:
            calls = [
                shards[t].Watch(spb.WatchRequest(from_position=next_position, **request_kw))
                for t in targets
            ]
            merger = _Merger(len(calls))
            readers = [asyncio.ensure_future(call.read()) for call in calls]
            try:
                while True:
                    done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
                    for i, reader in enumerate(readers):
                        if reader not in done:
                            continue
                        message = reader.result()
                        if message is grpc.aio.EOF:
                            raise errors.Unavailable("watch stream ended")
                        merger.add(i, message)
                        readers[i] = asyncio.ensure_future(calls[i].read())
                    for event in merger.ready():
                        yield WatchEvent(
                            position=event.position,
                            key=event.key.decode() if as_text else event.key,
                            value=from_value(wire.value_from_pb(event.value))
                            if event.HasField("value") else None,
                            deleted=not event.HasField("value"),
                            request_id=event.request_id,
                        )
                        next_position = event.position + 1
                    next_position = max(next_position, merger.progress() + 1)
                    backoff_s = 0.05
            except grpc.aio.AioRpcError as error:
                mapped = errors.from_rpc_error(error)
                if not mapped.retryable and error.code() != grpc.StatusCode.UNKNOWN:
                    raise mapped from None
            except errors.Unavailable:
                pass
            finally:
                for reader in readers:
                    reader.cancel()
                for call in calls:
                    call.cancel()
            await asyncio.sleep(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)

    async def subscribe(self, from_position: int = 1) -> AsyncIterator[Committed]:
        """Every committed transaction from ``from_position`` on, in log order,
        with its outcome and writes; resumes by itself after a disconnect."""
        next_position = max(1, from_position)
        backoff_s = 0.05
        while True:
            call = self.stub.Subscribe(cpb.SubscribeRequest(from_position=next_position))
            try:
                async for message in call:
                    backoff_s = 0.05
                    for txn in message.txns:
                        yield Committed(
                            position=txn.position,
                            request_id=txn.request_id,
                            succeeded=txn.succeeded,
                            aborted=txn.HasField("abort"),
                            writes=[
                                (w.key, from_value(wire.value_from_pb(w.value))
                                 if w.HasField("value") else None)
                                for w in txn.writes
                            ],
                            timestamp_ms=txn.timestamp_ms,
                        )
                        next_position = txn.position + 1
                    next_position = max(next_position, message.progress + 1)
            except grpc.aio.AioRpcError as error:
                mapped = errors.from_rpc_error(error)
                if not mapped.retryable:
                    raise mapped from None
            finally:
                call.cancel()
            await asyncio.sleep(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    position: int
    key: Any
    value: Any
    deleted: bool
    request_id: str


@dataclass(frozen=True, slots=True)
class Committed:
    """A committed transaction as the log subscriber sees it."""

    position: int
    request_id: str
    succeeded: bool
    aborted: bool
    writes: list[tuple[bytes, Any]]
    timestamp_ms: int


class _Merger:
    """Merges per-shard watch streams into one position order.

    Each stream delivers its events in position order with a progress mark;
    an event is released once every stream's progress has reached it.
    """

    def __init__(self, streams: int) -> None:
        self.progress_of = [0] * streams
        self.pending: list[Any] = []

    def add(self, stream: int, message: spb.WatchResponse) -> None:
        self.pending.extend(message.events)
        self.progress_of[stream] = max(self.progress_of[stream], message.progress)

    def progress(self) -> int:
        return min(self.progress_of)

    def ready(self) -> list[Any]:
        upto = self.progress()
        out = [e for e in self.pending if e.position <= upto]
        if out:
            self.pending = [e for e in self.pending if e.position > upto]
            out.sort(key=lambda e: (e.position, e.key))
        return out


class Snapshot:
    """Reads that all answer as of one position, on every shard."""

    def __init__(self, client: AsyncClient, position: int | None) -> None:
        self._client = client
        self._position = position

    async def position(self) -> int:
        if self._position is None:
            self._position = await self._client.tail()
        return self._position

    async def get(self, key: Key) -> Any:
        return await self._client.get(key, at_position=await self.position())

    async def get_item(self, key: Key) -> Item:
        return await self._client.get_item(key, at_position=await self.position())

    async def get_many(self, keys: Iterable[Key]) -> dict[Any, Any]:
        at = await self.position()
        keys = list(keys)
        values = await asyncio.gather(*(self._client.get(k, at_position=at) for k in keys))
        return dict(zip(keys, values, strict=True))

    async def range(self, prefix: Key, limit: int = 0) -> list[Item]:
        return await self._client.range(prefix, at_position=await self.position(), limit=limit)


def connect(
    address: str, *, timeout: float = DEFAULT_TIMEOUT_S, token: str | None = None,
    tls: TLSConfig | str | bool | None = None, shard_addresses: list[str] | None = None,
    bus: bool = True,
) -> AsyncClient:
    """An :class:`AsyncClient`; use it as ``async with ordo.connect(addr) as db``."""
    return AsyncClient(address, timeout=timeout, token=token, tls=tls,
                       shard_addresses=shard_addresses, bus=bus)


def _to_result(result: TxnResult, txn: Txn | None, duplicate: bool) -> Result:
    """Map a wire result to the user's view, with keys as the user spelled them."""
    branch: tuple[Op, ...] = ()
    if txn is not None:
        branch = txn.success if result.succeeded else txn.failure
    values: dict[Any, Any] = {}
    ranges: dict[Any, list[Item]] = {}
    for op_result in result.results:
        op = branch[op_result.index] if op_result.index < len(branch) else None
        text = op is not None and isinstance(op.label, str)
        if op is None or op.type is OpType.GET:
            for kv in op_result.items:
                values[kv.key.decode() if text else kv.key] = from_value(kv.value)
        else:
            ranges[op.label if text else op.key] = [
                Item(kv.key.decode() if text else kv.key, from_value(kv.value), kv.version)
                for kv in op_result.items
            ]
    abort = result.abort
    return Result(
        position=result.position,
        request_id=result.request_id,
        applied=True,
        succeeded=result.succeeded,
        values=values,
        ranges=ranges,
        abort_reason=None if abort is None else abort.reason.name,
        abort_message=None if abort is None else abort.message,
        duplicate=duplicate,
    )


def _raise_on_abort(result: Result) -> Result:
    if result.aborted:
        raise TransactionAborted(result)
    return result


class Client:
    """The blocking facade: the same methods as :class:`AsyncClient`.

    ``with ordo.Client(address) as db: db.put("k", 1)``. An event loop runs in
    a background thread; each call waits for its coroutine there.
    """

    _METHODS = (
        "txn", "put", "delete", "add", "append", "result", "tail", "status",
        "get", "get_item", "range", "history",
    )

    def __init__(
        self, address: str, *, timeout: float = DEFAULT_TIMEOUT_S, token: str | None = None,
        tls: TLSConfig | str | bool | None = None, shard_addresses: list[str] | None = None,
        bus: bool = True,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="ordo-client")
        self._thread.start()
        self._async = AsyncClient(address, timeout=timeout, token=token, tls=tls,
                                  shard_addresses=shard_addresses, bus=bus)
        self._run(self._async.connect())

    def _run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    _STREAMS = ("watch", "subscribe")

    def __getattr__(self, name: str) -> Any:
        if name in self._STREAMS:
            return self._stream(name)
        if name not in self._METHODS:
            raise AttributeError(name)
        method = getattr(self._async, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def _stream(self, name: str) -> Callable[..., Iterator[Any]]:
        method = getattr(self._async, name)

        def call(*args: Any, **kwargs: Any) -> Iterator[Any]:
            agen = method(*args, **kwargs)
            try:
                while True:
                    try:
                        yield self._run(agen.__anext__())
                    except StopAsyncIteration:
                        return
            finally:
                self._run(agen.aclose())

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def snapshot(self, position: int | None = None) -> Any:
        """A blocking view of :meth:`AsyncClient.snapshot`."""
        snap = self._async.snapshot(position)
        run = self._run

        class _BlockingSnapshot:
            def position(self) -> int:
                return run(snap.position())

            def get(self, key: Key) -> Any:
                return run(snap.get(key))

            def get_many(self, keys: Iterable[Key]) -> dict[Any, Any]:
                return run(snap.get_many(keys))

            def range(self, prefix: Key, limit: int = 0) -> list[Item]:
                return run(snap.range(prefix, limit))

        return _BlockingSnapshot()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._async.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
