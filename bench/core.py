"""The ordo-only core benchmark: closed-loop clients against a real local cluster.

``.venv/bin/python -m bench.core`` (``make bench`` runs the comparison with
etcd, PostgreSQL and Redis instead: ``bench/run.py``, which borrows this
module's port, profiling and report-header helpers). For every
(workload, shard count) it starts a fresh cluster (a coordinator and N shard
processes, data in a temporary folder, 127.0.0.1 only), runs C concurrent
workers for a warm-up and then a measured window, checks the data, stops the
cluster, and finally prints a markdown table and writes it to
``bench/results/<date>-core.md``.

Workloads:

``put``
    one key per transaction, a 100-byte value, keys uniform over 100,000.
``transfer``
    ``when int_value(a) >= 1 then add(a, -1), add(b, 1)`` between two distinct
    accounts drawn uniformly (``acct:<i>``, spread over every shard, so most
    transfers are cross-shard when there are several shards). Afterwards every
    account is read at one position: the total must be unchanged, no balance
    negative, and every balance equal to what the acknowledged transfers
    imply. A failed check fails the run (exit status 1).
``transfer-local`` (not run by default)
    the same, but both accounts share a hash tag (``acct:{g<n>}:<i>``, 64
    groups), so every transfer is single-shard: the cost of cross-shard
    transactions is the difference to ``transfer``.

See bench/README.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import datetime
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ordo
from bench.systems import proc_table, process_ticks, service_env, shard_roles
from ordo.cli import dev_commands, port_free, wait_serving

HOST = "127.0.0.1"
PUT_KEYS = 100_000
PAYLOAD_BYTES = 100
INITIAL_BALANCE = 1_000_000
SETUP_TXN_OPS = 100  # puts per set-up transaction (TXN_OPS_MAX is 128)
SETUP_PARALLEL = 16  # set-up transactions in flight
READ_CHUNK = 500  # reads in flight during the check
LOCAL_GROUPS = 64  # transfer-local: hash-tag groups of accounts
WORKLOADS = ("put", "transfer", "transfer-local")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
CHECK_READ_TIMEOUT_S = 30.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------- cluster


def free_base_port(preferred: int, count: int) -> int:
    """``preferred`` if ports preferred..preferred+count-1 are free, else the next free block."""
    base = preferred
    while base + count < 65000:
        if all(port_free(p, HOST) for p in range(base, base + count)):
            return base
        base += count + 1
    raise RuntimeError(f"no free block of {count} ports from {preferred}")


_LIVE: list[subprocess.Popen[bytes]] = []


@atexit.register
def _kill_leftovers() -> None:
    for p in _LIVE:
        if p.poll() is None:
            p.kill()


@dataclass
class Cluster:
    """A coordinator and N shards, each a separate process, data under one folder."""

    shards: int
    data: str
    port: int
    coordinator_args: list[str] = field(default_factory=list)
    shard_args: list[str] = field(default_factory=list)
    shards_per_process: int = 1
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    stopped_at: float = math.inf  # wall clock when stop() began

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def addresses(self) -> list[str]:
        return [f"{HOST}:{self.port + i}" for i in range(self.shards + 1)]

    def log_path(self, role: str) -> str:
        return os.path.join(self.data, f"{role}.log")

    def start(self) -> None:
        per = max(1, self.shards_per_process)
        cmds = dev_commands(self.shards, self.data, HOST, self.port, shards_per_process=per)
        cmds = [cmds[0] + self.coordinator_args] + [c + self.shard_args for c in cmds[1:]]
        self.roles = ["coordinator"] + shard_roles(self.shards, per)
        env = service_env()
        for role, cmd in zip(self.roles, cmds, strict=True):
            with open(self.log_path(role), "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
            self.procs.append(proc)
            _LIVE.append(proc)
        if not wait_serving(self.addresses, START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("the cluster did not start serving:\n" + self.log_tails())

    def stop(self) -> list[int]:
        """SIGTERM, shards first (they drain against the coordinator); SIGKILL after a timeout."""
        self.stopped_at = time.time()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=STOP_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes

    def dead(self) -> list[str]:
        return [f"{role} exited with {p.returncode}"
                for role, p in zip(self.roles, self.procs, strict=True) if p.poll() is not None]

    def cpu_ticks(self) -> dict[str, int]:
        """user+system clock ticks of each live process (from /proc)."""
        out: dict[str, int] = {}
        for role, p in zip(self.roles, self.procs, strict=True):
            ticks = process_ticks(p.pid)
            if ticks is not None:
                out[role] = ticks
        return out

    def log_tails(self, lines: int = 20) -> str:
        parts = []
        for role in self.roles:
            try:
                with open(self.log_path(role), errors="replace") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {role}.log (last {len(tail)} lines)\n" + "".join(tail))
        return "\n".join(parts)

    def log_problems(self, limit: int = 6) -> list[str]:
        """Log lines that look like trouble, the ones logged while stopping apart."""
        marks = ("ERROR", "CRITICAL", "WARNING", "DETERMINISM")
        running: list[str] = []
        stopping: list[str] = []
        for role in self.roles:
            when = 0.0
            try:
                with open(self.log_path(role), errors="replace") as f:
                    for line in f:
                        stamp = _log_time(line)
                        when = stamp if stamp is not None else when
                        if any(m in line for m in marks):
                            found = stopping if when >= self.stopped_at else running
                            found.append(f"{role}: {line.rstrip()}"[:300])
            except OSError:
                continue
        out = running[:limit]
        if len(running) > limit:
            out.append(f"... {len(running) - limit} more while running")
        if stopping:
            out.append(f"while stopping ({len(stopping)}): {stopping[0]}")
        return out


def _log_time(line: str) -> float | None:
    """The wall-clock time of a text-format service log line (``2026-01-02 03:04:05,678``)."""
    try:
        stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None
    return stamp.timestamp()


# ------------------------------------------------------------------- stats


@dataclass
class Stats:
    """What the workers saw; latencies only for operations started in the measured window."""

    latencies_ms: list[float] = field(default_factory=list)
    committed: int = 0  # in the measured window
    committed_total: int = 0  # warm-up included
    rejected: int = 0  # transfers whose compare was false (nothing written)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    errors_total: int = 0  # warm-up included
    warmup_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    per_second: collections.Counter[int] = field(default_factory=collections.Counter)
    # transfers: net delta per account of the acknowledged ones, and the
    # request ids whose outcome the client does not know (errors).
    deltas: collections.Counter[int] = field(default_factory=collections.Counter)
    unknown: list[tuple[str, int, int]] = field(default_factory=list)
    fates: collections.Counter[str] = field(default_factory=collections.Counter)
    checked_at: int = 0  # the position the check read at
    top_others: list[str] = field(default_factory=list)  # busiest other processes


@dataclass
class Outcome:
    workload: str
    shards: int
    duration_s: float
    stats: Stats
    check: str = "-"
    check_ok: bool = True
    cpu_pct: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tail: int = 0

    @property
    def ops_per_s(self) -> float:
        return self.stats.committed / self.duration_s

    def percentile(self, q: float) -> float:
        lat = self.stats.latencies_ms
        if not lat:
            return math.nan
        return lat[max(0, math.ceil(q * len(lat)) - 1)]


# --------------------------------------------------------------- workloads

# One operation: True if it committed, False if it ran without committing
# (a transfer whose compare was false); an exception is an error.
Op = Callable[[ordo.AsyncClient, random.Random, Stats], Awaitable[bool]]


def make_put(args: argparse.Namespace) -> Op:
    payload = random.Random(7).randbytes(PAYLOAD_BYTES)
    timeout = args.op_timeout

    async def put(db: ordo.AsyncClient, rng: random.Random, stats: Stats) -> bool:
        result = await db.put(f"k{rng.randrange(PUT_KEYS)}", payload, timeout=timeout)
        if result.aborted:
            raise RuntimeError(f"put aborted: {result.abort_reason}")
        return True

    return put


def account(i: int) -> str:
    return f"acct:{i}"


def local_account(i: int) -> str:
    """Accounts of one group share a hash tag, so they live on one shard."""
    return f"acct:{{g{i % LOCAL_GROUPS}}}:{i}"


def account_key(workload: str) -> Callable[[int], str]:
    return local_account if workload == "transfer-local" else account


def make_transfer(args: argparse.Namespace, local: bool) -> Op:
    accounts = args.accounts
    timeout = args.op_timeout
    key = local_account if local else account

    async def transfer(db: ordo.AsyncClient, rng: random.Random, stats: Stats) -> bool:
        a = rng.randrange(accounts)
        if local:  # another account of a's group
            group = a % LOCAL_GROUPS
            members = (accounts - group + LOCAL_GROUPS - 1) // LOCAL_GROUPS
            b = a
            while b == a:
                b = group + LOCAL_GROUPS * rng.randrange(members)
        else:
            b = rng.randrange(accounts - 1)
            b += b >= a  # uniform over the others
        ka, kb = key(a), key(b)
        request_id = uuid.uuid4().hex
        try:
            result = await db.txn(
                when=[ordo.int_value(ka) >= 1],
                then=[ordo.add(ka, -1), ordo.add(kb, 1)],
                request_id=request_id,
                timeout=timeout,
            )
        except BaseException:
            stats.unknown.append((request_id, a, b))
            raise
        if result.aborted:
            raise RuntimeError(f"transfer aborted: {result.abort_reason}")
        if not result.succeeded:
            stats.rejected += 1
            return False
        stats.deltas[a] -= 1
        stats.deltas[b] += 1
        return True

    return transfer


async def setup_accounts(
    db: ordo.AsyncClient, accounts: int, key: Callable[[int], str] = account
) -> None:
    """Every account at INITIAL_BALANCE, SETUP_TXN_OPS puts per transaction."""
    gate = asyncio.Semaphore(SETUP_PARALLEL)

    async def one(start: int) -> None:
        async with gate:
            then = [ordo.put(key(i), INITIAL_BALANCE)
                    for i in range(start, min(start + SETUP_TXN_OPS, accounts))]
            result = await db.txn(then=then, timeout=60.0)
            if not result.succeeded or result.aborted:
                raise RuntimeError(f"account set-up failed at {start}: {result}")

    await asyncio.gather(*(one(s) for s in range(0, accounts, SETUP_TXN_OPS)))


async def settle_tail(db: ordo.AsyncClient) -> int:
    """The log tail once it stops moving (a submit whose client gave up may still be queued)."""
    tail = await db.tail()
    for _ in range(25):  # at most ~5 s
        await asyncio.sleep(0.2)
        now = await db.tail()
        if now == tail:
            return tail
        tail = now
    return tail


async def check_accounts(
    db: ordo.AsyncClient, accounts: int, stats: Stats, key: Callable[[int], str] = account
) -> tuple[bool, str]:
    """Read every account at one position (after the writers stopped) and check the books."""
    deltas = collections.Counter(stats.deltas)
    unresolved = 0
    # Transfers that ended in an error: ask the log what became of them.
    fates: collections.Counter[str] = collections.Counter()
    for request_id, a, b in stats.unknown:
        try:
            result = await db.result(request_id, timeout=CHECK_READ_TIMEOUT_S)
        except ordo.NotFound:
            fates["never logged"] += 1
            continue  # no effect
        except ordo.OrdoError as error:
            fates[f"unknown ({type(error).__name__})"] += 1
            unresolved += 1
            continue
        if result.succeeded and not result.aborted:
            fates["committed"] += 1
            deltas[a] -= 1
            deltas[b] += 1
        else:
            fates["not committed"] += 1
    if fates:
        stats.fates = fates
    position = stats.checked_at = await db.tail()
    keys = [key(i) for i in range(accounts)]
    balances: list[Any] = []
    for start in range(0, accounts, READ_CHUNK):
        chunk = keys[start : start + READ_CHUNK]
        balances += await asyncio.gather(
            *(db.get(k, min_position=position, timeout=CHECK_READ_TIMEOUT_S) for k in chunk)
        )
    problems = []
    missing = [keys[i] for i, v in enumerate(balances) if not isinstance(v, int)]
    if missing:
        problems.append(f"{len(missing)} accounts missing or not int (e.g. {missing[:3]})")
    ints = [v if isinstance(v, int) else 0 for v in balances]
    total, want = sum(ints), accounts * INITIAL_BALANCE
    if total != want:
        problems.append(f"total {total} != {want}")
    negative = [keys[i] for i, v in enumerate(ints) if v < 0]
    if negative:
        problems.append(f"{len(negative)} negative balances (e.g. {negative[:3]})")
    exact = "exact"
    if unresolved:
        exact = f"exact balances not checked: {unresolved} outcomes unknown"
    else:
        wrong = [i for i, v in enumerate(ints) if v != INITIAL_BALANCE + deltas[i]]
        if wrong:
            i = wrong[0]
            problems.append(f"{len(wrong)} balances differ from the acknowledged transfers "
                            f"(e.g. {keys[i]}={ints[i]}, expected {INITIAL_BALANCE + deltas[i]})")
    if problems:
        return False, f"FAIL at position {position}: " + "; ".join(problems)
    return True, f"PASS (position {position}, total {total}, {exact})"


# ------------------------------------------------------------------ runner


async def run_workers(
    clients: list[ordo.AsyncClient], op: Op, args: argparse.Namespace, cluster: Cluster,
    profile: Callable[[], None] | None,
) -> tuple[Stats, dict[str, float]]:
    stats = Stats()
    t_start = time.perf_counter()
    t_measure = t_start + args.warmup
    t_end = t_measure + args.duration
    cpu: dict[str, float] = {}
    top_others: list[str] = []

    async def worker(n: int) -> None:
        db = clients[n % len(clients)]
        rng = random.Random(args.seed * 1_000_003 + n)
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            measured = t0 >= t_measure
            try:
                committed = await op(db, rng, stats)
            except Exception as error:  # counted, never fatal
                stats.errors_total += 1
                (stats.errors if measured else stats.warmup_errors)[_error_name(error)] += 1
                await asyncio.sleep(0.01)  # no hot loop against a failing cluster
                continue
            stats.committed_total += committed
            if measured:
                t1 = time.perf_counter()
                stats.latencies_ms.append((t1 - t0) * 1000.0)
                if committed:
                    stats.committed += 1
                    stats.per_second[int(t1 - t_measure)] += 1

    async def sample_cpu() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        if profile is not None:
            profile()
        ticks0, client0, w0 = cluster.cpu_ticks(), time.process_time(), time.perf_counter()
        machine0, procs0 = machine_ticks(), _process_ticks()
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        ticks1, client1, w1 = cluster.cpu_ticks(), time.process_time(), time.perf_counter()
        machine1, procs1 = machine_ticks(), _process_ticks()
        hz = os.sysconf("SC_CLK_TCK")
        wall = w1 - w0
        cpu["client"] = 100.0 * (client1 - client0) / wall
        for role in cluster.roles:
            if role in ticks0 and role in ticks1:
                cpu[role] = 100.0 * (ticks1[role] - ticks0[role]) / hz / wall
        if machine0 and machine1:
            cpu["machine"] = 100.0 * (machine1[0] - machine0[0]) / hz / wall
        ours = {os.getpid(), *(p.pid for p in cluster.procs)}
        others: list[tuple[float, str]] = []
        for pid, (name, ticks) in procs1.items():
            if pid in ours:
                continue
            used = 100.0 * (ticks - procs0.get(pid, (name, 0))[1]) / hz / wall
            if used > 0:
                others.append((used, name))
        cpu["others"] = sum(u for u, _ in others)
        others.sort(reverse=True)
        top_others[:] = [f"{u:.0f}% {n}" for u, n in others[:3] if u >= 5]

    # Hard bound: every operation has its own timeout, so this never fires
    # unless the client itself hangs.
    bound = args.warmup + args.duration + 3 * args.op_timeout + 30
    await asyncio.wait_for(
        asyncio.gather(sample_cpu(), *(worker(n) for n in range(args.concurrency))), bound
    )
    stats.latencies_ms.sort()
    stats.top_others = top_others
    return stats, cpu


def machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every CPU since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


def _process_ticks() -> dict[int, tuple[str, int]]:
    """user+system clock ticks of every process (threads included), with a short name."""
    return {pid: (name, ticks) for pid, (_, ticks, name) in proc_table().items()}


async def wait_quiet(limit_s: float, busy_max_pct: float = 25.0) -> str:
    """Wait (up to ``limit_s``) until the machine is idle: busy under ``busy_max_pct`` of a core
    over one second. Returns what was found, for the report."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + limit_s
    busy = math.nan
    while True:
        a = machine_ticks()
        await asyncio.sleep(1.0)
        b = machine_ticks()
        if a is None or b is None:
            return "unknown"
        busy = 100.0 * (b[0] - a[0]) / hz
        if busy < busy_max_pct:
            return f"quiet ({busy:.0f}% of a core busy)"
        if time.monotonic() >= deadline:
            return f"still busy after {limit_s:g} s ({busy:.0f}% of a core)"


def _error_name(error: BaseException) -> str:
    if isinstance(error, ordo.OrdoError):
        return type(error).__name__
    return f"{type(error).__name__}: {error}"[:80]


class Profiler:
    """py-spy on the client and every service during the measured window (raw stacks).

    Samples are taken without pausing the process (``--nonblocking``), but
    py-spy still takes CPU from a small machine: do not quote throughput from
    a profiled run.
    """

    def __init__(self, cluster: Cluster, args: argparse.Namespace, label: str) -> None:
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.cluster, self.label = cluster, label
        self.duration = max(1, int(args.duration))
        self.out_dir = Path(args.profile)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []

    def start(self) -> None:
        pids = [("client", os.getpid())] + [
            (role, p.pid) for role, p in zip(self.cluster.roles, self.cluster.procs, strict=True)]
        for role, pid in pids:
            out = self.out_dir / f"{self.label}-{role}.txt"
            cmd = [self.exe, "record", "--pid", str(pid), "--duration", str(self.duration),
                   "--rate", "200", "--format", "raw", "--nonblocking", "-o", str(out)]
            self.procs.append((role, out, subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def finish(self, top: int = 8) -> str:
        """Wait for py-spy and summarise: the busiest frames (own samples) per process."""
        lines = []
        for role, out, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            own: collections.Counter[str] = collections.Counter()
            total = 0
            try:
                with open(out) as f:
                    for line in f:
                        stack, _, count = line.rstrip().rpartition(" ")
                        if not stack or not count.isdigit():
                            continue
                        total += int(count)
                        own[stack.split(";")[-1]] += int(count)
            except OSError:
                lines.append(f"   {role}: no profile (py-spy exited with {proc.returncode})")
                continue
            lines.append(f"   {role}: {total} busy samples at 200 Hz over {self.duration} s "
                         f"({out}); busiest frames:")
            lines += [f"     {100 * n / max(1, total):5.1f}%  {frame}"
                      for frame, n in own.most_common(top)]
        return "\n".join(lines)


async def run_config(workload: str, shards: int, index: int, args: argparse.Namespace) -> Outcome:
    """One fresh cluster, one workload. Never raises: a failure is a FAIL row with notes."""
    label = f"{workload}-{shards}shard"
    print(f"== {label}: starting a cluster", flush=True)
    coordinator_args = []
    if args.batch_delay_ms is not None:
        coordinator_args += ["--batch-delay-ms", str(args.batch_delay_ms)]
    if args.batch_txns_max is not None:
        coordinator_args += ["--batch-txns-max", str(args.batch_txns_max)]
    outcome = Outcome(workload, shards, args.duration, Stats())
    if args.wait_quiet > 0:
        found = await wait_quiet(args.wait_quiet)
        print(f"   machine before the start: {found}", flush=True)
        outcome.notes.append(f"machine before the start: {found}")
    with tempfile.TemporaryDirectory(prefix=f"ordo-bench-{label}-") as data:
        port = free_base_port(args.base_port + 100 * index, 2 * (shards + 1))  # gRPC, bus
        shard_args = ["--no-sync"] if args.shard_no_sync else []
        cluster = Cluster(shards, data, port, coordinator_args, shard_args)
        clients: list[ordo.AsyncClient] = []
        try:
            await asyncio.to_thread(cluster.start)
            clients = [ordo.connect(cluster.address, timeout=args.op_timeout)
                       for _ in range(max(1, min(args.clients, args.concurrency)))]
            for c in clients:
                await c.connect()
            transfer = workload.startswith("transfer")
            if transfer:
                t0 = time.perf_counter()
                await setup_accounts(clients[0], args.accounts, account_key(workload))
                print(f"   {args.accounts} accounts set up in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
                op = make_transfer(args, local=workload == "transfer-local")
            else:
                op = make_put(args)
            profiler = Profiler(cluster, args, label) if args.profile else None
            print(f"   {args.concurrency} workers on {len(clients)} clients: "
                  f"{args.warmup:g} s warm-up, {args.duration:g} s measured", flush=True)
            outcome.stats, outcome.cpu_pct = await run_workers(
                clients, op, args, cluster, profiler.start if profiler else None)
            if profiler is not None:
                print(await asyncio.to_thread(profiler.finish), flush=True)
            if transfer:
                await settle_tail(clients[0])
                outcome.check_ok, outcome.check = await check_accounts(
                    clients[0], args.accounts, outcome.stats, account_key(workload))
                print(f"   check: {outcome.check}", flush=True)
            outcome.tail = await clients[0].tail()
            checked = outcome.stats.checked_at
            if checked and outcome.tail != checked:
                outcome.notes.append(
                    f"the log grew from {checked} to {outcome.tail} after every worker had "
                    "stopped and the tail had settled")
        except Exception as error:
            outcome.check_ok = False
            outcome.check = f"FAIL: the run broke: {type(error).__name__}: {error}"[:300]
            print(f"   {outcome.check}", flush=True)
            traceback.print_exc()
        finally:
            for c in clients:
                try:
                    await c.close()
                except Exception:  # closing is best effort
                    pass
            dead = cluster.dead()
            codes = await asyncio.to_thread(cluster.stop)
            if args.keep_logs:
                dest = Path(args.keep_logs) / label
                dest.mkdir(parents=True, exist_ok=True)
                for role in cluster.roles:
                    with contextlib.suppress(OSError):
                        shutil.copy(cluster.log_path(role), dest / f"{role}.log")
            if not outcome.check_ok:
                print(cluster.log_tails(), flush=True)
            outcome.notes += cluster.log_problems()
    if dead:
        outcome.check_ok = False
        outcome.notes.append("died during the run: " + ", ".join(dead))
    others = outcome.cpu_pct.get("others", 0.0)
    if others >= 20:
        outcome.notes.append(
            f"other processes used {others:.0f}% of a core during the window, these figures "
            "are disturbed; busiest: " + "; ".join(outcome.stats.top_others))
    if any(c not in (0, -signal.SIGTERM) for c in codes):
        outcome.notes.append(f"exit codes after SIGTERM: {codes}")
    return outcome


# ------------------------------------------------------------------ report


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def source_tree() -> str:
    """The commit measured, and whether the services' code differed from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    changed = git("status", "--porcelain", "--", "ordo", "coordinator", "shard", "proto")
    dirty = len([line for line in changed.splitlines() if line.strip()])
    return commit + (f" with {dirty} changed file(s) in ordo/, coordinator/, shard/, proto/"
                     if dirty else "")


def report(outcomes: list[Outcome], args: argparse.Namespace, command: str, loop: str) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"# ordo core benchmark, {today}",
        "",
        f"- machine: {machine()}",
        f"- source: {source_tree()}",
        f"- command: `{command}`",
        f"- {args.concurrency} closed-loop workers on {min(args.clients, args.concurrency)} "
        f"AsyncClients in one client process ({loop} event loop), "
        f"{args.warmup:g} s warm-up, {args.duration:g} s measured; "
        f"client, coordinator and shards share the machine",
        f"- put: 100-byte values, keys uniform over {PUT_KEYS:,}; transfer: "
        f"{args.accounts:,} accounts, `when int_value(a) >= 1 then add(a,-1), add(b,1)`",
        "- services: " + (", ".join(
            ([f"coordinator --batch-delay-ms {args.batch_delay_ms:g}"]
             if args.batch_delay_ms is not None else [])
            + ([f"coordinator --batch-txns-max {args.batch_txns_max}"]
               if args.batch_txns_max is not None else [])
            + (["shards --no-sync"] if args.shard_no_sync else [])) or "default settings"),
        "",
        "| workload | shards | committed ops/s | p50 ms | p99 ms | p999 ms | errors | check |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        check = "FAIL" if not o.check_ok else ("PASS" if o.check.startswith("PASS") else "-")
        lines.append(
            f"| {o.workload} | {o.shards} | {o.ops_per_s:,.0f} | {o.percentile(0.50):.1f} | "
            f"{o.percentile(0.99):.1f} | {o.percentile(0.999):.1f} | "
            f"{sum(o.stats.errors.values())} | {check} |"
        )
    most = max(o.shards for o in outcomes)
    roles = (["client", "coordinator"] + [f"shard-{i}" for i in range(most)]
             + ["machine", "others"])
    lines += [
        "",
        f"CPU during the measured window, % of one core ({os.cpu_count()} cores = "
        f"{100 * (os.cpu_count() or 1)}%). machine: all CPU time, kernel included; "
        "others: processes that are not this benchmark's:",
        "",
        "| workload | shards | " + " | ".join(roles) + " |",
        "|---|---:|" + "---:|" * len(roles),
    ]
    for o in outcomes:
        cells = [f"{o.cpu_pct[r]:.0f}" if r in o.cpu_pct else "" for r in roles]
        lines.append(f"| {o.workload} | {o.shards} | " + " | ".join(cells) + " |")
    lines += ["", "Details:", ""]
    for o in outcomes:
        s = o.stats
        detail = (f"- {o.workload}, {o.shards} shard(s): {s.committed:,} committed in the "
                  f"window ({s.committed_total:,} with warm-up), log tail {o.tail:,}")
        if s.rejected:
            detail += f", {s.rejected} rejected by the compare"
        if s.errors:
            detail += ", errors: " + ", ".join(f"{k} x{v}" for k, v in s.errors.most_common())
        if s.fates:
            detail += ", failed transfers turned out: " + ", ".join(
                f"{k} x{v}" for k, v in s.fates.most_common())
        if s.warmup_errors:
            detail += ", errors in the warm-up: " + ", ".join(
                f"{k} x{v}" for k, v in s.warmup_errors.most_common())
        if o.check != "-":
            detail += f"; check: {o.check}"
        seconds = [s.per_second[i] for i in range(int(math.ceil(o.duration_s)))]
        if seconds:
            detail += "; committed per second: " + " ".join(str(n) for n in seconds)
        lines.append(detail)
        lines += [f"  - {n}" for n in o.notes]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop workers (32)")
    p.add_argument("--clients", type=int, default=4,
                   help="AsyncClient objects the workers are spread over (4)")
    p.add_argument("--shards", default="1,3", help="comma list of shard counts (1,3)")
    p.add_argument("--workloads", default="put,transfer",
                   help="comma list of put, transfer, transfer-local (put,transfer)")
    p.add_argument("--accounts", type=int, default=10_000, help="transfer accounts (10000)")
    p.add_argument("--op-timeout", type=float, default=10.0,
                   help="client timeout per operation, seconds (10)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--base-port", type=int, default=7600,
                   help="first port tried; each configuration adds 100 (7600)")
    p.add_argument("--batch-delay-ms", type=float, default=None,
                   help="pass --batch-delay-ms to the coordinator (its default if unset)")
    p.add_argument("--batch-txns-max", type=int, default=None,
                   help="pass --batch-txns-max to the coordinator (its default if unset)")
    p.add_argument("--shard-no-sync", action="store_true",
                   help="start shards with --no-sync (no fsync of applied batches; the "
                        "sequencer log is still synced)")
    p.add_argument("--output", default=None,
                   help="markdown file to write (bench/results/<date>-core.md)")
    p.add_argument("--keep-logs", default=None, help="copy the service logs to this folder")
    p.add_argument("--profile", default=None,
                   help="py-spy record the client and every service during the window "
                        "into this folder (needs py-spy; do not quote its throughput)")
    p.add_argument("--no-uvloop", action="store_true", help="client on the asyncio loop")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each configuration wait up to S seconds for the machine "
                        "to be idle (for shared machines; 0: do not wait)")
    args = p.parse_args(argv)
    args.shard_counts = [int(s) for s in args.shards.split(",") if s.strip()]
    args.workload_list = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in args.workload_list:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}")
    if not args.shard_counts or min(args.shard_counts) < 1:
        p.error("--shards needs positive shard counts")
    if args.concurrency < 1 or args.clients < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--concurrency and --clients are >= 1, --duration > 0, --warmup >= 0")
    if args.accounts < 2 * LOCAL_GROUPS:
        p.error(f"--accounts is at least {2 * LOCAL_GROUPS}")
    return args


async def amain(args: argparse.Namespace) -> list[Outcome]:
    outcomes = []
    index = 0
    for workload in args.workload_list:
        for shards in args.shard_counts:
            outcomes.append(await run_config(workload, shards, index, args))
            o = outcomes[-1]
            print(f"   {o.ops_per_s:,.0f} ops/s, p50 {o.percentile(0.5):.1f} ms, "
                  f"p99 {o.percentile(0.99):.1f} ms, p999 {o.percentile(0.999):.1f} ms, "
                  f"errors {sum(o.stats.errors.values())}", flush=True)
            index += 1
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join([".venv/bin/python -m bench.core", *(sys.argv[1:] if argv is None else argv)])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop clusters on the way out
    loop = "asyncio"
    if not args.no_uvloop:
        try:
            import uvloop

            loop = "uvloop"
        except ImportError:
            pass
    if loop == "uvloop":
        outcomes = uvloop.run(amain(args))
    else:
        outcomes = asyncio.run(amain(args))
    text = report(outcomes, args, command, loop)
    print()
    print(text)
    out = Path(args.output) if args.output else (
        RESULTS_DIR / f"{datetime.date.today().isoformat()}-core.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")
    return 0 if all(o.check_ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
