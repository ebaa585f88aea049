"""ordo against etcd 3.4, PostgreSQL 15 and Redis 7: the same workloads, one harness.

``.venv/bin/python -m bench.run`` (what ``make bench`` runs after
``bench/install.sh``). For every workload and every system it starts fresh
servers on 127.0.0.1 with data in a temporary folder, runs C closed-loop
asyncio workers (a warm-up, then a measured window), checks the data, and
stops the servers; every workload runs twice, the systems interleaved (the
second round in reverse order). It prints a markdown report with ratios and
writes it, with PNG plots, to ``bench/results/<date>.md``.

Workloads (see bench/README.md):

``put``                one key, a 100-byte value, keys uniform over 100,000
``transfer-low``       move 1 between two of 10,000 accounts if the source has >= 1
``transfer-hot``       the same over 10 accounts
``read-your-writes``   write a key, then read it back on another connection

Systems: ordo on 1 and on 3 shards (``--shards``), etcd, PostgreSQL
(SERIALIZABLE and READ COMMITTED variants for the transfers), Redis (not
durable: a reference). ``--systems ordo`` is the ordo-only mode;
``python -m bench.core`` is the older ordo-only core benchmark.
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
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

import ordo
from bench import systems
from bench.core import Profiler, free_base_port, machine, machine_ticks, source_tree
from bench.systems import (
    INITIAL_BALANCE,
    EtcdTarget,
    NotInstalled,
    NullTarget,
    OrdoTarget,
    PostgresTarget,
    RedisTarget,
    Target,
)
from ordo import trace

PUT_KEYS = 100_000
PAYLOAD_BYTES = 100
WORKLOADS = ("put", "transfer-low", "transfer-hot", "read-your-writes")
ACCOUNTS = {"transfer-low": 10_000, "transfer-hot": 10}
SYSTEMS = ("ordo", "etcd", "postgres", "redis", "null")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PCTS = (0.50, 0.99, 0.999)

atexit.register(systems.kill_leftovers)


# ------------------------------------------------------------------- stats


@dataclass
class Run:
    """One (workload, target, repetition): what the workers saw and what the checks found."""

    workload: str
    label: str
    system: str
    rep: int
    concurrency: int
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)  # window, sorted
    committed: int = 0
    committed_total: int = 0
    rejected: int = 0  # transfers whose condition was false (nothing written)
    retries: int = 0  # of the window's operations
    stale: int = 0  # read-your-writes: reads that did not return the value just written
    stale_example: str = ""
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    warmup_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    per_second: collections.Counter[int] = field(default_factory=collections.Counter)
    deltas: collections.Counter[int] = field(default_factory=collections.Counter)
    unknown: int = 0  # transfers that raised: outcome unknown to the client
    cpu: dict[str, float] = field(default_factory=dict)
    top_others: list[str] = field(default_factory=list)
    load: tuple[float, float] = (math.nan, math.nan)  # 1-min load average before, after
    check: str = "-"
    check_ok: bool = True
    notes: list[str] = field(default_factory=list)
    settings: str = ""
    window: tuple[float, float] = (math.inf, math.inf)  # perf_counter bounds of the window
    # read-your-writes: latencies of the write and of the read, apart
    split_ms: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))

    @property
    def ops_per_s(self) -> float:
        return self.committed / self.duration_s


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return math.nan
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


def error_name(error: BaseException) -> str:
    if isinstance(error, ordo.OrdoError):
        return type(error).__name__
    if isinstance(error, grpc.aio.AioRpcError):
        return f"gRPC {error.code().name}"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "TimeoutError"
    return f"{type(error).__name__}: {error}"[:80]


# --------------------------------------------------------------- workloads

# One operation of worker w: (committed, retries); an exception is an error.
Op = Callable[[int, random.Random], Awaitable[tuple[bool, int]]]


def make_op(workload: str, target: Target, run: Run, concurrency: int) -> Op:
    if workload == "put":
        payload = systems.fixed_payload(PAYLOAD_BYTES)

        async def put(w: int, rng: random.Random) -> tuple[bool, int]:
            await target.put(w, f"k{rng.randrange(PUT_KEYS)}", payload)
            return True, 0

        return put

    if workload in ACCOUNTS:
        n = ACCOUNTS[workload]

        async def transfer(w: int, rng: random.Random) -> tuple[bool, int]:
            a = rng.randrange(n)
            b = rng.randrange(n - 1)
            b += b >= a  # uniform over the others
            try:
                committed, retries = await target.transfer(w, a, b)
            except BaseException:
                run.unknown += 1
                raise
            if committed:
                run.deltas[a] -= 1
                run.deltas[b] += 1
            else:
                run.rejected += 1
            return committed, retries

        return transfer

    # read-your-writes: each worker writes its own slice of the key space, so
    # the read must return exactly the value just written.
    slots = max(1, PUT_KEYS // concurrency)
    seqs = collections.Counter[int]()

    async def write_read(w: int, rng: random.Random) -> tuple[bool, int]:
        key = f"k{rng.randrange(slots) * concurrency + w}"
        seqs[w] += 1
        value = systems.unique_value(w, seqs[w], PAYLOAD_BYTES)
        t0 = time.perf_counter()
        token = await target.ryw_write(w, key, value)
        t1 = time.perf_counter()
        got = await target.ryw_read(w, key, token)
        if t0 >= run.window[0] and t0 < run.window[1]:
            run.split_ms[0].append((t1 - t0) * 1000.0)
            run.split_ms[1].append((time.perf_counter() - t1) * 1000.0)
        if got != value:
            run.stale += 1
            if not run.stale_example:
                run.stale_example = f"{key}: wrote {value[:24]!r}..., read {str(got)[:40]}"
        return True, 0

    return write_read


# ------------------------------------------------------------------ runner


async def run_workers(target: Target, op: Op, run: Run, args: argparse.Namespace,
                      on_window: Callable[[], None] | None) -> None:
    t_start = time.perf_counter()
    t_measure = t_start + args.warmup
    t_end = t_measure + args.duration
    run.window = (t_measure, t_end)
    latencies: list[float] = []

    async def worker(w: int) -> None:
        rng = random.Random(args.seed * 1_000_003 + w)
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            measured = t0 >= t_measure
            try:
                committed, retries = await op(w, rng)
            except Exception as error:  # counted, never fatal
                (run.errors if measured else run.warmup_errors)[error_name(error)] += 1
                await asyncio.sleep(0.01)  # no hot loop against a failing server
                continue
            run.committed_total += committed
            if measured:
                t1 = time.perf_counter()
                latencies.append((t1 - t0) * 1000.0)
                run.retries += retries
                if committed:
                    run.committed += 1
                    run.per_second[int(t1 - t_measure)] += 1

    async def sample_cpu() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        if on_window is not None:
            on_window()
        assert target.servers is not None
        table0, client0, w0 = systems.proc_table(), time.process_time(), time.perf_counter()
        machine0 = machine_ticks()
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        table1, client1, w1 = systems.proc_table(), time.process_time(), time.perf_counter()
        machine1 = machine_ticks()
        hz = os.sysconf("SC_CLK_TCK")
        wall = w1 - w0
        cpu = run.cpu
        cpu["client"] = 100.0 * (client1 - client0) / wall
        ticks0 = target.servers.cpu_ticks(table0)
        ticks1 = target.servers.cpu_ticks(table1)
        for role in target.servers.roles:
            if role in ticks0 and role in ticks1:
                cpu[f"server:{role}"] = 100.0 * (ticks1[role] - ticks0[role]) / hz / wall
        cpu["server"] = sum(v for k, v in cpu.items() if k.startswith("server:"))
        if machine0 and machine1:
            cpu["machine"] = 100.0 * (machine1[0] - machine0[0]) / hz / wall
        ours = {os.getpid()}
        for p in target.servers.procs:
            ours |= systems.descendants(table1, p.pid) | systems.descendants(table0, p.pid)
        others: list[tuple[float, str]] = []
        for pid, (_, ticks, name) in table1.items():
            if pid in ours:
                continue
            used = 100.0 * (ticks - table0.get(pid, (0, 0, name))[1]) / hz / wall
            if used > 0:
                others.append((used, name))
        cpu["others"] = sum(u for u, _ in others)
        others.sort(reverse=True)
        run.top_others = [f"{u:.0f}% {n}" for u, n in others[:3] if u >= 5]

    # Every operation has its own timeout; this bound only fires if a client hangs.
    bound = args.warmup + args.duration + 3 * args.op_timeout + 30
    await asyncio.wait_for(asyncio.gather(
        sample_cpu(), *(worker(w) for w in range(run.concurrency))), bound)
    latencies.sort()
    run.latencies_ms = latencies
    for part in run.split_ms:
        part.sort()


async def check_books(target: Target, run: Run, n: int) -> None:
    """After a transfer run: total unchanged, no balance negative, and, when every outcome
    is known, each balance exactly what the acknowledged transfers imply."""
    deltas = collections.Counter(run.deltas)
    unknown = run.unknown
    fates: collections.Counter[str] = collections.Counter()
    resolved = await target.resolve_unknown()
    if resolved is not None:
        extra, unknown, fates = resolved
        deltas.update(extra)
    balances = await target.balances(n)
    problems = []
    missing = [i for i, v in enumerate(balances) if not isinstance(v, int)]
    if missing:
        problems.append(f"{len(missing)} accounts missing or not int (e.g. {missing[:3]})")
    ints = [v if isinstance(v, int) else 0 for v in balances]
    total, want = sum(ints), n * INITIAL_BALANCE
    if total != want:
        problems.append(f"total {total} != {want}")
    negative = [i for i, v in enumerate(ints) if v < 0]
    if negative:
        problems.append(f"{len(negative)} negative balances (e.g. {negative[:3]})")
    exact = "exact"
    if unknown:
        exact = f"exact balances not checked: {unknown} outcomes unknown"
    else:
        wrong = [i for i, v in enumerate(ints) if v != INITIAL_BALANCE + deltas[i]]
        if wrong:
            i = wrong[0]
            problems.append(f"{len(wrong)} balances differ from the acknowledged transfers "
                            f"(e.g. account {i}={ints[i]}, expected "
                            f"{INITIAL_BALANCE + deltas[i]})")
    if fates:
        run.notes.append("failed transfers turned out: " + ", ".join(
            f"{k} x{v}" for k, v in fates.most_common()))
    run.check_ok = not problems
    run.check = ("FAIL: " + "; ".join(problems)) if problems else f"PASS (total {total}, {exact})"


@dataclass(frozen=True)
class Plan:
    """One cell of the schedule."""

    workload: str
    label: str
    make: Callable[[], Target]
    concurrency: int
    overload: bool = False


def plans_for(workload: str, args: argparse.Namespace) -> list[Plan]:
    out: list[Plan] = []
    c = args.concurrency
    if "ordo" in args.system_list:
        for s, per, bus in args.shard_counts:
            out.append(Plan(workload, systems.ordo_label(s, per, bus),
                            lambda s=s, per=per, bus=bus: OrdoTarget(args, s, per, bus), c))
    if "etcd" in args.system_list:
        out.append(Plan(workload, "etcd", lambda: EtcdTarget(args), c))
    if "postgres" in args.system_list:
        if workload in ACCOUNTS:
            for variant in args.pg_variant_list:
                out.append(Plan(workload, f"pg-{variant}",
                                lambda v=variant: PostgresTarget(args, v), c))
        else:
            out.append(Plan(workload, "postgres", lambda: PostgresTarget(args, None), c))
    if "redis" in args.system_list:
        out.append(Plan(workload, "redis", lambda: RedisTarget(args), c))
    if "null" in args.system_list and workload == "put":
        out.append(Plan(workload, "null", lambda: NullTarget(args), c))
    if workload == "put" and args.overload > 0 and "ordo" in args.system_list:
        for s in args.overload_shard_list:
            out.append(Plan(workload, f"ordo-{s}@{args.overload}",
                            lambda s=s: OrdoTarget(args, s), args.overload, overload=True))
    return out


def _shard_spec(spec: str) -> tuple[int, int, bool]:
    """``N`` or ``NxP``, ``g`` at the end for every stream (internal and the
    client's) on gRPC instead of the bus: (shards, shards per process, bus)."""
    spec = spec.strip()
    bus = not spec.endswith("g")
    shards, _, processes = spec.removesuffix("g").partition("x")
    n, p = int(shards), int(processes or shards)
    if n < 1 or p < 1 or n % p:
        raise ValueError(spec)
    return n, n // p if processes else 1, bus


def schedule(args: argparse.Namespace) -> list[tuple[int, Plan]]:
    """Every repetition runs every workload on every system back to back (interleaved); odd
    repetitions go through the systems in reverse, so a drift of the machine's load does not
    favour whoever runs first."""
    out = []
    for rep in range(args.reps):
        for workload in args.workload_list:
            plans = plans_for(workload, args)
            out += [(rep, p) for p in (reversed(plans) if rep % 2 else plans)]
    return out


async def run_one(plan: Plan, rep: int, index: int, args: argparse.Namespace) -> Run:
    """Fresh servers, one workload, checks, servers stopped. Never raises: a failure is a
    FAIL row with notes."""
    run = Run(plan.workload, plan.label, "?", rep, plan.concurrency, args.duration)
    print(f"== [{index + 1}] {plan.workload} on {plan.label} (round {rep + 1}), "
          f"{plan.concurrency} workers", flush=True)
    if args.wait_quiet > 0:
        from bench.core import wait_quiet

        run.notes.append(f"machine before the start: {await wait_quiet(args.wait_quiet)}")
    run.load = (os.getloadavg()[0], math.nan)
    target: Target | None = None
    codes: list[int] = []
    dead: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"ordo-bench-{plan.label}-") as data:
        try:
            target = plan.make()
            run.system, run.settings = target.system, target.settings()
            if args.trace and target.traceable:
                target.trace_dir = os.path.join(
                    args.trace, f"{plan.workload}-{plan.label}-r{rep}")
            port = free_base_port(args.base_port + 10 * (index % 200), target.ports)
            await target.start(data, port)
            await target.connect(plan.concurrency, readers=plan.workload == "read-your-writes")
            if plan.workload in ACCOUNTS:
                await target.setup_accounts(ACCOUNTS[plan.workload])
            op = make_op(plan.workload, target, run, plan.concurrency)
            profiler = None
            if args.profile and target.profile_ok and not plan.overload:
                profiler = Profiler(target.servers, args, f"{plan.workload}-{plan.label}-r{rep}")
            traced = target.trace_dir

            def on_window() -> None:
                if profiler is not None:
                    profiler.start()
                if traced:
                    trace.start(traced, args.trace_sample)

            try:
                await run_workers(target, op, run, args, on_window)
            finally:
                trace.stop()
            if profiler is not None:
                print(await asyncio.to_thread(profiler.finish), flush=True)
            if traced:
                print(f"   traced into {traced}: python -m bench.trace {traced}", flush=True)
            if plan.workload in ACCOUNTS:
                await check_books(target, run, ACCOUNTS[plan.workload])
            elif plan.workload == "read-your-writes":
                run.check_ok = run.stale == 0
                run.check = ("PASS (every read returned the value just written)" if run.check_ok
                             else f"FAIL: {run.stale} stale reads, e.g. {run.stale_example}")
        except NotInstalled as error:
            run.check_ok = False
            run.check = f"FAIL: not installed: {error}"
            print(f"   {run.check}", flush=True)
        except Exception as error:
            run.check_ok = False
            run.check = f"FAIL: the run broke: {type(error).__name__}: {error}"[:400]
            print(f"   {run.check}", flush=True)
            traceback.print_exc()
        finally:
            if target is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(target.close(), 30.0)
                if target.servers is not None:
                    dead = target.servers.dead()
                    codes = await asyncio.to_thread(target.servers.stop)
                    if not run.check_ok:
                        print(target.servers.log_tails(), flush=True)
                    if target.system == "ordo":
                        run.notes += target.servers.log_problems(
                            ("ERROR", "CRITICAL", "DETERMINISM"))
                    if args.keep_logs:
                        dest = Path(args.keep_logs) / f"{plan.workload}-{plan.label}-r{rep}"
                        dest.mkdir(parents=True, exist_ok=True)
                        for role in target.servers.roles:
                            with contextlib.suppress(OSError):
                                shutil.copy(target.servers.log_path(role), dest / f"{role}.log")
    run.load = (run.load[0], os.getloadavg()[0])
    if dead:
        run.check_ok = False
        run.notes.append("died during the run: " + ", ".join(dead))
    bad = [c for c in codes if c not in (0, -signal.SIGTERM, -signal.SIGINT)]
    if bad:
        run.notes.append(f"exit codes after the stop signal: {codes}")
    others = run.cpu.get("others", 0.0)
    if others >= 20:
        run.notes.append(f"other processes used {others:.0f}% of a core in the window: "
                         + "; ".join(run.top_others))
    if run.split_ms[0]:
        print(f"   write p50 {percentile(run.split_ms[0], .5):.1f} ms, read p50 "
              f"{percentile(run.split_ms[1], .5):.1f} ms", flush=True)
    print(f"   {run.ops_per_s:,.0f} ops/s, p50 {percentile(run.latencies_ms, 0.5):.1f} ms, "
          f"p99 {percentile(run.latencies_ms, 0.99):.1f} ms, retries {run.retries}, "
          f"errors {sum(run.errors.values())}, client {run.cpu.get('client', 0):.0f}% "
          f"server {run.cpu.get('server', 0):.0f}% others {others:.0f}%; {run.check}",
          flush=True)
    return run


# ------------------------------------------------------------------ report


@dataclass
class Cell:
    """The repetitions of one (workload, label), pooled."""

    workload: str
    label: str
    runs: list[Run]
    latencies_ms: list[float]

    @property
    def ops(self) -> float:
        return sum(r.ops_per_s for r in self.runs) / len(self.runs)

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def retries_per_op(self) -> float:
        committed = sum(r.committed for r in self.runs)
        return sum(r.retries for r in self.runs) / committed if committed else math.nan

    def cpu(self, key: str) -> float:
        vals = [r.cpu[key] for r in self.runs if key in r.cpu]
        return sum(vals) / len(vals) if vals else math.nan

    @property
    def errors(self) -> int:
        return sum(sum(r.errors.values()) for r in self.runs)

    @property
    def check(self) -> str:
        if any(not r.check_ok for r in self.runs):
            return "FAIL"
        return "PASS" if any(r.check.startswith("PASS") for r in self.runs) else "-"


def cells_of(runs: list[Run]) -> list[Cell]:
    grouped: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        grouped.setdefault((r.workload, r.label), []).append(r)
    order = {w: i for i, w in enumerate(WORKLOADS)}
    out = []
    for (w, label), rs in grouped.items():
        pooled = sorted(x for r in rs for x in r.latencies_ms)
        out.append(Cell(w, label, rs, pooled))
    out.sort(key=lambda c: (order.get(c.workload, 99), _label_rank(c.label)))
    return out


def _label_rank(label: str) -> tuple[int, str]:
    for i, prefix in enumerate(("ordo-", "etcd", "pg-", "postgres", "redis")):
        if label.startswith(prefix):
            return (i + (5 if "@" in label else 0), label)
    return (9, label)


def _fmt_ops(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def _fmt(x: float, digits: int = 1) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _ops_ratio(a: Cell, b: Cell | None) -> str:
    """The ratio of the means, and the ratio within each round (the systems of one round ran
    back to back, so a round's ratio is steadier than the absolute figures on a noisy host)."""
    if b is None:
        return "-"
    text = _ratio(a.ops, b.ops)
    rounds = {r.rep: r.ops_per_s for r in b.runs}
    per = [f"{r.ops_per_s / rounds[r.rep]:.2f}" for r in a.runs
           if rounds.get(r.rep)]
    if len(per) > 1:
        text += f" ({' / '.join(per)})"
    return text


def ratio_lines(cells: list[Cell]) -> list[str]:
    by = {(c.workload, c.label): c for c in cells}
    ordos = sorted({c.label for c in cells if c.label.startswith("ordo-") and "@" not in c.label})
    lines = [
        "| workload | ordo | ops/s vs etcd | ops/s vs PostgreSQL (best) | p50 vs etcd | "
        "p50 vs PostgreSQL | p99 vs etcd | p99 vs PostgreSQL |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in WORKLOADS:
        pgs = [c for c in cells if c.workload == w and (c.label.startswith("pg-")
                                                         or c.label == "postgres")]
        best_pg = max(pgs, key=lambda c: c.ops) if pgs else None
        etcd = by.get((w, "etcd"))
        for o in ordos:
            oc = by.get((w, o))
            if oc is None or (etcd is None and best_pg is None):
                continue
            nan = math.nan
            e50, e99 = (etcd.pct(.5), etcd.pct(.99)) if etcd else (nan,) * 2
            p50, p99 = (best_pg.pct(.5), best_pg.pct(.99)) if best_pg else (nan,) * 2
            pg_name = f" {best_pg.label}" if best_pg and best_pg.label != "postgres" else ""
            lines.append(
                f"| {w} | {o} | {_ops_ratio(oc, etcd)} | {_ops_ratio(oc, best_pg)}{pg_name} | "
                f"{_ratio(oc.pct(.5), e50)} | {_ratio(oc.pct(.5), p50)} | "
                f"{_ratio(oc.pct(.99), e99)} | {_ratio(oc.pct(.99), p99)} |")
    return lines


def overload_lines(cells: list[Cell], args: argparse.Namespace) -> list[str]:
    lines = []
    for s in args.overload_shard_list:
        base = next((c for c in cells if c.workload == "put" and c.label == f"ordo-{s}"), None)
        high = next((c for c in cells if c.workload == "put"
                     and c.label == f"ordo-{s}@{args.overload}"), None)
        if base is None or high is None:
            continue
        peak = max(base.ops, high.ops)
        ratio = high.ops / peak if peak else math.nan
        verdict = "PASS" if ratio >= 0.9 else "FAIL"
        per_rep = []
        for rb, rh in zip(base.runs, high.runs, strict=False):
            per_rep.append(f"{rh.ops_per_s / max(rb.ops_per_s, rh.ops_per_s, 1e-9):.2f}")
        lines.append(
            f"- ordo on {s} shard(s), `put`: {base.ops:,.0f} ops/s with {args.concurrency} "
            f"clients (p99 {base.pct(.99):.0f} ms), {high.ops:,.0f} ops/s with {args.overload} "
            f"(p99 {high.pct(.99):.0f} ms, errors {high.errors}, client CPU "
            f"{high.cpu('client'):.0f}%): {ratio:.2f} of the peak of the two "
            f"(per round: {', '.join(per_rep)}). Target: within 10% of the peak: "
            f"**{verdict}**.")
    return lines


def report(runs: list[Run], args: argparse.Namespace, command: str, loop: str,
           started: datetime.datetime, load: tuple[tuple[float, ...], tuple[float, ...]],
           plots: list[str], elapsed: float) -> str:
    cells = cells_of(runs)
    others = [r.cpu["others"] for r in runs if "others" in r.cpu]
    mean_others = sum(others) / len(others) if others else math.nan
    settings: dict[str, str] = {}
    for r in runs:
        if r.settings:
            settings.setdefault(r.label.split("@")[0], r.settings)
    lines = [
        f"# ordo vs etcd, PostgreSQL and Redis, {started.date().isoformat()}",
        "",
        f"- machine: {machine()}",
        f"- source: {source_tree()}",
        f"- servers: {server_versions(args)}",
        f"- command: `{command}` ({elapsed / 60:.1f} min)",
        f"- load: 1/5/15-min load average {load[0][0]:.1f}/{load[0][1]:.1f}/{load[0][2]:.1f} "
        f"at the start, {load[1][0]:.1f}/{load[1][1]:.1f}/{load[1][2]:.1f} at the end; other "
        f"processes used {mean_others:.0f}% of a core on average during the measured windows "
        f"(max {max(others, default=math.nan):.0f}%)",
        f"- method: {args.concurrency} closed-loop workers in one client process ({loop} event "
        f"loop), {args.warmup:g} s warm-up, {args.duration:g} s measured, {args.reps} round(s) "
        "with the systems interleaved (odd rounds in reverse), fresh servers with data in a "
        "temporary folder for every run; client and servers share the machine. ordo and etcd: "
        f"{args.clients} gRPC channels (ordo: AsyncClients) shared by the workers; "
        "PostgreSQL and Redis: one connection per worker. read-your-writes reads through a "
        "second set of connections.",
        "- durability: ordo, etcd and PostgreSQL acknowledge a write after an fsync "
        "(ordo defaults; etcd defaults; PostgreSQL fsync=on, synchronous_commit=on); Redis has "
        "no persistence at all (`--save '' --appendonly no`), a reference for the cost of "
        "the network and the client, not a peer.",
        "- settings: " + "; ".join(f"{k}: {v}" for k, v in settings.items()),
        "",
        "ops/s: committed operations per second of the window, mean of the rounds (each "
        "round in brackets); latency percentiles over every operation of every round "
        "(retries included); retries: per committed operation; CPU: % of one core, mean of "
        "the rounds (server: all its processes, PostgreSQL's backends included).",
        "",
        "| workload | system | ops/s | rounds | p50 ms | p99 ms | p999 ms | retries/op | "
        "client CPU | server CPU | errors | check |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        rounds = " / ".join(f"{r.ops_per_s:,.0f}" for r in c.runs)
        lines.append(
            f"| {c.workload} | {c.label} | {_fmt_ops(c.ops)} | {rounds} | {_fmt(c.pct(.5))} | "
            f"{_fmt(c.pct(.99))} | {_fmt(c.pct(.999))} | {_fmt(c.retries_per_op, 2)} | "
            f"{_fmt(c.cpu('client'), 0)} | {_fmt(c.cpu('server'), 0)} | {c.errors} | "
            f"{c.check} |")
    lines += ["", "Ratios, ordo / other (ops/s: above 1 ordo is faster; latency: below 1 ordo "
              "is faster), of the means and, in brackets, within each round. PostgreSQL "
              "(best): the variant with the most ops/s.", ""]
    lines += ratio_lines(cells)
    over = overload_lines(cells, args)
    if over:
        lines += ["", "Overload:", ""] + over
    if plots:
        lines += ["", "Plots: " + ", ".join(f"![{Path(p).stem}]({Path(p).name})" for p in plots)]
    lines += ["", "Details per run:", ""]
    for r in runs:
        d = (f"- {r.workload} / {r.label} round {r.rep + 1}: {r.committed:,} committed "
             f"({r.committed_total:,} with warm-up), {r.concurrency} workers")
        if r.rejected:
            d += f", {r.rejected} transfers rejected by the condition"
        if r.retries:
            d += f", {r.retries:,} retries"
        if r.errors:
            d += ", errors: " + ", ".join(f"{k} x{v}" for k, v in r.errors.most_common())
        if r.warmup_errors:
            d += ", warm-up errors: " + ", ".join(
                f"{k} x{v}" for k, v in r.warmup_errors.most_common())
        cpu = ", ".join(f"{k.removeprefix('server:')} {v:.0f}%" for k, v in r.cpu.items()
                        if k.startswith("server:"))
        if cpu and len([k for k in r.cpu if k.startswith("server:")]) > 1:
            d += f"; server CPU by process: {cpu}"
        d += (f"; machine {r.cpu.get('machine', math.nan):.0f}%, others "
              f"{r.cpu.get('others', math.nan):.0f}%, load {r.load[0]:.1f} -> {r.load[1]:.1f}")
        if r.split_ms[0]:
            w_, r_ = r.split_ms
            d += (f"; write p50 {percentile(w_, .5):.1f} / p99 {percentile(w_, .99):.1f} ms, "
                  f"read p50 {percentile(r_, .5):.1f} / p99 {percentile(r_, .99):.1f} ms")
        if r.check != "-":
            d += f"; check: {r.check}"
        seconds = [r.per_second[i] for i in range(int(math.ceil(r.duration_s)))]
        if seconds:
            d += "; committed per second: " + " ".join(str(n) for n in seconds)
        lines.append(d)
        lines += [f"  - {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def server_versions(args: argparse.Namespace) -> str:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return "?"
        return out.strip().splitlines()[0] if out.strip() else "?"

    parts = []
    if "etcd" in args.system_list:
        parts.append(first_line(["etcd", "--version"]).replace("etcd Version:", "etcd"))
    if "postgres" in args.system_list:
        parts.append(first_line([f"{systems.PG_BIN}/postgres", "--version"]))
    if "redis" in args.system_list:
        v = first_line(["redis-server", "--version"]).split()
        parts.append(" ".join(v[:3]) if v else "?")
    return ", ".join(parts) or "ordo only"


def make_plots(runs: list[Run], out_base: Path) -> list[str]:
    """Throughput per system and workload; latency CDFs per workload (matplotlib, Agg)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    cells = cells_of(runs)
    workloads = [w for w in WORKLOADS if any(c.workload == w for c in cells)]
    if not workloads:
        return []
    colours: dict[str, Any] = {}
    palette = plt.get_cmap("tab10")

    def colour(label: str) -> Any:
        if label not in colours:
            colours[label] = palette(len(colours) % 10)
        return colours[label]

    for c in cells:
        colour(c.label)
    written = []
    cols = min(2, len(workloads))
    rows = math.ceil(len(workloads) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax, w in zip(axes.flat, workloads, strict=False):
        cs = [c for c in cells if c.workload == w]
        xs = range(len(cs))
        ax.bar(xs, [c.ops for c in cs], color=[colour(c.label) for c in cs])
        for x, c in zip(xs, cs, strict=True):
            ax.scatter([x] * len(c.runs), [r.ops_per_s for r in c.runs], color="black", s=8,
                       zorder=3)
            ax.annotate(f"{c.ops:,.0f}", (x, c.ops), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(xs), [c.label for c in cs], rotation=30, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{w}: committed ops/s (log scale; dots: rounds)", fontsize=9)
    for ax in list(axes.flat)[len(workloads):]:
        ax.axis("off")
    fig.tight_layout()
    path = out_base.with_name(out_base.name + "-throughput.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))

    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax, w in zip(axes.flat, workloads, strict=False):
        for c in (c for c in cells if c.workload == w):
            lat = c.latencies_ms
            if not lat:
                continue
            step = max(1, len(lat) // 2000)
            xs = lat[::step] + [lat[-1]]
            ys = [min(1.0, (i * step + 1) / len(lat)) for i in range(len(xs) - 1)] + [1.0]
            ax.plot(xs, ys, label=c.label, color=colour(c.label), linewidth=1.2)
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log scale)", fontsize=8)
        ax.set_ylabel("fraction of operations", fontsize=8)
        ax.set_title(f"{w}: latency CDF", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(workloads):]:
        ax.axis("off")
    fig.tight_layout()
    path = out_base.with_name(out_base.name + "-latency.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))
    return written


# -------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run",
                                description=__doc__.split("\n")[0])
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help="comma list of ordo, etcd, postgres, redis, null (all); "
                        "--systems ordo is the ordo-only mode; null: bench.null_ordo, a "
                        "coordinator that answers every put at once, the ceiling of ordo's "
                        "client and transport")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help="comma list of " + ", ".join(WORKLOADS) + " (all)")
    p.add_argument("--shards", default="1,3,3x1,3g",
                   help="ordo shard counts, each N (a process per shard) or NxP (N shards "
                        "hosted by P processes), g at the end for every stream on gRPC "
                        "instead of the bus (1,3,3x1,3g)")
    p.add_argument("--pg-variants", default="serializable,serializable-ordered,read-committed",
                   help="PostgreSQL transfer variants: serializable (debit, then credit), "
                        "serializable-ordered (the two UPDATEs in account order), "
                        "read-committed (in account order) (all three)")
    p.add_argument("--null-fsync-linger-ms", type=float, default=None, metavar="MS",
                   help="system null group-commits each burst of puts to a file with "
                        "fdatasync, after lingering MS, before answering: the least a "
                        "durable coordinator could do (default: it answers at once)")
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop workers (32)")
    p.add_argument("--clients", type=int, default=4,
                   help="ordo AsyncClients / etcd gRPC channels shared by the workers (4)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    p.add_argument("--reps", type=int, default=2, help="rounds over everything (2)")
    p.add_argument("--quick", action="store_true",
                   help="1 s warm-up, 3 s measured, one round (unless given explicitly)")
    p.add_argument("--overload", type=int, default=1000,
                   help="also run ordo `put` with this many workers (1000; 0: skip)")
    p.add_argument("--overload-shards", default="1,3",
                   help="comma list of ordo shard counts to run the overload with (1,3), "
                        "those of them that --shards runs: each is compared with that run")
    p.add_argument("--op-timeout", type=float, default=10.0,
                   help="client timeout per operation, retries included, seconds (10)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--base-port", type=int, default=7600,
                   help="first port tried; run k tries from base + 10k (7600)")
    p.add_argument("--output", default=None,
                   help="markdown file to write (bench/results/<date>.md); the PNGs go "
                        "beside it")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--keep-logs", default=None, help="copy the server logs to this folder")
    p.add_argument("--profile", default=None,
                   help="py-spy record the client and ordo's services during ordo's windows "
                        "into this folder (do not quote figures from a profiled run)")
    p.add_argument("--trace", default=None, metavar="DIR",
                   help="record stage timestamps of sampled ordo transactions (ordo.trace) "
                        "into a folder per run under DIR; python -m bench.trace reads one "
                        "(do not quote throughput from a traced run)")
    p.add_argument("--trace-sample", type=int, default=16, metavar="N",
                   help="with --trace: one request id in N (16)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each run wait up to S seconds for the machine to be idle")
    p.add_argument("--no-uvloop", action="store_true", help="client on the asyncio loop")
    raw = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in raw}
        if "--warmup" not in given:
            args.warmup = 1.0
        if "--duration" not in given:
            args.duration = 3.0
        if "--reps" not in given:
            args.reps = 1
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.workload_list = [w.strip() for w in args.workloads.split(",") if w.strip()]
    try:
        args.shard_counts = [_shard_spec(s) for s in args.shards.split(",") if s.strip()]
    except ValueError:
        p.error("--shards takes shard counts, each N (one process per shard) or NxP "
                "(N shards in P processes, P dividing N), then g for every stream "
                "on gRPC instead of the bus")
    try:
        wanted = list(dict.fromkeys(
            int(s) for s in args.overload_shards.split(",") if s.strip()))
    except ValueError:
        p.error("--overload-shards takes a comma list of shard counts")
    if any(s < 1 for s in wanted):
        p.error("--overload-shards takes positive shard counts")
    # Only counts with a run at --concurrency to compare the overload with.
    args.overload_shard_list = [s for s in wanted if (s, 1, True) in args.shard_counts]
    if args.overload and "ordo" in args.system_list:
        for s in wanted:
            if s not in args.overload_shard_list:
                print(f"note: no overload run on {s} shard(s): --shards runs no ordo-{s} "
                      "to compare it with", file=sys.stderr)
    if args.trace:
        # The services run in their data folders: give them an absolute path.
        args.trace = os.path.abspath(args.trace)
        if os.path.isdir(args.trace) and os.listdir(args.trace):
            p.error(f"--trace {args.trace} is not empty: a run's folder would mix two runs")
    args.pg_variant_list = [v.strip() for v in args.pg_variants.split(",") if v.strip()]
    for v in args.pg_variant_list:
        if v not in systems.PG_VARIANTS:
            p.error(f"unknown PostgreSQL variant {v!r}")
    for s in args.system_list:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}")
    for w in args.workload_list:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}")
    if "ordo" in args.system_list and not args.shard_counts:
        p.error("--shards needs positive shard counts")
    if (args.concurrency < 1 or args.clients < 1 or args.duration <= 0 or args.warmup < 0
            or args.reps < 1 or args.overload < 0 or args.trace_sample < 1):
        p.error("--concurrency, --clients, --reps, --trace-sample >= 1, --duration > 0, "
                "--warmup >= 0")
    if args.concurrency > PUT_KEYS:
        p.error(f"--concurrency is at most {PUT_KEYS}")
    return args


async def amain(args: argparse.Namespace) -> list[Run]:
    runs = []
    plan = schedule(args)
    for index, (rep, cell) in enumerate(plan):
        runs.append(await run_one(cell, rep, index, args))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join([".venv/bin/python -m bench.run",
                        *(sys.argv[1:] if argv is None else argv)])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    started = datetime.datetime.now()
    load0 = os.getloadavg()
    t0 = time.monotonic()
    n = len(schedule(args))
    print(f"{n} runs of {args.warmup:g} + {args.duration:g} s; load average "
          f"{load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}", flush=True)
    loop = "asyncio"
    if not args.no_uvloop:
        try:
            import uvloop

            loop = "uvloop"
        except ImportError:
            pass
    try:
        if loop == "uvloop":
            runs = uvloop.run(amain(args))
        else:
            runs = asyncio.run(amain(args))
    finally:
        systems.kill_leftovers()
    elapsed = time.monotonic() - t0
    out = Path(args.output) if args.output else RESULTS_DIR / f"{started.date().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = [] if args.no_plots else make_plots(runs, out.with_suffix(""))
    text = report(runs, args, command, loop, started, (load0, os.getloadavg()), plots, elapsed)
    print()
    print(text)
    out.write_text(text)
    print(f"written to {out}" + (f" and {', '.join(plots)}" if plots else ""))
    return 0 if all(r.check_ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
