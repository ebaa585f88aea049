"""The coordinator: validates, sequences and answers transactions.

For each submitted transaction, in this order:

1. validate it at the edge (limits, types, routing) and deduplicate its
   request id: one already logged or in flight is never logged again;
2. add it to the open batch; the sequencer loop cuts a batch at
   ``batch_txns_max`` transactions or ``batch_delay_ms`` after its first one,
   assigns consecutive positions and appends it to the sequencer log as one
   synced write (group commit);
3. once the write returns, the batch is durable: positions are handed back,
   and the ReadLog streams send it to the shards;
4. every participant shard streams back its part of the result; when all
   parts are in, the client gets the assembled result. Past the client's
   deadline it gets DEADLINE_EXCEEDED carrying the position instead: the log
   has decided the outcome, which can be fetched later.

A transaction whose result the log alone decides (no compares, only puts
and deletes: :func:`ordo.core.txn.decided_by_log`) is answered at step 3:
applying it cannot fail and returns no values, so waiting for the shards
would only add latency. Reads stay linearizable: a read waits until its
shard has applied the log tail (or the position the caller passes).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import concurrent.futures
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from coordinator.seqlog import LevelDBSequencerLog, SequencerLog
from ordo import bus, errors, metrics, rpc, serve, trace, wire
from ordo.core import limits as L
from ordo.core.partition import PARTITIONER, ShardMap
from ordo.core.txn import Txn, TxnResult, decided_by_log
from ordo.linklog import LinkLog
from ordo.security import TLSConfig
from ordo.v1 import coordinator_pb2 as cpb
from ordo.v1 import coordinator_pb2_grpc, shard_pb2_grpc
from ordo.v1 import shard_pb2 as spb
from ordo.v1 import types_pb2 as pb
from ordo.waiters import PositionWatch

log = logging.getLogger("ordo.coordinator")

DEFAULT_WAIT_S = 30.0
# Answer a little before the caller's deadline, so the answer (with the
# position) arrives instead of a bare DEADLINE_EXCEEDED from gRPC.
DEADLINE_MARGIN_S = 0.05
RECENT_BATCHES_MAX = 256  # batches kept in memory for live log readers
APPENDS_INFLIGHT_MAX = 2  # batches cut and being written at once


@dataclass(slots=True)
class CoordinatorConfig:
    listen: str
    data_dir: str
    shards: list[str]
    batch_txns_max: int = L.BATCH_TXNS_MAX
    batch_delay_ms: float = L.BATCH_DELAY_MS
    limits: L.Limits = field(default_factory=L.Limits)
    # Retention of the sequencer log (and so of request-id deduplication):
    # at least this many positions and seconds; never above the lowest
    # position every shard has applied. 0 disables that bound.
    retain_positions: int = 1_000_000
    retain_seconds: float = 24 * 3600.0
    compact_interval_s: float = 10.0
    # Admission slows (RESOURCE_EXHAUSTED) while a reachable shard lags the
    # tail by more than this many positions. A shard that is down does not
    # stop sequencing: its work waits in the log.
    shard_lag_max: int = L.SHARD_LAG_MAX
    # Security: as for a shard (see ShardConfig).
    tls: TLSConfig | None = None
    tokens: dict[str, str] | None = None
    token: str | None = None
    insecure_listen_any: bool = False
    # Non-zero: serve the bus (internal and client streams) at the port plus
    # this offset, and report it to clients in ClusterInfo.
    bus_port_offset: int = 0
    # A deliberate bug, for proving that the fault runner's checkers bite:
    # "ack-before-fsync" hands out positions before the batch is written
    # and writes it 300 ms later, so a kill in between loses acknowledged
    # transactions.
    inject_bug: str = ""


@dataclass(slots=True)
class _Submit:
    request_id: str
    txn_pb: pb.Txn
    txn: Txn
    size: int
    wants_result: bool
    position: asyncio.Future[int]


@dataclass(slots=True)
class _Pending:
    request_id: str
    participants: list[int]
    parts: dict[int, pb.ShardResult] = field(default_factory=dict)
    future: asyncio.Future[TxnResult] | None = None
    waiters: int = 0


class Coordinator(
    coordinator_pb2_grpc.CoordinatorServiceServicer, coordinator_pb2_grpc.SequencerServiceServicer
):
    def __init__(self, config: CoordinatorConfig, seqlog: SequencerLog | None = None) -> None:
        assert config.shards, "a cluster has at least one shard"
        assert 1 <= config.batch_txns_max <= L.SUBMIT_QUEUE_MAX
        self.config = config
        self.limits = config.limits
        self.seqlog: SequencerLog = seqlog or LevelDBSequencerLog(config.data_dir)
        self.shard_map = ShardMap(len(config.shards))
        self.tail = PositionWatch(self.seqlog.tail())
        self.queue: collections.deque[_Submit] = collections.deque()
        self.work = asyncio.Event()
        self.inflight: dict[str, _Submit] = {}
        self.pending: dict[int, _Pending] = {}
        # Live readers take batches from here instead of LevelDB: the first
        # position, the batch, and the batch as a serialized ReadLogResponse
        # (serialized once, sent to every reader).
        self.recent: collections.deque[tuple[int, pb.LogBatch, bytes]] = collections.deque(
            maxlen=RECENT_BATCHES_MAX
        )
        self.transport = rpc.Transport(config.tls, config.token, config.bus_port_offset)
        self.channels = [self.transport.channel(address) for address in config.shards]
        self.shard_stubs = [shard_pb2_grpc.ShardServiceStub(ch) for ch in self.channels]
        self.server = rpc.Server(
            config.listen, ["ordo.v1.CoordinatorService", "ordo.v1.SequencerService"],
            config.tls, config.tokens, config.insecure_listen_any,
        )
        coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(self, self.server.server)
        coordinator_pb2_grpc.add_SequencerServiceServicer_to_server(self, self.server.server)
        self.bus: bus.Server | None = None
        if config.bus_port_offset:
            self.bus = bus.Server(
                bus.address(config.listen, config.bus_port_offset),
                {"/ordo.v1.SequencerService/ReadLog":
                    bus.Method(cpb.ReadLogRequest.FromString, self.ReadLog),
                 "/ordo.v1.CoordinatorService/SubmitStream":
                    bus.Method(cpb.SubmitStreamRequest.FromString, self.SubmitStream,
                               client_streams=True)},
                config.tls, config.tokens, config.insecure_listen_any,
            )
        self.tasks: list[asyncio.Task[None]] = []
        self.background: set[asyncio.Future[None]] = set()
        self.sequenced = self.tail.position  # the last position handed to a batch
        # The one thread that appends to the sequencer log.
        self.writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="seqlog")
        self.closing = False
        # Durable applied position of each shard, from its results stream;
        # None while the stream is down.
        self.shard_applied: list[int | None] = [None] * self.shard_map.shard_count
        self.lowest_applied = [0] * self.shard_map.shard_count  # survives stream drops

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._init_shard_map()
        self.sequenced = self.tail.position
        await self.server.start()
        if self.bus is not None:
            await self.bus.start()
        self.tasks.append(serve.critical_task(self._sequence_loop(), "sequencer"))
        start = self.tail.position + 1
        for shard in range(self.shard_map.shard_count):
            self.tasks.append(
                serve.critical_task(self._collect_results(shard, start), f"results-{shard}")
            )
        self.tasks.append(serve.critical_task(self._compact_loop(), "compact"))
        await self.server.set_serving(True)
        log.info("coordinator serving on %s, tail %d, %d shards", self.config.listen,
                 self.tail.position, self.shard_map.shard_count)

    async def _init_shard_map(self) -> None:
        if self.seqlog.tail() == 0:
            entry = pb.LogEntry(position=1)
            entry.shard_map.shard_count = self.shard_map.shard_count
            entry.shard_map.partitioner = PARTITIONER
            await asyncio.to_thread(self.seqlog.append, pb.LogBatch(entries=[entry]))
            self.tail.advance(1)
            return
        first = self.seqlog.read(1, 1)
        if first and first[0].HasField("shard_map"):
            logged = first[0].shard_map.shard_count
            if logged != self.shard_map.shard_count:
                raise SystemExit(
                    f"the log's shard map has {logged} shards, but {self.shard_map.shard_count} "
                    "shard addresses are configured"
                )

    async def stop(self) -> None:
        """Drain: stop accepting, let the open batch be written, then close."""
        self.closing = True
        await self.server.set_serving(False)
        deadline = time.monotonic() + 5.0
        while (self.queue or self.inflight) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.server.stop(1.0)
        if self.bus is not None:
            await self.bus.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for ch in self.channels:
            await ch.close()
        self.writer.shutdown(wait=True)
        self.seqlog.close()

    # ----------------------------------------------------------- sequencing

    async def _sequence_loop(self) -> None:
        delay_s = self.config.batch_delay_ms / 1000
        txns_max = self.config.batch_txns_max
        appending: collections.deque[asyncio.Task[None]] = collections.deque()
        while True:
            while not self.queue:
                self.work.clear()
                await self.work.wait()
            if len(self.queue) < txns_max and delay_s > 0:
                # Linger so the batch fills; a full batch goes at once.
                deadline = time.monotonic() + delay_s
                while len(self.queue) < txns_max:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.work.clear()
                    try:
                        await asyncio.wait_for(self.work.wait(), left)
                    except TimeoutError:
                        break
            # Appends are pipelined: the next batch is cut and handed to the
            # writer while the one before it is still being synced, so the
            # sequencer does not idle through each fsync and its return to
            # this loop. The writer is one thread: batches reach the log in
            # order, and each is acknowledged only after its own synced write.
            while appending and (appending[0].done() or len(appending) >= APPENDS_INFLIGHT_MAX):
                await appending.popleft()
            previous = appending[-1] if appending else None
            batch, taken = self._cut_batch(txns_max)
            appending.append(
                serve.critical_task(self._append(batch, taken, previous), "append")
            )

    def _cut_batch(self, txns_max: int) -> tuple[pb.LogBatch, list[_Submit]]:
        """Take the next batch off the queue and give it its positions."""
        taken: list[_Submit] = []
        batch = pb.LogBatch()
        position = self.sequenced
        size = 0
        # Time enters the system here, recorded in the log; see LogEntry.
        now_ms = int(time.time() * 1000)
        while self.queue and len(taken) < txns_max:
            submit = self.queue[0]
            if taken and size + submit.size > L.BATCH_BYTES_MAX:
                break
            self.queue.popleft()
            if trace.ON:
                trace.mark(submit.request_id, "coord.batched")
            size += submit.size
            position += 1
            participants = self.shard_map.participants(submit.txn)
            batch.entries.add(
                position=position, request_id=submit.request_id, timestamp_ms=now_ms,
                participants=participants, txn=submit.txn_pb,
            )
            taken.append(submit)
            if submit.wants_result and not decided_by_log(submit.txn):
                self.pending[position] = _Pending(
                    submit.request_id,
                    participants,
                    future=asyncio.get_running_loop().create_future(),
                )
        self.sequenced = position
        return batch, taken

    async def _append(
        self, batch: pb.LogBatch, taken: list[_Submit], previous: asyncio.Task[None] | None
    ) -> None:
        """Make ``batch`` durable, then hand out its positions."""
        position = batch.entries[-1].position
        if self.config.inject_bug == "ack-before-fsync":
            for i, submit in enumerate(taken):
                if not submit.position.done():
                    submit.position.set_result(batch.entries[i].position)
            await asyncio.sleep(0.3)
        metrics.BATCH_TXNS.observe(len(taken))
        metrics.SUBMITTED.inc(len(taken))
        metrics.SUBMIT_QUEUE.set(len(self.queue))
        started = time.perf_counter()
        raw = batch.SerializeToString()
        try:
            # The write batch is built here; the writer thread only calls
            # into LevelDB, which releases the GIL while it writes and syncs.
            commit = self.seqlog.prepare(batch, raw)
            await asyncio.get_running_loop().run_in_executor(self.writer, commit)
            if previous is not None:
                await previous  # hand positions out and advance the tail in log order
        except Exception as error:  # the log is unusable: fail loudly, lose nothing silently
            log.exception("sequencer log append failed")
            for submit in taken:
                self.inflight.pop(submit.request_id, None)
                if not submit.position.done():
                    submit.position.set_exception(
                        errors.Unavailable(f"sequencer log append failed: {error}")
                    )
            raise
        metrics.LOG_APPEND_SECONDS.observe(time.perf_counter() - started)
        metrics.TAIL.set(position)
        first = batch.entries[0].position
        self.recent.append((first, batch, wire.length_delimited(1, raw)))
        for entry, submit in zip(batch.entries, taken, strict=True):
            self.inflight.pop(submit.request_id, None)
            if not submit.position.done():
                submit.position.set_result(entry.position)
        self.tail.advance(position)

    # -------------------------------------------------------------- results

    async def _collect_results(self, shard: int, start: int) -> None:
        next_position = start
        backoff_s = 0.05
        link = LinkLog(log, f"results stream from shard {shard}")
        while True:
            stream: Any = None
            try:
                request = spb.StreamResultsRequest(
                    from_position=next_position, undecided_only=True
                )
                stream = await self._results_stream(shard, request)
                async for message in stream:
                    backoff_s = 0.05
                    link.up()
                    for result in message.results:
                        self._deliver(shard, result)
                        next_position = max(next_position, result.position + 1)
                    next_position = max(next_position, message.applied_position + 1)
                    self.shard_applied[shard] = message.applied_position
                    metrics.SHARD_LAG.labels(str(shard)).set(
                        max(0, self.tail.position - message.applied_position)
                    )
                    self.lowest_applied[shard] = max(
                        self.lowest_applied[shard], message.applied_position
                    )
            except (grpc.aio.AioRpcError, errors.OrdoError) as error:
                if isinstance(error, grpc.aio.AioRpcError):
                    code, details = error.code(), error.details()
                else:
                    code, details = error.code, error.message
                link.broke(f"{code.name}: {details}")
                if code == grpc.StatusCode.OUT_OF_RANGE:
                    # Older results are gone; pending waiters fall back to
                    # GetShardResult, which says so.
                    next_position = max(next_position, self.tail.position + 1)
            finally:
                if stream is not None:
                    stream.cancel()
            self.shard_applied[shard] = None
            await asyncio.sleep(backoff_s)
            backoff_s = min(1.0, backoff_s * 2)

    async def _results_stream(self, shard: int, request: spb.StreamResultsRequest) -> Any:
        """A shard's StreamResults: on the bus when the cluster runs one."""
        if self.transport.bus_port_offset:
            return await bus.open_stream(
                self.transport, self.config.shards[shard], "/ordo.v1.ShardService/StreamResults",
                spb.StreamResultsResponse.FromString, request,
            )
        return self.shard_stubs[shard].StreamResults(request)

    def _deliver(self, shard: int, result: pb.ShardResult) -> None:
        pending = self.pending.get(result.position)
        if pending is None:
            return
        pending.parts[shard] = result
        if len(pending.parts) == len(pending.participants):
            del self.pending[result.position]
            if trace.ON:
                trace.mark(pending.request_id, "coord.results")
            parts = [pending.parts[s] for s in pending.participants]
            assert pending.future is not None
            if pending.future.done():
                return
            try:
                merged = wire.merge_shard_results(result.position, pending.request_id, parts)
            except AssertionError as error:
                log.error("DETERMINISM VIOLATION: %s", error)
                pending.future.set_exception(errors.Internal(str(error)))
                return
            pending.future.set_result(merged)
            metrics.COMMITTED.inc()
            if merged.abort is not None:
                metrics.ABORTED.labels(merged.abort.reason.name.lower()).inc()

    async def _result_for(self, position: int, timeout_s: float) -> TxnResult:
        pending = self.pending.get(position)
        if pending is not None and pending.future is not None:
            pending.waiters += 1
            try:
                return await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
            except TimeoutError:
                raise errors.DeadlineExceeded(
                    f"transaction logged at position {position} but not yet applied by every "
                    "shard; fetch its result later",
                    position=position,
                ) from None
            finally:
                pending.waiters -= 1
                if pending.waiters == 0 and not pending.future.done():
                    # Nobody waits any more: stop holding it in memory. A
                    # later lookup reads the shards' stored results.
                    self.pending.pop(position, None)
        return await self._fetch_result(position, timeout_s)

    async def _fetch_result(self, position: int, timeout_s: float) -> TxnResult:
        self._check_retained(position)
        entries = await asyncio.to_thread(self.seqlog.read, position, 1)
        if not entries or entries[0].position != position:
            raise errors.NotFound(f"no log entry at position {position}")
        entry = entries[0]
        if not entry.HasField("txn"):
            raise errors.NotFound(f"position {position} holds no transaction")
        txn = wire.txn_from_pb_trusted(entry.txn)
        if decided_by_log(txn):
            return TxnResult(position, entry.request_id, True, None)
        participants = self.shard_map.participants(txn)
        calls = [
            self.shard_stubs[s].GetShardResult(
                spb.GetShardResultRequest(position=position), timeout=max(timeout_s, 0.001),
                wait_for_ready=True,
            )
            for s in participants
        ]
        try:
            responses = await asyncio.gather(*calls)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise errors.DeadlineExceeded(
                    f"transaction logged at position {position}; its outcome is not available "
                    "yet",
                    position=position,
                ) from None
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                raise errors.Unavailable(
                    f"a shard holding the outcome of position {position} is unavailable",
                    position=position,
                ) from None
            raise errors.from_rpc_error(error) from None
        parts = [r.result for r in responses]
        return wire.merge_shard_results(position, entry.request_id, parts)

    # ---------------------------------------------------------------- RPCs

    @rpc.unary
    async def Submit(
        self, request: cpb.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> cpb.SubmitResponse:
        timeout_s = rpc.deadline_s(context, DEFAULT_WAIT_S) - DEADLINE_MARGIN_S
        return await self._submit(request, timeout_s)

    async def SubmitStream(
        self,
        request_iterator: AsyncIterator[cpb.SubmitStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[cpb.SubmitStreamResponse]:
        stream = rpc.Multiplexed(cpb.TaggedReply, cpb.SubmitStreamResponse,
                                 L.STREAM_SUBMITS_INFLIGHT_MAX, "submits")
        inflight: set[asyncio.Task[None]] = set()

        async def one(item: cpb.TaggedSubmit, timeout_s: float) -> None:
            # Every submit is answered, whatever fails: an unanswered one
            # would hold its slot and keep the stream open for good.
            try:
                outcome: cpb.SubmitResponse | errors.OrdoError = await self._submit_again(
                    item.request, timeout_s
                )
            except errors.OrdoError as error:
                outcome = error
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the stream is ending: nobody to answer
                outcome = errors.Unavailable("the submit's wait was cancelled; retry it")
            except Exception as error:
                log.exception("submit %s failed", item.request.request_id[:64])
                outcome = errors.Internal(f"submit failed: {type(error).__name__}")
            stream.answer(item.tag, outcome)

        def start(item: cpb.TaggedSubmit) -> None:
            if trace.ON and trace.sampled(item.request.request_id):
                stream.traced[item.tag] = item.request.request_id
            timeout_s = (
                item.timeout_ms / 1000 if item.timeout_ms else DEFAULT_WAIT_S
            ) - DEADLINE_MARGIN_S
            if self._submit_fast(
                item.request, timeout_s, lambda outcome, tag=item.tag: stream.answer(tag, outcome)
            ):
                return
            # A request id seen before: the slow path finds its outcome.
            task = asyncio.create_task(one(item, timeout_s))
            inflight.add(task)
            task.add_done_callback(inflight.discard)

        try:
            async for message in stream.serve(request_iterator, lambda m: m.submits, start):
                yield message
        finally:
            for task in list(inflight):
                task.cancel()

    def _check(self, request: cpb.SubmitRequest) -> tuple[Txn, bool, str]:
        """Edge checks of a submit: its transaction, whether it waits for the
        result, and its request id."""
        if self.closing:
            raise errors.Unavailable("coordinator is shutting down")
        txn = wire.validate_txn(request.txn, self.limits, self.shard_map)
        if request.wait not in _WAIT_MODES:
            raise errors.InvalidArgument(f"unknown wait mode {request.wait}", field="wait")
        wants_result = request.wait != cpb.WAIT_FOR_LOGGED
        request_id = request.request_id or uuid.uuid4().hex
        if len(request_id.encode()) > self.limits.request_id_bytes_max:
            raise errors.InvalidArgument("request id is too long", field="request_id")
        return txn, wants_result, request_id

    def _submit_fast(
        self,
        request: cpb.SubmitRequest,
        timeout_s: float,
        answer: Callable[[cpb.SubmitResponse | errors.OrdoError], None],
    ) -> bool:
        """Sequence a new transaction without a task of its own: ``answer`` is
        called once with the response or the error. False, and nothing
        done, when its request id was seen before (see :meth:`_submit_again`).
        Edge errors are raised."""
        txn, wants_result, request_id = self._check(request)
        if request_id in self.inflight or self.seqlog.position_of(request_id) is not None:
            return False
        self._admit()
        loop = asyncio.get_running_loop()
        started = loop.time()
        submit = self._queue(request_id, request.txn, txn, wants_result)
        if trace.ON:
            trace.mark(request_id, "coord.received")
        decided = decided_by_log(txn)

        def on_position(future: asyncio.Future[int]) -> None:
            failure = _failure(future, None)
            if failure is not None:
                answer(failure)
                return
            position = future.result()
            if trace.ON:
                trace.mark(request_id, "coord.durable")
            response = cpb.SubmitResponse(position=position)
            try:
                if decided and wants_result:
                    _decided_result(response.result, position, request_id)
                    metrics.COMMIT_SECONDS.observe(loop.time() - started)
                elif wants_result:
                    self._answer_when_applied(
                        position, response, timeout_s - (loop.time() - started), answer, started
                    )
                    return
            except Exception as error:  # never leave a submit unanswered
                answer(errors.Internal(str(error), position=position))
                return
            answer(response)

        submit.position.add_done_callback(on_position)
        return True

    def _answer_when_applied(
        self,
        position: int,
        response: cpb.SubmitResponse,
        timeout_s: float,
        answer: Callable[[cpb.SubmitResponse | errors.OrdoError], None],
        started: float,
    ) -> None:
        """Answer with the result of ``position`` once every participant has
        reported it, or with DEADLINE_EXCEEDED (and the position) past
        ``timeout_s``. ``started``: when the submit arrived (loop time)."""
        pending = self.pending.get(position)
        if pending is None or pending.future is None:
            # Not held in memory (nobody waited for it): read it back.
            async def fetch() -> None:
                try:
                    result = await self._result_for(position, timeout_s)
                    wire.result_to_pb(result, response.result)
                except errors.OrdoError as error:
                    answer(error)
                    return
                except asyncio.CancelledError:
                    answer(errors.Unavailable("coordinator is shutting down", position=position))
                    raise
                except Exception as error:  # a determinism violation, say: still answer
                    answer(errors.Internal(str(error)))
                    return
                answer(response)

            task = asyncio.ensure_future(fetch())
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            return
        future = pending.future
        pending.waiters += 1
        loop = asyncio.get_running_loop()

        answered = False  # exactly one of on_result and on_timeout answers

        def settle() -> bool:
            nonlocal answered
            if answered:
                return False
            answered = True
            pending.waiters -= 1
            if pending.waiters == 0 and not future.done():
                self.pending.pop(position, None)
            return True

        def on_result(done: asyncio.Future[TxnResult]) -> None:
            timer.cancel()
            if not settle():
                return
            failure = _failure(done, position)
            if failure is None:
                try:
                    wire.result_to_pb(done.result(), response.result)
                except Exception as error:
                    failure = errors.Internal(str(error))
            if failure is not None:
                answer(failure)
                return
            metrics.COMMIT_SECONDS.observe(loop.time() - started)
            answer(response)

        def on_timeout() -> None:
            if future.done():
                return  # its result is in; on_result (already scheduled) answers
            future.remove_done_callback(on_result)
            if not settle():
                return
            answer(errors.DeadlineExceeded(
                f"transaction logged at position {position} but not yet applied by every "
                "shard; fetch its result later",
                position=position,
            ))

        timer = loop.call_later(max(0.0, timeout_s), on_timeout)
        future.add_done_callback(on_result)

    async def _submit(self, request: cpb.SubmitRequest, timeout_s: float) -> cpb.SubmitResponse:
        """One submit awaited on its own (the unary RPC)."""
        answered: asyncio.Future[cpb.SubmitResponse | errors.OrdoError] = (
            asyncio.get_running_loop().create_future()
        )

        def answer(outcome: cpb.SubmitResponse | errors.OrdoError) -> None:
            if not answered.done():  # the caller may have gone away
                answered.set_result(outcome)

        if not self._submit_fast(request, timeout_s, answer):
            return await self._submit_again(request, timeout_s)
        outcome = await answered
        if isinstance(outcome, errors.OrdoError):
            raise outcome
        return outcome

    async def _submit_again(
        self, request: cpb.SubmitRequest, timeout_s: float
    ) -> cpb.SubmitResponse:
        """A request id seen before: its original position and outcome."""
        txn, wants_result, request_id = self._check(request)
        submit = self.inflight.get(request_id)
        if submit is not None:
            if submit.txn != txn:
                raise _reused(request_id)
            position = await asyncio.shield(submit.position)
        else:
            logged = self.seqlog.position_of(request_id)
            if logged is None:
                # Its index entry was truncated since: it counts as new.
                return await self._submit(request, timeout_s)
            position = logged
            await self._check_same_txn(position, request_id, txn)
        response = cpb.SubmitResponse(position=position, duplicate=True)
        started = time.perf_counter()
        if wants_result:
            if decided_by_log(txn):
                _decided_result(response.result, position, request_id)
            else:
                result = await self._result_for(position, timeout_s)
                wire.result_to_pb(result, response.result)
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        return response

    def _admit(self) -> None:
        """Refuse a new transaction while the coordinator or a shard is behind."""
        if len(self.queue) >= L.SUBMIT_QUEUE_MAX:
            raise errors.ResourceExhausted(
                f"{len(self.queue)} transactions wait to be sequenced", retry_after_s=0.05
            )
        tail = self.tail.position
        for shard, applied in enumerate(self.shard_applied):
            if applied is not None and tail - applied > self.config.shard_lag_max:
                raise errors.ResourceExhausted(
                    f"shard {shard} lags the log by {tail - applied} positions",
                    retry_after_s=0.1,
                )

    def _queue(self, request_id: str, txn_pb: pb.Txn, txn: Txn, wants_result: bool) -> _Submit:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        submit = _Submit(request_id, txn_pb, txn, txn_pb.ByteSize(), wants_result, future)
        self.inflight[request_id] = submit
        self.queue.append(submit)
        self.work.set()
        return submit

    def _check_retained(self, position: int) -> None:
        oldest = self.seqlog.oldest()
        if position < oldest:
            raise errors.OutOfRange(
                f"position {position} is below the log's retention horizon; the oldest "
                f"position kept is {oldest}",
                oldest_position=oldest,
            )

    async def _check_same_txn(self, position: int, request_id: str, txn: Txn) -> None:
        if position < self.seqlog.oldest():
            return
        entries = await asyncio.to_thread(self.seqlog.read, position, 1)
        if entries and entries[0].HasField("txn"):
            if wire.txn_from_pb_trusted(entries[0].txn) != txn:
                raise _reused(request_id)

    @rpc.unary
    async def Tail(self, request: cpb.TailRequest, context: grpc.aio.ServicerContext) -> cpb.TailResponse:
        return cpb.TailResponse(position=self.tail.position)

    @rpc.unary
    async def GetResult(
        self, request: cpb.GetResultRequest, context: grpc.aio.ServicerContext
    ) -> cpb.GetResultResponse:
        which = request.WhichOneof("by")
        if which == "request_id":
            if len(request.request_id.encode()) > self.limits.request_id_bytes_max:
                raise errors.InvalidArgument("request id is too long", field="request_id")
            position = self.seqlog.position_of(request.request_id)
            if position is None:
                raise errors.NotFound(f"no transaction with request id {request.request_id!r}")
        elif which == "position":
            position = request.position
            if position == 0 or position > self.tail.position:
                raise errors.NotFound(f"no log entry at position {position}")
        else:
            raise errors.InvalidArgument("give a request id or a position", field="by")
        timeout_s = rpc.deadline_s(context, DEFAULT_WAIT_S) - DEADLINE_MARGIN_S
        result = await self._result_for(position, timeout_s)
        return cpb.GetResultResponse(result=wire.result_to_pb(result))

    @rpc.unary
    async def ClusterInfo(
        self, request: cpb.ClusterInfoRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ClusterInfoResponse:
        response = cpb.ClusterInfoResponse()
        response.shard_map.shard_count = self.shard_map.shard_count
        response.shard_map.partitioner = self.shard_map.partitioner
        for shard, address in enumerate(self.config.shards):
            response.shards.add(shard=shard, address=address)
        response.bus_port_offset = self.config.bus_port_offset
        return response

    @rpc.unary
    async def Status(
        self, request: cpb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> cpb.StatusResponse:
        tail = self.tail.position
        response = cpb.StatusResponse(tail=tail)

        async def one(shard: int) -> cpb.ShardStatus:
            status = cpb.ShardStatus(shard=shard, address=self.config.shards[shard])
            try:
                reply = await self.shard_stubs[shard].ShardStatus(
                    spb.ShardStatusRequest(), timeout=1.0
                )
            except grpc.aio.AioRpcError as error:
                status.error = error.code().name
                return status
            status.reachable = True
            status.applied_position = reply.applied_position
            status.lag = max(0, tail - reply.applied_position)
            status.digest = reply.digest
            status.oldest_position = reply.oldest_position
            return status

        response.shards.extend(
            await asyncio.gather(*(one(s) for s in range(self.shard_map.shard_count)))
        )
        return response

    # ----------------------------------------------------------- retention

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.compact_interval_s)
            await self.compact_once()

    async def compact_once(self) -> int:
        """Truncate the log below what every shard has applied and policy allows.

        Returns the log's oldest position afterwards.
        """
        bound = min(self.lowest_applied) + 1  # shards resume from applied + 1
        tail = self.tail.position
        if self.config.retain_positions:
            bound = min(bound, tail - self.config.retain_positions + 1)
        if self.config.retain_seconds:
            cutoff_ms = int((time.time() - self.config.retain_seconds) * 1000)
            newest = await asyncio.to_thread(self.seqlog.newest_before, cutoff_ms)
            bound = min(bound, newest + 1)
        if bound <= self.seqlog.oldest():
            return self.seqlog.oldest()
        oldest = await asyncio.to_thread(self.seqlog.truncate_below, bound)
        log.info("sequencer log truncated: oldest position now %d", oldest)
        return oldest

    # --------------------------------------------------------- log readers

    async def _log_from(
        self, position: int
    ) -> AsyncIterator[tuple[Sequence[pb.LogEntry], bytes | None]]:
        """Durable log entries from ``position`` on, a batch at a time, waiting
        for new ones; with each, its ReadLogResponse already serialized when
        it is a whole live batch (None otherwise)."""
        self._check_retained(position)
        while True:
            if position > self.tail.position:
                await self.tail.wait(position, None)
            found = self._from_recent(position)
            if found is None:
                entries: Sequence[pb.LogEntry] = await asyncio.to_thread(
                    self.seqlog.read, position, L.LOG_STREAM_BATCH_ENTRIES_MAX,
                    L.STREAM_MESSAGE_BYTES_MAX,
                )
                assert entries, f"durable position {position} is missing from the log"
                found = (entries, None)
            yield found
            position = found[0][-1].position + 1

    @rpc.server_stream
    async def Subscribe(
        self, request: cpb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.SubscribeResponse]:
        start = max(1, request.from_position)
        self._check_retained(start)
        streams: list[Any] = []

        def unavailable(
            shard: int, error: grpc.aio.AioRpcError | errors.OrdoError
        ) -> errors.OrdoError:
            if isinstance(error, grpc.aio.AioRpcError):
                error = errors.from_rpc_error(error)
            if error.code in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                # Below a shard's horizon; or this stream fell behind (resume
                # it): both as the shard said. Anything else is this
                # coordinator's link to the shard, not the subscriber's doing.
                return error
            return errors.Unavailable(
                f"shard {shard} is unavailable ({error.code.name}: {error.message}); "
                "resume later"
            )

        buffers: list[collections.deque[pb.ShardResult]] = [
            collections.deque() for _ in self.shard_stubs
        ]

        async def part(shard: int, position: int) -> pb.ShardResult:
            buffer = buffers[shard]
            while True:
                while buffer and buffer[0].position < position:
                    buffer.popleft()  # a shard's part of an earlier transaction
                if buffer:
                    assert buffer[0].position == position, "a participant skipped a position"
                    return buffer.popleft()
                try:
                    message = await streams[shard].read()
                except (grpc.aio.AioRpcError, errors.OrdoError) as error:
                    raise unavailable(shard, error) from None
                if message is grpc.aio.EOF:
                    raise errors.Unavailable(f"shard {shard} closed its results stream")
                buffer.extend(message.results)

        try:
            for shard in range(len(self.shard_stubs)):
                try:
                    streams.append(await self._results_stream(shard, spb.StreamResultsRequest(
                        from_position=start, include_writes=True)))
                except errors.OrdoError as error:
                    raise unavailable(shard, error) from None
            async for entries, _ in self._log_from(start):
                out = cpb.SubscribeResponse()
                size = 0
                for entry in entries:
                    if not entry.HasField("txn"):
                        continue
                    txn = wire.txn_from_pb_trusted(entry.txn)
                    shards = self.shard_map.participants(txn)
                    parts = [await part(s, entry.position) for s in shards]
                    committed = out.txns.add(
                        position=entry.position, request_id=entry.request_id,
                        succeeded=parts[0].succeeded, timestamp_ms=entry.timestamp_ms,
                    )
                    if parts[0].HasField("abort"):
                        committed.abort.CopyFrom(parts[0].abort)
                    for p in parts:
                        committed.writes.extend(p.writes)
                    size += committed.ByteSize()
                    if size >= L.STREAM_MESSAGE_BYTES_MAX:
                        out.progress = entry.position
                        yield out
                        out = cpb.SubscribeResponse()
                        size = 0
                out.progress = entries[-1].position
                yield out
        finally:
            for stream in streams:
                stream.cancel()

    @rpc.server_stream
    async def ReadLog(
        self, request: cpb.ReadLogRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.ReadLogResponse]:
        if len(request.reader) > L.READER_NAME_BYTES_MAX:
            raise errors.InvalidArgument("reader name is too long", field="reader")
        async for entries, raw in self._log_from(max(1, request.from_position)):
            # Pre-serialized bytes pass the serializer untouched (see
            # ordo.security._parsing_checked).
            yield raw if raw is not None else cpb.ReadLogResponse(
                batch=pb.LogBatch(entries=entries)
            )

    def _from_recent(
        self, position: int
    ) -> tuple[Sequence[pb.LogEntry], bytes | None] | None:
        recent = self.recent
        if not recent or position < recent[0][0]:
            return None
        i = bisect.bisect_right(recent, position, key=lambda item: item[0]) - 1
        first, batch, raw = recent[i]
        if first == position:
            return batch.entries, raw
        trimmed = [e for e in batch.entries if e.position >= position]
        return (trimmed, None) if trimmed else None

_WAIT_MODES = frozenset(cpb.WaitFor.values())


def _failure(future: asyncio.Future[Any], position: int | None) -> errors.OrdoError | None:
    """The error to answer for a submit whose ``future`` failed; None if it did not."""
    if future.cancelled():
        return errors.Unavailable("coordinator is shutting down", position=position)
    error = future.exception()
    if error is None:
        return None
    return error if isinstance(error, errors.OrdoError) else errors.Internal(str(error))


def _decided_result(out: pb.TxnResult, position: int, request_id: str) -> None:
    """The result of a transaction the log alone decides (decided_by_log)."""
    out.position = position
    out.request_id = request_id
    out.succeeded = True
    metrics.COMMITTED.inc()


def _reused(request_id: str) -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        f"request id {request_id!r} was already used for a different transaction"
    )
