"""The shard service: pulls the sequencer log, applies its entries, serves reads.

Order of work for each log entry (the adapter around
:class:`ordo.core.apply.ShardApplier`):

1. The log puller receives the entry, plans it, and at once asks the owner
   shards for its remote inputs (pipelined ``ReadAt``).
2. The applier takes entries in log order, waits for their inputs, applies
   them into the in-memory overlay and advances the in-memory applied
   position (reads and peers may use it: it is deterministic, and a crash
   replays to the same state).
3. When the queue runs dry, or ``SHARD_FLUSH_ENTRIES_MAX`` entries are
   pending, the applier writes them (versions, shard log, results, applied
   position, digest) as one synced LevelDB batch, and only then publishes the
   results to the coordinator.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import grpc

from ordo import errors, rpc, serve, wire
from ordo.core import limits as L
from ordo.core.apply import ShardApplier
from ordo.core.partition import ShardMap
from ordo.core.txn import Txn, Versioned
from ordo.v1 import coordinator_pb2 as cpb
from ordo.v1 import coordinator_pb2_grpc, shard_pb2_grpc
from ordo.v1 import shard_pb2 as spb
from ordo.v1 import types_pb2 as pb
from ordo.waiters import PositionWatch
from shard.peers import Inputs, PeerReader
from shard.store import ShardStore

log = logging.getLogger("ordo.shard")

DEFAULT_WAIT_S = 30.0


@dataclass(slots=True)
class ShardConfig:
    shard: int
    listen: str
    data_dir: str
    coordinator: str
    peers: list[str]
    sync: bool = True
    limits: L.Limits = field(default_factory=L.Limits)
    # Deliberate bugs, for proving that the fault runner's checkers bite:
    # "skip-writes" drops the writes of one transaction on this shard;
    # "stale-read" serves reads without waiting for min_position.
    inject_bug: str = ""


@dataclass(slots=True)
class _Item:
    entry: pb.LogEntry
    txn: Txn | None
    inputs: list[asyncio.Future[Inputs]]


class Shard(shard_pb2_grpc.ShardServiceServicer):
    def __init__(self, config: ShardConfig) -> None:
        self.config = config
        self.id = config.shard
        self.store = ShardStore(config.data_dir)
        applied = self.store.applied()
        self.applied = PositionWatch(applied)  # in memory, may be ahead of disk
        self.durable = PositionWatch(applied)  # on disk
        self.received = applied  # newest position handed to the applier
        self.applier: ShardApplier | None = None
        raw_map = self.store.shard_map_bytes()
        if raw_map is not None:
            self._set_shard_map(pb.ShardMap.FromString(raw_map))
            assert self.applier is not None
            self.applier.digest = self.store.digest()
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(L.SHARD_LOG_QUEUE_MAX)
        self.peers: dict[int, PeerReader] = {}
        self.subscribers: set[asyncio.Queue[spb.StreamResultsResponse | None]] = set()
        self.server = rpc.Server(config.listen, ["ordo.v1.ShardService"])
        shard_pb2_grpc.add_ShardServiceServicer_to_server(self, self.server.server)
        self.tasks: list[asyncio.Task[None]] = []
        self.log_tail = applied
        self.durable_digest = self.store.digest()

    # ------------------------------------------------------------ lifecycle

    def _set_shard_map(self, msg: pb.ShardMap) -> None:
        shard_map = ShardMap(msg.shard_count, msg.partitioner)
        if shard_map.shard_count != len(self.config.peers):
            raise SystemExit(
                f"shard map has {shard_map.shard_count} shards, but {len(self.config.peers)} "
                "peers are configured"
            )
        self.shard_map = shard_map
        self.applier = ShardApplier(self.id, shard_map)

    async def start(self) -> None:
        await self.server.start()
        for peer_id, address in enumerate(self.config.peers):
            if peer_id != self.id:
                self.peers[peer_id] = PeerReader(peer_id, address)
                self.peers[peer_id].start()
        self.tasks.append(serve.critical_task(self._pull_log(), "pull-log"))
        self.tasks.append(serve.critical_task(self._apply_loop(), "apply"))
        await self.server.set_serving(True)
        log.info("shard %d serving on %s, applied %d", self.id, self.config.listen,
                 self.applied.position)

    async def stop(self) -> None:
        await self.server.set_serving(False)
        await self.server.stop(1.0)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for peer in self.peers.values():
            await peer.close()
        self.store.close()

    # ------------------------------------------------------------- pulling

    async def _pull_log(self) -> None:
        backoff_s = 0.05
        while True:
            channel = rpc.channel(self.config.coordinator)
            try:
                stub = coordinator_pb2_grpc.SequencerServiceStub(channel)
                stream = stub.ReadLog(
                    cpb.ReadLogRequest(from_position=self.received + 1, reader=f"shard-{self.id}")
                )
                async for msg in stream:
                    backoff_s = 0.05
                    for entry in msg.batch.entries:
                        await self._receive(entry)
            except grpc.aio.AioRpcError as error:
                log.info("log stream broke: %s", error.code().name)
            finally:
                await channel.close()
            await asyncio.sleep(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)

    async def _receive(self, entry: pb.LogEntry) -> None:
        position = entry.position
        if position <= self.received:
            return  # a resent entry after a reconnect
        assert position == self.received + 1, f"gap in the log: {self.received} -> {position}"
        self.received = position
        self.log_tail = max(self.log_tail, position)
        txn: Txn | None = None
        inputs: list[asyncio.Future[Inputs]] = []
        if entry.HasField("txn"):
            assert self.applier is not None, "the shard map comes first in the log"
            txn = wire.txn_from_pb_trusted(entry.txn)
            plan = self.applier.plan(txn)
            if not plan.participant:
                txn = None
            else:
                for peer_id, keys in sorted(plan.remote_inputs.items()):
                    inputs.append(self.peers[peer_id].request(position, keys))
        elif entry.HasField("shard_map"):
            # Plan later entries with the map at once; it is persisted with
            # the applied position.
            self._set_shard_map(entry.shard_map)
        await self.queue.put(_Item(entry, txn, inputs))

    # ------------------------------------------------------------ applying

    async def _apply_loop(self) -> None:
        pending_writes: list[tuple[int, bytes, object]] = []
        pending_log: list[tuple[int, bytes]] = []
        pending_results: list[pb.ShardResult] = []
        shard_map_bytes: bytes | None = None
        count = 0
        while True:
            if self.queue.empty() and count:
                await self._flush(pending_writes, pending_log, pending_results, shard_map_bytes)
                pending_writes, pending_log, pending_results = [], [], []
                shard_map_bytes, count = None, 0
            item = await self.queue.get()
            entry = item.entry
            position = entry.position
            if entry.HasField("shard_map"):
                shard_map_bytes = entry.shard_map.SerializeToString()
            elif item.txn is not None:
                remote: Inputs = {}
                for future in item.inputs:
                    if not future.done() and count:
                        # Publish what is done before blocking on a peer.
                        await self._flush(
                            pending_writes, pending_log, pending_results, shard_map_bytes
                        )
                        pending_writes, pending_log, pending_results = [], [], []
                        shard_map_bytes, count = None, 0
                    remote.update(await future)
                assert self.applier is not None
                applied = self.applier.apply(
                    position,
                    entry.request_id,
                    item.txn,
                    lambda key, p=position: self.store.read_before(key, p),
                    remote,
                    lambda prefix, limit, p=position: self.store.scan_before(prefix, p, limit),
                )
                outcome = applied.outcome
                if self.config.inject_bug == "skip-writes" and outcome.writes and position > 50:
                    log.warning("injected bug: dropping the writes of position %d", position)
                    self.config.inject_bug = ""
                    outcome = replace(outcome, writes=())
                self.store.overlay.add(position, outcome.writes)
                pending_writes.extend((position, key, value) for key, value in outcome.writes)
                pending_log.append((position, entry.SerializeToString()))
                result = spb_result(self.id, applied)
                pending_results.append(result)
                if outcome.abort is not None:
                    log.info("txn %d aborted: %s", position, outcome.abort.message)
            count += 1
            self.applied.advance(position)
            if count >= L.SHARD_FLUSH_ENTRIES_MAX:
                await self._flush(pending_writes, pending_log, pending_results, shard_map_bytes)
                pending_writes, pending_log, pending_results = [], [], []
                shard_map_bytes, count = None, 0

    async def _flush(
        self,
        writes: list[tuple[int, bytes, object]],
        log_entries: list[tuple[int, bytes]],
        results: list[pb.ShardResult],
        shard_map_bytes: bytes | None,
    ) -> None:
        applied = self.applied.position
        assert self.applier is not None
        digest = self.applier.digest
        encoded = [(r.position, r.SerializeToString()) for r in results]
        await asyncio.to_thread(
            self.store.write_batch,
            writes,  # type: ignore[arg-type]
            log_entries,
            encoded,
            applied,
            digest,
            shard_map_bytes,
            self.config.sync,
        )
        self.store.overlay.clear()
        self.durable_digest = digest
        self.durable.advance(applied)
        if self.subscribers:
            message = spb.StreamResultsResponse(results=results, applied_position=applied)
            for queue in list(self.subscribers):
                if queue.full():
                    # A subscriber this far behind reconnects and catches up
                    # from disk rather than holding memory here.
                    self.subscribers.discard(queue)
                    queue.put_nowait(None) if not queue.full() else None
                    continue
                queue.put_nowait(message)

    # --------------------------------------------------------------- reads

    async def _wait_applied(self, position: int, context: grpc.aio.ServicerContext) -> None:
        if position <= self.applied.position or self.config.inject_bug == "stale-read":
            return
        timeout_s = rpc.deadline_s(context, DEFAULT_WAIT_S)
        if not await self.applied.wait(position, timeout_s):
            raise errors.DeadlineExceeded(
                f"shard {self.id} reached position {self.applied.position}, not {position}",
                position=self.applied.position,
            )

    def _check_key(self, key: bytes, name: str = "key") -> None:
        if not key:
            raise errors.InvalidArgument("key is empty", field=name)
        if len(key) > self.config.limits.key_bytes_max:
            raise errors.InvalidArgument("key is over key_bytes_max", field=name)
        if self.applier is not None and self.shard_map.shard_for_key(key) != self.id:
            raise errors.FailedPrecondition(
                f"key belongs to shard {self.shard_map.shard_for_key(key)}, not {self.id}"
            )

    @rpc.unary
    async def Get(self, request: spb.GetRequest, context: grpc.aio.ServicerContext) -> spb.GetResponse:
        self._check_key(request.key)
        await self._wait_applied(request.min_position, context)
        position = self.applied.position
        state = self.store.read_before(request.key, position + 1)
        response = spb.GetResponse(position=position)
        response.item.key = request.key
        if state is not None:
            response.item.version = state.version
            wire.value_to_pb(state.value, response.item.value)
        return response

    @rpc.unary
    async def Range(
        self, request: spb.RangeRequest, context: grpc.aio.ServicerContext
    ) -> spb.RangeResponse:
        if len(request.prefix) > self.config.limits.key_bytes_max:
            raise errors.InvalidArgument("prefix is over key_bytes_max", field="prefix")
        limit = request.limit or self.config.limits.range_keys_max
        if limit > self.config.limits.range_keys_max:
            raise errors.InvalidArgument("limit is over range_keys_max", field="limit")
        await self._wait_applied(request.min_position, context)
        position = self.applied.position
        items, more = self.store.scan_before(request.prefix, position + 1, limit)
        response = spb.RangeResponse(more=more, position=position)
        for kv in items:
            wire.kv_to_pb(kv, response.items.add())
        return response

    async def ReadAt(
        self,
        request_iterator: AsyncIterator[spb.ReadAtRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[spb.ReadAtResponse]:
        async for request in request_iterator:
            # Everything before the position must be applied; the wait is
            # unbounded by design: the requester is behind us in the log
            # only if we are behind it, and the lowest position always
            # progresses.
            await self.applied.wait(request.position - 1, None)
            response = spb.ReadAtResponse(position=request.position)
            for key in request.keys:
                state: Versioned | None = self.store.read_before(key, request.position)
                item = response.items.add(key=key)
                if state is not None:
                    item.version = state.version
                    wire.value_to_pb(state.value, item.value)
            yield response

    @rpc.server_stream
    async def StreamResults(
        self, request: spb.StreamResultsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[spb.StreamResultsResponse]:
        queue: asyncio.Queue[spb.StreamResultsResponse | None] = asyncio.Queue(1024)
        self.subscribers.add(queue)
        try:
            upto = self.durable.position
            stored = spb.StreamResultsResponse(applied_position=upto)
            for position, raw in self.store.results_from(request.from_position, upto):
                stored.results.append(pb.ShardResult.FromString(raw))
                if len(stored.results) >= L.LOG_STREAM_BATCH_ENTRIES_MAX:
                    yield stored
                    stored = spb.StreamResultsResponse(applied_position=upto)
            yield stored
            while True:
                message = await queue.get()
                if message is None:
                    raise errors.ResourceExhausted("results subscriber fell behind")
                if message.applied_position <= upto:
                    continue
                yield message
        finally:
            self.subscribers.discard(queue)

    @rpc.unary
    async def GetShardResult(
        self, request: spb.GetShardResultRequest, context: grpc.aio.ServicerContext
    ) -> spb.GetShardResultResponse:
        position = request.position
        if position > self.durable.position:
            timeout_s = rpc.deadline_s(context, DEFAULT_WAIT_S)
            if not await self.durable.wait(position, timeout_s):
                raise errors.DeadlineExceeded(
                    f"shard {self.id} has not applied position {position} yet",
                    position=self.durable.position,
                )
        raw = self.store.result(position)
        if raw is None:
            return spb.GetShardResultResponse(participant=False)
        return spb.GetShardResultResponse(result=pb.ShardResult.FromString(raw), participant=True)

    @rpc.unary
    async def ShardStatus(
        self, request: spb.ShardStatusRequest, context: grpc.aio.ServicerContext
    ) -> spb.ShardStatusResponse:
        return spb.ShardStatusResponse(
            shard=self.id,
            applied_position=self.durable.position,
            digest=self.durable_digest,
            log_position=self.log_tail,
        )


def spb_result(shard: int, applied: object) -> pb.ShardResult:
    from ordo.core.apply import Applied

    assert isinstance(applied, Applied)
    outcome = applied.outcome
    msg = pb.ShardResult(
        position=applied.position,
        shard=shard,
        request_id=applied.request_id,
        succeeded=outcome.succeeded,
        digest=applied.digest,
    )
    if outcome.abort is not None:
        wire.abort_to_pb(outcome.abort, msg.abort)
    wire.op_results_to_pb(outcome.results, msg.results)
    return msg
