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
   pending, the applier writes them (versions, shard log records with their
   inputs and writes, results, applied position, digest) as one synced
   LevelDB batch, and only then publishes them to result streams and
   watches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import grpc

from ordo import bus, errors, metrics, rpc, serve, trace, wire
from ordo.core import limits as L
from ordo.core import values as V
from ordo.core.apply import Applied, PendingWriters, ShardApplier
from ordo.core.partition import ShardMap
from ordo.core.txn import Txn, Versioned, decided_by_log
from ordo.linklog import LinkLog
from ordo.security import TLSConfig
from ordo.v1 import coordinator_pb2 as cpb
from ordo.v1 import coordinator_pb2_grpc, shard_pb2_grpc
from ordo.v1 import shard_pb2 as spb
from ordo.v1 import types_pb2 as pb
from ordo.waiters import PositionWatch
from shard.peers import Inputs, LocalPeer, PeerReader
from shard.store import ShardStore

log = logging.getLogger("ordo.shard")

DEFAULT_WAIT_S = 30.0
LISTENER_QUEUE_MAX = 1024  # flushes a result stream or watch may lag behind
WATCH_EVENTS_PER_MESSAGE_MAX = 1024
DRAIN_TIMEOUT_S = 10.0
# How long the applier keeps the applied position of entries this shard has
# no part in unwritten, when nothing else arrives (under load, the next
# entry of its own carries it).
SKIPPED_FLUSH_DELAY_S = 0.02
# A results stream that asks for undecided results only gets a message
# with no results (progress alone) at most this often.
PROGRESS_INTERVAL_S = 0.05
# How long the applier, blocked on a peer's inputs, keeps what it applied
# since its batch began unpublished (unwritten, unreported). On hot keys
# split across shards every dependent transaction waits on a peer, often for
# well under a millisecond; publishing at each such wait cost a LevelDB
# write, a sync and a results message per transaction (+21% hot-key
# throughput without them in a lab harness; within the noise in the
# benchmark's). A peer that is down or slow delays the results of what was
# applied before the wait by about this much, no more.
BLOCKED_FLUSH_DELAY_S = 0.02
# The sync loop syncs at most this often. The state it makes durable is
# derived from the (already durable) sequencer log, so what this delays is
# the durable applied position alone (log truncation, health at start-up),
# never an answer; under load it saves an fsync and a trip through the disk
# thread per flush.
SYNC_INTERVAL_S = 0.01


@dataclass(slots=True)
class ShardConfig:
    shard: int
    listen: str
    data_dir: str
    coordinator: str
    peers: list[str]
    sync: bool = True
    limits: L.Limits = field(default_factory=L.Limits)
    # Retention: keep at least this many positions and this many seconds of
    # history (versions, log records, results). 0 disables that bound.
    retain_positions: int = 1_000_000
    retain_seconds: float = 24 * 3600.0
    compact_interval_s: float = 10.0
    # Security: TLS for this server and for dialing; the token table callers
    # are checked against (None: no authentication); this shard's own token.
    tls: TLSConfig | None = None
    tokens: dict[str, str] | None = None
    token: str | None = None
    insecure_listen_any: bool = False
    # Non-zero: serve the bus (internal streams, clients' GetStream) at the
    # port plus this offset.
    bus_port_offset: int = 0
    # Deliberate bugs, for proving that the fault runner's checkers bite:
    # "skip-writes" drops the writes of one transaction on this shard;
    # "stale-read" serves reads without waiting for min_position.
    inject_bug: str = ""


@dataclass(slots=True)
class _Item:
    position: int
    # None: positions up to ``position`` this shard takes no part in.
    entry: pb.LogEntry | None
    txn: Txn | None
    inputs: list[asyncio.Future[Inputs]]
    writes: tuple[bytes, ...] = ()  # own keys it may write (PendingWriters)


@dataclass(slots=True)
class _Flushed:
    """What one flush wrote (not yet fsynced), as published to streams."""

    records: list[pb.ShardLogRecord]
    results: list[pb.ShardResult]
    undecided: list[pb.ShardResult]  # results the log alone does not decide
    applied: int


class Shard(shard_pb2_grpc.ShardServiceServicer):
    def __init__(self, config: ShardConfig) -> None:
        self.config = config
        self.id = config.shard
        self.store = ShardStore(config.data_dir)
        self.store.claim_shard_id(config.shard)
        applied = self.store.applied()
        self.applied = PositionWatch(applied)  # in memory, may be ahead of disk
        self.durable = PositionWatch(applied)  # on disk
        self.durable_digest = self.store.digest()
        self.horizon, _ = self.store.horizon()
        self.received = applied  # newest position handed to the applier
        self.received_watch = PositionWatch(applied)
        # Received, not yet applied transactions by the keys they may write:
        # when a peer's ReadAt can be answered.
        self.writers = PendingWriters()
        self.log_tail = applied
        self.applier: ShardApplier | None = None
        raw_map = self.store.shard_map_bytes()
        if raw_map is not None:
            self._set_shard_map(pb.ShardMap.FromString(raw_map))
            assert self.applier is not None
            self.applier.digest = self.durable_digest
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(L.SHARD_LOG_QUEUE_MAX)
        self.peers: dict[int, PeerReader | LocalPeer] = {}
        # Peer shards hosted in this process (see ShardGroup): read directly.
        self.neighbours: dict[int, Shard] = {}
        self.listeners: set[asyncio.Queue[_Flushed | None]] = set()
        self.transport = rpc.Transport(config.tls, config.token, config.bus_port_offset)
        self.server = rpc.Server(config.listen, ["ordo.v1.ShardService"], config.tls,
                                 config.tokens, config.insecure_listen_any)
        shard_pb2_grpc.add_ShardServiceServicer_to_server(self, self.server.server)
        self.bus: bus.Server | None = None
        if config.bus_port_offset:
            self.bus = bus.Server(
                bus.address(config.listen, config.bus_port_offset),
                {
                    "/ordo.v1.ShardService/ReadAt":
                        bus.Method(spb.ReadAtRequest.FromString, self.ReadAt, client_streams=True),
                    "/ordo.v1.ShardService/StreamResults":
                        bus.Method(spb.StreamResultsRequest.FromString, self.StreamResults),
                    "/ordo.v1.ShardService/GetStream":
                        bus.Method(spb.GetStreamRequest.FromString, self.GetStream,
                                   client_streams=True),
                },
                config.tls, config.tokens, config.insecure_listen_any,
            )
        self.pull_task: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.idle = asyncio.Event()  # set while everything received is flushed
        self.written = PositionWatch(applied)  # in LevelDB, perhaps not yet synced
        self.written_digest = self.durable_digest
        self.sync_wanted = asyncio.Event()
        # The one thread that syncs and compacts, so that stop() can wait for it.
        self.disk = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="disk")

    # ------------------------------------------------------------ lifecycle

    def _set_shard_map(self, msg: pb.ShardMap) -> None:
        shard_map = ShardMap(msg.shard_count, msg.partitioner)
        if shard_map.shard_count != len(self.config.peers):
            raise SystemExit(
                f"shard map has {shard_map.shard_count} shards, but {len(self.config.peers)} "
                "peers are configured"
            )
        digest = self.applier.digest if self.applier is not None else self.durable_digest
        self.shard_map = shard_map
        self.applier = ShardApplier(self.id, shard_map, digest)

    async def start(self) -> None:
        await self.server.start()
        if self.bus is not None:
            await self.bus.start()
        for peer_id, address in enumerate(self.config.peers):
            if peer_id == self.id:
                continue
            peer: PeerReader | LocalPeer
            if peer_id in self.neighbours:
                peer = LocalPeer(peer_id, self.neighbours[peer_id])
            else:
                peer = PeerReader(peer_id, address, self.transport)
            peer.start()
            self.peers[peer_id] = peer
        self.pull_task = serve.critical_task(self._pull_log(), "pull-log")
        self.tasks.append(serve.critical_task(self._apply_loop(), "apply"))
        self.tasks.append(serve.critical_task(self._compact_loop(), "compact"))
        self.tasks.append(serve.critical_task(self._sync_loop(), "sync"))
        self.tasks.append(asyncio.create_task(self._serve_when_caught_up(), name="health"))
        log.info("shard %d serving on %s, applied %d, horizon %d", self.id, self.config.listen,
                 self.applied.position, self.horizon)

    async def stop(self) -> None:
        """Drain: stop pulling, apply and flush what was received, close."""
        await self.server.set_serving(False)
        if self.pull_task is not None:
            self.pull_task.cancel()
            await asyncio.gather(self.pull_task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.idle.wait(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.warning("shard %d: stopping with %d entries unapplied (they replay on restart)",
                        self.id, self.queue.qsize())
        await self.server.stop(1.0)
        if self.bus is not None:
            await self.bus.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for peer in self.peers.values():
            await peer.close()
        # Let a sync or compaction already in the thread finish before the
        # last sync and the close.
        self.disk.shutdown(wait=True)
        self.store.sync()
        self.durable.advance(self.written.position)
        self.store.close()
        log.info("shard %d stopped at applied %d", self.id, self.durable.position)

    async def _serve_when_caught_up(self) -> None:
        """Report SERVING only once everything logged at start-up is applied."""
        await self.server.set_serving(False)
        while True:
            try:
                async with self.transport.channel(self.config.coordinator) as ch:
                    reply = await coordinator_pb2_grpc.CoordinatorServiceStub(ch).Tail(
                        cpb.TailRequest(), timeout=2.0, wait_for_ready=True
                    )
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
        await self.durable.wait(reply.position, None)
        await self.server.set_serving(True)
        log.info("shard %d caught up to %d: serving", self.id, reply.position)

    # ------------------------------------------------------------- pulling

    async def _pull_log(self) -> None:
        backoff_s = 0.05
        link = LinkLog(log, "log stream")
        while True:
            channel = self.transport.channel(self.config.coordinator)
            stream: Any = None
            try:
                request = cpb.ReadLogRequest(
                    from_position=self.received + 1, reader=f"shard-{self.id}"
                )
                if self.transport.bus_port_offset:
                    stream = await bus.open_stream(
                        self.transport, self.config.coordinator,
                        "/ordo.v1.SequencerService/ReadLog", cpb.ReadLogResponse.FromString,
                        request,
                    )
                else:
                    stream = coordinator_pb2_grpc.SequencerServiceStub(channel).ReadLog(request)
                async for msg in stream:
                    backoff_s = 0.05
                    link.up()
                    await self._receive(msg.batch.entries)
            except grpc.aio.AioRpcError as error:
                link.broke(error.code().name)
            except errors.OrdoError as error:
                link.broke(f"{error.code.name}: {error.message}")
            finally:
                if stream is not None:
                    stream.cancel()
                await channel.close()
            await asyncio.sleep(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)

    async def _receive(self, entries: Sequence[pb.LogEntry]) -> None:
        """Queue a batch of log entries for the applier: one item per entry
        this shard takes part in, one for a run of entries it has no part in."""
        skipped = 0
        for entry in entries:
            position = entry.position
            if position <= self.received:
                continue  # a resent entry after a reconnect
            assert position == self.received + 1, f"gap in the log: {self.received} -> {position}"
            item: _Item | None = None
            if entry.HasField("txn"):
                assert self.applier is not None, "the shard map comes first in the log"
                participants = entry.participants or wire.participants_pb(
                    entry.txn, self.shard_map
                )
                if self.id in participants:
                    txn = wire.txn_from_pb_trusted(entry.txn)
                    plan = self.applier.plan(txn)
                    assert plan.participant
                    self.writers.add(position, plan.local_writes)
                    inputs = [
                        self.peers[peer_id].request(position, keys)
                        for peer_id, keys in sorted(plan.remote_inputs.items())
                    ]
                    item = _Item(position, entry, txn, inputs, plan.local_writes)
                    if trace.ON:
                        trace.mark(entry.request_id, "shard.received")
            elif entry.HasField("shard_map"):
                # Plan later entries with the map at once; it is persisted with
                # the applied position.
                self._set_shard_map(entry.shard_map)
                item = _Item(position, entry, None, [])
            if item is None:
                skipped = position
            else:
                if skipped:
                    await self._enqueue(_Item(skipped, None, None, []))
                    skipped = 0
                await self._enqueue(item)
            self.received = position
            self.received_watch.advance(position)
        if skipped:
            await self._enqueue(_Item(skipped, None, None, []))
        self.log_tail = max(self.log_tail, self.received)

    async def _enqueue(self, item: _Item) -> None:
        self.idle.clear()
        await self.queue.put(item)

    # ------------------------------------------------------------ applying

    async def _apply_loop(self) -> None:
        batch = _Batch()
        loop = asyncio.get_running_loop()
        while True:
            item: _Item | None = None
            if self.queue.empty():
                if batch.count and not batch.records and batch.shard_map is None:
                    # Only positions this shard has no part in: nothing to
                    # publish, so persisting the applied position waits for
                    # the next write of its own, at most SKIPPED_FLUSH_DELAY_S
                    # after the batch began.
                    left = batch.started + SKIPPED_FLUSH_DELAY_S - loop.time()
                    if left > 0:
                        try:
                            item = await asyncio.wait_for(self.queue.get(), left)
                        except TimeoutError:
                            pass
                if item is None:
                    if batch.count:
                        await self._flush(batch)
                        batch = _Batch()
                    if self.queue.empty():
                        self.idle.set()
            if item is None:
                item = await self.queue.get()
            if not batch.count:
                batch.started = loop.time()
            entry = item.entry
            position = item.position
            if entry is None:
                pass  # positions this shard takes no part in
            elif entry.HasField("shard_map"):
                batch.shard_map = entry.shard_map.SerializeToString()
            elif item.txn is not None:
                remote: Inputs = {}
                for future in item.inputs:
                    if not future.done() and batch.records:
                        # Waiting on a peer: publish what is done if the
                        # wait lasts (see BLOCKED_FLUSH_DELAY_S).
                        left = batch.started + BLOCKED_FLUSH_DELAY_S - loop.time()
                        if left > 0:
                            await asyncio.wait((future,), timeout=left)
                        if not future.done():
                            await self._flush(batch)
                            batch = _Batch()
                    remote.update(await future)
                if not batch.count:
                    # This entry begins the batch (and its delay) once its
                    # inputs are in, whether or not it waited for them.
                    batch.started = loop.time()
                self._apply(batch, item, remote)
                self.writers.done(position, item.writes)
                if trace.ON:
                    trace.mark(entry.request_id, "shard.applied")
            batch.count += 1
            self.applied.advance(position)
            if batch.count >= L.SHARD_FLUSH_ENTRIES_MAX:
                await self._flush(batch)
                batch = _Batch()

    def _apply(self, batch: _Batch, item: _Item, remote: Inputs) -> None:
        entry, position = item.entry, item.position
        assert self.applier is not None and item.txn is not None and entry is not None
        applied = self.applier.apply(
            position,
            entry.request_id,
            item.txn,
            lambda key: self.store.read_before(key, position),
            remote,
            lambda prefix, limit: self.store.scan_before(prefix, position, limit),
        )
        if self.config.inject_bug == "skip-writes" and applied.outcome.writes and position > 50:
            log.warning("injected bug: dropping the writes of position %d", position)
            self.config.inject_bug = ""
            applied = replace(applied, outcome=replace(applied.outcome, writes=()))
        outcome = applied.outcome
        self.store.overlay.add(position, outcome.writes)
        batch.writes.extend((position, key, value) for key, value in outcome.writes)
        record = pb.ShardLogRecord(succeeded=outcome.succeeded, digest=applied.digest)
        record.entry.CopyFrom(entry)
        for key, state in remote.items():
            item_pb = record.inputs.add(key=key)
            if state is not None:
                item_pb.version = state.version
                wire.value_to_pb(state.value, item_pb.value)
        for key, value in outcome.writes:
            w = record.writes.add(key=key)
            if value is not None:
                wire.value_to_pb(value, w.value)
        if outcome.abort is not None:
            wire.abort_to_pb(outcome.abort, record.abort)
            log.info("txn %d (%s) aborted: %s", position, entry.request_id, outcome.abort.message)
        batch.records.append(record)
        result = shard_result(self.id, applied)
        batch.results.append(result)
        if not decided_by_log(item.txn):
            batch.undecided.append(result)

    async def _flush(self, batch: _Batch) -> None:
        """Write ``batch`` to LevelDB (one atomic batch) and publish it.

        The write is not synced here, so the applier never waits for the
        disk: the sync loop fsyncs behind it and advances ``durable``.
        Publishing before the fsync is safe because the sequencer log is
        durable and the apply deterministic: after a power loss the shard
        replays to the same records, results and events.
        """
        applied = self.applied.position
        assert self.applier is not None
        digest = self.applier.digest
        started = time.perf_counter()
        self.store.write_batch(
            batch.writes,
            [(r.entry.position, r.SerializeToString()) for r in batch.records],
            [(r.position, r.SerializeToString()) for r in batch.results],
            applied,
            digest,
            batch.shard_map,
            False,
        )
        self.store.overlay.drop_upto(applied, (key for _, key, _ in batch.writes))
        self.written_digest = digest
        self.written.advance(applied)
        self.sync_wanted.set()
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.APPLY_QUEUE.labels(str(self.id)).set(self.queue.qsize())
        metrics.APPLIED_TXNS.inc(len(batch.results))
        if self.listeners:
            flushed = _Flushed(batch.records, batch.results, batch.undecided, applied)
            for queue in list(self.listeners):
                if queue.full():
                    # A stream this far behind reconnects and catches up from
                    # disk rather than holding memory here.
                    self.listeners.discard(queue)
                    queue.get_nowait()
                    queue.put_nowait(None)
                    continue
                queue.put_nowait(flushed)
        if trace.ON:
            for record in batch.records:
                trace.mark(record.entry.request_id, "shard.published")

    async def _sync_loop(self) -> None:
        """fsync behind the applier; ``durable`` is what a power loss keeps.

        fsync point: one synced LevelDB write makes every earlier write in
        its log durable. The applied position that the coordinator truncates
        its log by, and that health waits for, is this one.
        """
        loop = asyncio.get_running_loop()
        while True:
            await self.sync_wanted.wait()
            started = loop.time()
            self.sync_wanted.clear()
            await self._sync_now()
            left = started + SYNC_INTERVAL_S - loop.time()
            if left > 0:
                await asyncio.sleep(left)

    async def _sync_now(self) -> None:
        target, digest = self.written.position, self.written_digest
        if target <= self.durable.position:
            return
        if self.config.sync:
            started = time.perf_counter()
            await asyncio.get_running_loop().run_in_executor(self.disk, self.store.sync)
            metrics.SYNC_SECONDS.observe(time.perf_counter() - started)
        self.durable_digest = digest
        self.durable.advance(target)
        metrics.APPLIED.labels(str(self.id)).set(target)

    def _listen(self) -> asyncio.Queue[_Flushed | None]:
        queue: asyncio.Queue[_Flushed | None] = asyncio.Queue(LISTENER_QUEUE_MAX)
        self.listeners.add(queue)
        return queue

    # ----------------------------------------------------------- retention

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.compact_interval_s)
            try:
                await self.compact_once()
            except grpc.aio.AioRpcError as error:
                log.debug("compaction skipped: a peer did not answer (%s)", error.code().name)

    async def compact_once(self) -> int:
        """Advance the retention horizon as far as policy and peers allow."""
        durable = self.durable.position
        target = durable
        if self.config.retain_positions:
            target = min(target, durable - self.config.retain_positions)
        if self.config.retain_seconds:
            cutoff_ms = int((time.time() - self.config.retain_seconds) * 1000)
            target = min(target, await asyncio.get_running_loop().run_in_executor(
                self.disk, self._newest_before, cutoff_ms))
        # Peers read our state as of positions above their own applied one
        # (ReadAt); keep it for the slowest of them.
        for peer_id, address in enumerate(self.config.peers):
            if peer_id == self.id:
                continue
            neighbour = self.neighbours.get(peer_id)
            if neighbour is not None:
                target = min(target, neighbour.durable.position)
                continue
            async with self.transport.channel(address) as ch:
                reply = await shard_pb2_grpc.ShardServiceStub(ch).ShardStatus(
                    spb.ShardStatusRequest(), timeout=2.0
                )
            target = min(target, reply.applied_position)
        if target <= self.horizon:
            return 0
        digest = await asyncio.get_running_loop().run_in_executor(
            self.disk, self._digest_at, target)
        deleted = await asyncio.get_running_loop().run_in_executor(
            self.disk, self.store.compact, target, digest, self.config.sync
        )
        self.horizon = target
        log.info("shard %d compacted below %d: %d entries dropped", self.id, target, deleted)
        return deleted

    def _newest_before(self, cutoff_ms: int) -> int:
        """The newest position of a record of ours cut before ``cutoff_ms``."""
        newest = self.horizon
        for position, raw in self.store.log_records(self.horizon + 1, self.durable.position):
            if pb.ShardLogRecord.FromString(raw).entry.timestamp_ms > cutoff_ms:
                break
            newest = position
        return newest

    def _digest_at(self, position: int) -> bytes:
        digest = self.store.horizon()[1]
        for _, raw in self.store.log_records(self.horizon + 1, position):
            digest = pb.ShardLogRecord.FromString(raw).digest
        return digest

    # --------------------------------------------------------------- reads

    async def _wait_applied(self, position: int, context: grpc.aio.ServicerContext) -> None:
        if position <= self.applied.position or self.config.inject_bug == "stale-read":
            return
        timeout_s = rpc.wait_budget_s(context, DEFAULT_WAIT_S)
        if not await self.applied.wait(position, timeout_s):
            raise errors.DeadlineExceeded(
                f"shard {self.id} reached position {self.applied.position}, not {position}",
                position=self.applied.position,
            )

    def _read_target(self, min_position: int, at_position: int) -> int:
        """The position a read waits for, once its request is checked."""
        if at_position and min_position > at_position:
            raise errors.InvalidArgument("min_position is above at_position", field="min_position")
        return at_position or min_position

    def _read_at(self, at_position: int) -> int:
        """The position a read is answered at, once its target is applied."""
        if not at_position:
            return self.applied.position
        if at_position < self.horizon:
            raise errors.OutOfRange(
                f"position {at_position} is below shard {self.id}'s retention horizon; "
                f"the oldest position served is {self.horizon}",
                oldest_position=self.horizon,
            )
        return at_position

    async def _read_position(
        self, min_position: int, at_position: int, context: grpc.aio.ServicerContext
    ) -> int:
        """The position a read is answered at, after waiting for it."""
        await self._wait_applied(self._read_target(min_position, at_position), context)
        return self._read_at(at_position)

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
    async def Get(
        self, request: spb.GetRequest, context: grpc.aio.ServicerContext
    ) -> spb.GetResponse:
        self._check_key(request.key)
        await self._wait_applied(
            self._read_target(request.min_position, request.at_position), context
        )
        return self._get(request)

    def _get(self, request: spb.GetRequest) -> spb.GetResponse:
        """Answer a checked Get whose target position is applied."""
        position = self._read_at(request.at_position)
        state = self.store.read_before(request.key, position + 1)
        response = spb.GetResponse(position=position)
        response.item.key = request.key
        if state is not None:
            response.item.version = state.version
            wire.value_to_pb(state.value, response.item.value)
        return response

    async def GetStream(
        self,
        request_iterator: AsyncIterator[spb.GetStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[spb.GetStreamResponse]:
        """Get, multiplexed. A read whose position is applied is answered at
        once; one that must wait is parked on the applied position with a
        timer, without a task of its own."""
        stream = rpc.Multiplexed(spb.TaggedGetReply, spb.GetStreamResponse,
                                 L.STREAM_GETS_INFLIGHT_MAX, "reads")
        loop = asyncio.get_running_loop()
        parked: dict[asyncio.Future[None], asyncio.TimerHandle] = {}

        def answer(tag: int, request: spb.GetRequest) -> None:
            try:
                outcome: spb.GetResponse | errors.OrdoError = self._get(request)
            except errors.OrdoError as error:
                outcome = error
            except Exception as error:  # every read is answered (see Multiplexed)
                log.exception("shard %d: a read failed", self.id)
                outcome = errors.Internal(f"read failed: {type(error).__name__}")
            stream.answer(tag, outcome)

        def start(item: spb.TaggedGet) -> None:
            request = item.request
            self._check_key(request.key)
            target = self._read_target(request.min_position, request.at_position)
            if target <= self.applied.position or self.config.inject_bug == "stale-read":
                answer(item.tag, request)
                return
            timeout_s = rpc.budget_s(item.timeout_ms / 1000 if item.timeout_ms else DEFAULT_WAIT_S)
            future = self.applied.future(target)

            def expire() -> None:
                if future.done():
                    return  # applied in this same loop pass: on_applied answers
                parked.pop(future, None)
                self.applied.drop(future)  # on_applied sees it cancelled
                stream.answer(item.tag, errors.DeadlineExceeded(
                    f"shard {self.id} reached position {self.applied.position}, not {target}",
                    position=self.applied.position,
                ))

            def on_applied(done: asyncio.Future[None]) -> None:
                if done.cancelled():
                    return
                parked.pop(future, None)
                timer.cancel()
                error = done.exception()
                if error is None:
                    answer(item.tag, request)
                else:
                    stream.answer(item.tag, error if isinstance(error, errors.OrdoError)
                                  else errors.Unavailable(f"shard {self.id}: {error}"))

            timer = loop.call_later(timeout_s, expire)
            parked[future] = timer
            future.add_done_callback(on_applied)

        try:
            async for message in stream.serve(request_iterator, lambda m: m.gets, start):
                yield message
        finally:
            for future, timer in list(parked.items()):
                timer.cancel()
                self.applied.drop(future)

    @rpc.unary
    async def Range(
        self, request: spb.RangeRequest, context: grpc.aio.ServicerContext
    ) -> spb.RangeResponse:
        if len(request.prefix) > self.config.limits.key_bytes_max:
            raise errors.InvalidArgument("prefix is over key_bytes_max", field="prefix")
        limit = request.limit or self.config.limits.range_keys_max
        if limit > self.config.limits.range_keys_max:
            raise errors.InvalidArgument("limit is over range_keys_max", field="limit")
        if request.start_key and not request.start_key.startswith(request.prefix):
            raise errors.InvalidArgument("start_key must start with the prefix", field="start_key")
        position = await self._read_position(request.min_position, request.at_position, context)
        items, more = self.store.scan_before(
            request.prefix, position + 1, limit, request.start_key
        )
        response = spb.RangeResponse(more=more, position=position)
        size = 0
        for kv in items:
            size += wire.kv_to_pb(kv, response.items.add()).ByteSize()
            if size >= L.STREAM_MESSAGE_BYTES_MAX and len(response.items) < len(items):
                response.more = True  # the client asks again from the last key
                break
        return response

    @rpc.unary
    async def History(
        self, request: spb.HistoryRequest, context: grpc.aio.ServicerContext
    ) -> spb.HistoryResponse:
        self._check_key(request.key)
        limit = request.limit or self.config.limits.range_keys_max
        if limit > self.config.limits.range_keys_max:
            raise errors.InvalidArgument("limit is over range_keys_max", field="limit")
        if request.from_position and request.from_position < self.horizon:
            raise errors.OutOfRange(
                f"history below shard {self.id}'s retention horizon; the oldest position "
                f"served is {self.horizon}",
                oldest_position=self.horizon,
            )
        if request.min_position > self.written.position:
            timeout_s = rpc.wait_budget_s(context, DEFAULT_WAIT_S)
            if not await self.written.wait(request.min_position, timeout_s):
                raise errors.DeadlineExceeded(
                    f"shard {self.id} has not applied position {request.min_position}",
                    position=self.written.position,
                )
        versions, more = self.store.versions(request.key, request.from_position, limit)
        response = spb.HistoryResponse(more=more, oldest_position=self.horizon)
        for position, value in versions:
            item = response.versions.add(key=request.key, version=position)
            if value is not None:
                wire.value_to_pb(value, item.value)
        return response

    def inputs_before(self, position: int, keys: list[bytes]) -> asyncio.Future[Inputs]:
        """The state of ``keys`` (own keys) just before ``position``, once it is
        final here: for a neighbour shard in this process, by the rule ReadAt
        answers peers with."""
        loop = asyncio.get_running_loop()
        out: asyncio.Future[Inputs] = loop.create_future()

        def read(applied: asyncio.Future[None] | None = None) -> None:
            if applied is not None and applied.cancelled():
                return
            if not out.done():
                out.set_result({key: self.store.read_before(key, position) for key in keys})

        def when_received(_: object = None) -> None:
            newest = self.writers.newest_before(keys, position)
            if newest <= self.applied.position:
                read()
            else:
                self.applied.future(newest).add_done_callback(read)

        if self.received < position - 1:
            self.received_watch.future(position - 1).add_done_callback(when_received)
        else:
            when_received()
        return out

    async def ReadAt(
        self,
        request_iterator: AsyncIterator[spb.ReadAtRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[spb.ReadAtResponse]:
        """Answer each read as soon as the state of its keys before its
        position is final here: once every earlier transaction of this shard
        that may write them is applied (see PendingWriters). Answers ready
        together go out in one message."""
        answers: list[spb.ReadAtAnswer] = []
        ready = asyncio.Event()
        parked: set[asyncio.Future[None]] = set()
        reading_done = False
        failure: list[tuple[grpc.StatusCode, str]] = []
        raised: list[BaseException] = []

        def answer(position: int, keys: list[bytes]) -> None:
            out = spb.ReadAtAnswer(position=position)
            for key in keys:
                state: Versioned | None = self.store.read_before(key, position)
                item = out.items.add(key=key)
                if state is not None:
                    item.version = state.version
                    wire.value_to_pb(state.value, item.value)
            answers.append(out)
            ready.set()

        unpark = asyncio.Event()

        def unparked(future: asyncio.Future[None], position: int, keys: list[bytes]) -> None:
            parked.discard(future)
            unpark.set()
            if not future.cancelled():
                answer(position, keys)

        async def read() -> None:
            nonlocal reading_done
            key_bytes_max = self.config.limits.key_bytes_max
            try:
                async for request in request_iterator:
                    if len(request.reads) > L.READ_AT_READS_PER_MESSAGE_MAX:
                        failure.append((grpc.StatusCode.INVALID_ARGUMENT,
                                        "ReadAt message over READ_AT_READS_PER_MESSAGE_MAX"))
                        return
                    for query in request.reads:
                        keys = list(query.keys)
                        if len(keys) > L.READ_AT_KEYS_MAX or any(
                            len(k) > key_bytes_max for k in keys
                        ):
                            failure.append((grpc.StatusCode.INVALID_ARGUMENT,
                                            "ReadAt keys over their limits"))
                            return
                        position = query.position
                        # Which transactions before the position write these
                        # keys is known once the log up to it is received.
                        # No bound on the wait by design: the lowest
                        # position in the cluster always progresses.
                        if self.received < position - 1:
                            await self.received_watch.wait(position - 1, None)
                        newest = self.writers.newest_before(keys, position)
                        if newest <= self.applied.position:
                            answer(position, keys)
                            continue
                        while len(parked) >= L.READ_AT_INFLIGHT_MAX:
                            # Stop reading: gRPC's flow control slows the peer.
                            unpark.clear()
                            await unpark.wait()
                        future = self.applied.future(newest)
                        parked.add(future)
                        future.add_done_callback(
                            lambda f, p=position, k=keys: unparked(f, p, k)
                        )
            except Exception as error:  # a request that does not parse, say
                raised.append(error)
            finally:
                reading_done = True
                ready.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                await ready.wait()
                ready.clear()
                while answers:
                    message = spb.ReadAtResponse()
                    size = 0
                    taken = 0
                    for out in answers:
                        if taken and size >= L.STREAM_MESSAGE_BYTES_MAX:
                            break
                        size += out.ByteSize()
                        taken += 1
                    message.answers.extend(answers[:taken])
                    del answers[:taken]
                    yield message
                if raised:
                    raise raised[0]
                if failure:
                    await context.abort(*failure[0])
                if reading_done and not parked and not answers:
                    return
        finally:
            reader.cancel()
            for future in list(parked):
                self.applied.drop(future)

    @rpc.server_stream
    async def StreamResults(
        self, request: spb.StreamResultsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[spb.StreamResultsResponse]:
        start = max(1, request.from_position)
        if start <= self.horizon:
            raise errors.OutOfRange(
                f"results below {self.horizon + 1} are no longer kept",
                oldest_position=self.horizon + 1,
            )
        queue = self._listen()
        try:
            upto = self.written.position
            message = spb.StreamResultsResponse(applied_position=self.durable.position)
            size = 0
            for _, raw in self.store.log_records(start, upto):
                record = pb.ShardLogRecord.FromString(raw)
                raw_result = self.store.result(record.entry.position)
                assert raw_result is not None, "a record and its result are written together"
                result = message.results.add()
                result.MergeFromString(raw_result)
                if request.include_writes:
                    result.writes.extend(record.writes)
                size += result.ByteSize()
                if (len(message.results) >= L.LOG_STREAM_BATCH_ENTRIES_MAX
                        or size >= L.STREAM_MESSAGE_BYTES_MAX):
                    yield message
                    message = spb.StreamResultsResponse(applied_position=self.durable.position)
                    size = 0
            yield message
            quiet: spb.StreamResultsResponse | None = None  # progress not sent yet
            quiet_since = 0.0
            while True:
                if quiet is None:
                    flushed = await queue.get()
                else:
                    try:
                        flushed = await asyncio.wait_for(
                            queue.get(), quiet_since + PROGRESS_INTERVAL_S - time.monotonic()
                        )
                    except TimeoutError:
                        quiet.applied_position = self.durable.position
                        yield quiet
                        quiet = None
                        continue
                if flushed is None:
                    raise errors.ResourceExhausted("results stream fell behind; resume it")
                if flushed.applied <= upto:
                    continue
                # applied_position is the durable one: the coordinator
                # truncates its log by it.
                message = spb.StreamResultsResponse(applied_position=self.durable.position)
                size = 0
                if request.include_writes:
                    for result, record in zip(flushed.results, flushed.records, strict=True):
                        copy = message.results.add()
                        copy.CopyFrom(result)
                        copy.writes.extend(record.writes)
                        size += copy.ByteSize()
                        if size >= L.STREAM_MESSAGE_BYTES_MAX:
                            yield message
                            message = spb.StreamResultsResponse(
                                applied_position=self.durable.position
                            )
                            size = 0
                else:
                    results = flushed.undecided if request.undecided_only else flushed.results
                    start = 0
                    for end, result in enumerate(results, start=1):
                        size += result.ByteSize()
                        if size >= L.STREAM_MESSAGE_BYTES_MAX:
                            message.results.extend(results[start:end])
                            yield message
                            message = spb.StreamResultsResponse(
                                applied_position=self.durable.position
                            )
                            size, start = 0, end
                    message.results.extend(results[start:])
                upto = flushed.applied
                if request.undecided_only and not message.results:
                    # Progress alone: at most one message per interval.
                    if quiet is None:
                        quiet_since = time.monotonic()
                    quiet = message
                    if time.monotonic() - quiet_since < PROGRESS_INTERVAL_S:
                        continue
                quiet = None
                yield message
        finally:
            self.listeners.discard(queue)

    @rpc.server_stream
    async def Watch(
        self, request: spb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[spb.WatchResponse]:
        target = request.WhichOneof("target")
        if target is None:
            raise errors.InvalidArgument("watch a key or a prefix", field="target")
        pattern = request.key if target == "key" else request.prefix
        if target == "key":
            self._check_key(pattern)
        elif len(pattern) > self.config.limits.key_bytes_max:
            raise errors.InvalidArgument("prefix is over key_bytes_max", field="prefix")

        def matches(key: bytes) -> bool:
            return key == pattern if target == "key" else key.startswith(pattern)

        start = max(1, request.from_position)
        if start <= self.horizon:
            raise errors.OutOfRange(
                f"shard {self.id} keeps changes from position {self.horizon + 1} on; "
                f"watch from there or later",
                oldest_position=self.horizon + 1,
            )
        queue = self._listen()
        try:
            upto = self.written.position
            message = spb.WatchResponse()
            size = 0
            for position, raw in self.store.log_records(start, upto):
                record = pb.ShardLogRecord.FromString(raw)
                size += _events(record, matches, message)
                if (len(message.events) >= WATCH_EVENTS_PER_MESSAGE_MAX
                        or size >= L.STREAM_MESSAGE_BYTES_MAX):
                    message.progress = position
                    yield message
                    message = spb.WatchResponse()
                    size = 0
            message.progress = max(upto, start - 1)
            yield message
            while True:
                flushed = await queue.get()
                if flushed is None:
                    raise errors.ResourceExhausted("watch fell behind; resume it")
                if flushed.applied <= upto:
                    continue
                message = spb.WatchResponse()
                size = 0
                for record in flushed.records:
                    if record.entry.position > upto:
                        size += _events(record, matches, message)
                        if size >= L.STREAM_MESSAGE_BYTES_MAX:
                            message.progress = record.entry.position
                            yield message
                            message = spb.WatchResponse()
                            size = 0
                message.progress = flushed.applied
                upto = flushed.applied
                yield message
        finally:
            self.listeners.discard(queue)

    @rpc.unary
    async def GetShardResult(
        self, request: spb.GetShardResultRequest, context: grpc.aio.ServicerContext
    ) -> spb.GetShardResultResponse:
        position = request.position
        if position > self.written.position:
            timeout_s = rpc.wait_budget_s(context, DEFAULT_WAIT_S)
            if not await self.written.wait(position, timeout_s):
                raise errors.DeadlineExceeded(
                    f"shard {self.id} has not applied position {position} yet",
                    position=self.written.position,
                )
        if position <= self.horizon:
            raise errors.OutOfRange(
                f"the result of position {position} is below the retention horizon",
                oldest_position=self.horizon + 1,
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
            oldest_position=self.horizon,
        )


@dataclass(slots=True)
class _Batch:
    """Applied entries not yet written: one LevelDB write batch."""

    writes: list[tuple[int, bytes, V.Value | None]] = field(default_factory=list)
    records: list[pb.ShardLogRecord] = field(default_factory=list)
    results: list[pb.ShardResult] = field(default_factory=list)
    undecided: list[pb.ShardResult] = field(default_factory=list)
    shard_map: bytes | None = None
    count: int = 0
    started: float = 0.0  # loop time of its first entry


def _events(record: pb.ShardLogRecord, matches: object, out: spb.WatchResponse) -> int:
    """Add the record's matching writes to ``out``; returns the bytes added."""
    added = 0
    for write in record.writes:
        if matches(write.key):  # type: ignore[operator]
            event = out.events.add(
                position=record.entry.position, key=write.key,
                request_id=record.entry.request_id,
            )
            if write.HasField("value"):
                event.value.CopyFrom(write.value)
            added += event.ByteSize()
    return added


def shard_result(shard: int, applied: Applied) -> pb.ShardResult:
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


class ShardGroup:
    """Several shards in one process, as a broker hosts several partitions.

    Each keeps its own log position, LevelDB, server and address; only the
    reads of multi-shard inputs between them skip gRPC (see LocalPeer). They
    share one event loop, so they fail and restart together.
    """

    def __init__(self, configs: Sequence[ShardConfig]) -> None:
        self.shards = [Shard(config) for config in configs]
        for shard in self.shards:
            shard.neighbours = {other.id: other for other in self.shards if other is not shard}

    async def start(self) -> None:
        for shard in self.shards:
            await shard.start()

    async def stop(self) -> None:
        # First let every shard receive what the furthest one has, so that
        # none drains entries that wait on inputs a neighbour never gets.
        target = max(shard.received for shard in self.shards)
        try:
            await asyncio.wait_for(asyncio.gather(
                *(shard.received_watch.wait(target, None) for shard in self.shards)
            ), DRAIN_TIMEOUT_S / 2)
        except TimeoutError:
            log.warning("hosted shards stop without having received up to %d", target)
        # Together: a draining shard may still need its neighbours' inputs.
        await asyncio.gather(*(shard.stop() for shard in self.shards))
