"""The Python client: asyncio first, with a blocking facade of the same shape.

Transactions go to the coordinator; reads go straight to the shard that owns
the key, routed with the shard map the coordinator publishes. Every submit
carries a request id; on ``UNAVAILABLE`` (or ``RESOURCE_EXHAUSTED``) the
client retries with the same id, with full-jitter backoff bounded by the
caller's timeout, and the coordinator's deduplication makes sure a retry never
commits twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from ordo import errors, ops, rpc, wire
from ordo.core.partition import ShardMap
from ordo.core.txn import Compare, Op, OpType, Txn, TxnResult
from ordo.errors import TransactionAborted
from ordo.ops import Key, UserValue, from_value, key_bytes
from ordo.v1 import coordinator_pb2 as cpb
from ordo.v1 import coordinator_pb2_grpc, shard_pb2_grpc
from ordo.v1 import shard_pb2 as spb

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0


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


def _retryable(error: BaseException) -> bool:
    return isinstance(error, errors.OrdoError) and error.retryable


class AsyncClient:
    """``async with ordo.connect(address) as db: ...``"""

    def __init__(self, address: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.address = address
        self.timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: coordinator_pb2_grpc.CoordinatorServiceStub | None = None
        self._shard_map: ShardMap | None = None
        self._shards: list[shard_pb2_grpc.ShardServiceStub] = []
        self._shard_channels: list[grpc.aio.Channel] = []

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if self._channel is None:
            self._channel = rpc.channel(self.address)
            self._stub = coordinator_pb2_grpc.CoordinatorServiceStub(self._channel)

    async def close(self) -> None:
        for ch in self._shard_channels:
            await ch.close()
        self._shard_channels, self._shards, self._shard_map = [], [], None
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

    @property
    def stub(self) -> coordinator_pb2_grpc.CoordinatorServiceStub:
        if self._stub is None:
            raise errors.Cancelled("the client is not connected")
        return self._stub

    async def _routing(self) -> tuple[ShardMap, list[shard_pb2_grpc.ShardServiceStub]]:
        if self._shard_map is None:
            info = await self._call(
                lambda left: self.stub.ClusterInfo(cpb.ClusterInfoRequest(), timeout=left), None
            )
            shard_map = ShardMap(info.shard_map.shard_count, info.shard_map.partitioner)
            channels = [rpc.channel(s.address) for s in sorted(info.shards, key=lambda s: s.shard)]
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
        request.txn.CopyFrom(wire.txn_to_pb(txn))
        response = await self._call(
            lambda left: self.stub.Submit(request, timeout=left), timeout
        )
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

    async def get_item(
        self, key: Key, *, min_position: int = 0, timeout: float | None = None
    ) -> Item:
        """The key's newest value and version, once its shard has applied ``min_position``."""
        raw = key_bytes(key)
        shard_map, shards = await self._routing()
        stub = shards[shard_map.shard_for_key(raw)]
        request = spb.GetRequest(key=raw, min_position=min_position)
        response = await self._call(lambda left: stub.Get(request, timeout=left), timeout)
        kv = wire.kv_from_pb(response.item)
        return Item(key, from_value(kv.value), kv.version)

    async def get(
        self, key: Key, *, min_position: int = 0, timeout: float | None = None
    ) -> Any:
        """The key's newest value (None when missing)."""
        return (await self.get_item(key, min_position=min_position, timeout=timeout)).value

    async def range(
        self, prefix: Key, *, min_position: int = 0, limit: int = 0,
        timeout: float | None = None,
    ) -> list[Item]:
        """Keys starting with ``prefix``, in key order, across every shard that may hold them."""
        raw = key_bytes(prefix)
        shard_map, shards = await self._routing()
        one = shard_map.shard_for_prefix(raw)
        targets = [shards[one]] if one is not None else shards
        request = spb.RangeRequest(prefix=raw, min_position=min_position, limit=limit)
        replies = await asyncio.gather(
            *(
                self._call(lambda left, s=stub: s.Range(request, timeout=left), timeout)
                for stub in targets
            )
        )
        items = sorted(
            (wire.kv_from_pb(kv) for reply in replies for kv in reply.items),
            key=lambda kv: kv.key,
        )
        if limit:
            items = items[:limit]
        as_text = isinstance(prefix, str)
        return [
            Item(kv.key.decode() if as_text else kv.key, from_value(kv.value), kv.version)
            for kv in items
        ]


def connect(address: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> AsyncClient:
    """An :class:`AsyncClient`; use it as ``async with ordo.connect(addr) as db``."""
    return AsyncClient(address, timeout=timeout)


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
        "get", "get_item", "range",
    )

    def __init__(self, address: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="ordo-client")
        self._thread.start()
        self._async = AsyncClient(address, timeout=timeout)
        self._run(self._async.connect())

    def _run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name not in self._METHODS:
            raise AttributeError(name)
        method = getattr(self._async, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

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
