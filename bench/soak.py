"""Soak benchmarks for backpressure and retention (not part of `make test`).

``python -m bench.soak overload``: measures the sustainable put rate (the best
of 32, 256 and 1,024 closed-loop workers), then offers that rate open-loop for
20 s and twice that rate for 60 s, and reports whether throughput holds, how
many submits were refused with RESOURCE_EXHAUSTED (and retried), and the peak
RSS of the coordinator and of each shard, sampled from /proc every 0.5 s. The
load comes from ``--generators`` client processes (2 by default): one Python
process cannot generate open-loop arrivals as fast as the cluster takes
closed-loop ones.

``python -m bench.soak retention``: overwrites 10,000 keys for 10 minutes on
a cluster that keeps 20,000 positions of history, and reports the size of
every data directory at the start and at the end: with compaction it stays
flat.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import ordo
from bench.systems import process_ticks, service_env
from ordo.cli import dev_commands, wait_serving


@contextmanager
def cluster(
    shards: int, port: int, extra: list[str]
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], str]]:
    with tempfile.TemporaryDirectory(prefix="ordo-soak-") as data:
        procs = []
        for i, cmd in enumerate(dev_commands(shards, data, "127.0.0.1", port, extra)):
            log = open(os.path.join(data, f"proc-{i}.log"), "ab")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, env=service_env()))
        try:
            addresses = [f"127.0.0.1:{port + i}" for i in range(shards + 1)]
            if not wait_serving(addresses, 60):
                raise SystemExit("cluster did not start")
            yield addresses[0], procs, data
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads included (0 once gone)."""
    return (process_ticks(pid) or 0) / os.sysconf("SC_CLK_TCK")


def du_mb(path: str) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return total / 1e6


async def closed_loop(
    address: str, seconds: float, workers: int,
    op: Callable[[ordo.AsyncClient, random.Random], Awaitable[int]] | None = None,
) -> int:
    """Writes committed by ``workers`` closed-loop workers in ``seconds``;
    ``op`` makes one transaction and returns its writes (default: a put)."""
    done = 0
    stop = time.monotonic() + seconds
    async with ordo.connect(address, timeout=30) as db:
        async def worker(i: int) -> None:
            nonlocal done
            rng = random.Random(i)
            while time.monotonic() < stop:
                writes = await (op or _put)(db, rng)
                done += writes  # not `done += await`: that reads `done` before the await

        await asyncio.gather(*(worker(i) for i in range(workers)))
    return done


async def _put(db: ordo.AsyncClient, rng: random.Random) -> int:
    await db.put(f"k{rng.randrange(100_000)}", PAYLOAD)
    return 1


PAYLOAD = b"x" * 100


async def open_loop(address: str, rate: float, seconds: float, seed: int) -> dict[str, int]:
    """Offer ``rate`` puts per second whatever the answers: an arrival every
    1/rate s is handed to a free worker of a pool of ``INFLIGHT_MAX``. When
    every worker is busy, arrivals are dropped (counted), as a load balancer
    in front of a service would shed them. The pool keeps the generator
    cheap: a task per arrival would cost the client more CPU than the puts."""
    counts = {"committed": 0, "refused": 0, "failed": 0, "dropped": 0}
    arrivals: asyncio.Queue[str] = asyncio.Queue()
    busy = 0
    async with ordo.connect(address, timeout=10) as db:
        async def worker() -> None:
            nonlocal busy
            while True:
                key = await arrivals.get()
                try:
                    await db.put(key, PAYLOAD)
                    counts["committed"] += 1
                except ordo.ResourceExhausted:
                    counts["refused"] += 1
                except ordo.OrdoError:
                    counts["failed"] += 1
                finally:
                    busy -= 1

        workers = [asyncio.create_task(worker()) for _ in range(INFLIGHT_MAX)]
        start = time.monotonic()
        sent = 0
        rng = random.Random(seed)
        while time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * rate)
            while sent < due:
                sent += 1
                if busy >= INFLIGHT_MAX:
                    counts["dropped"] += 1
                    continue
                busy += 1
                arrivals.put_nowait(f"k{rng.randrange(100_000)}")
            await asyncio.sleep(0.005)
        while busy:
            await asyncio.sleep(0.05)
        for task in workers:
            task.cancel()
    return counts


INFLIGHT_MAX = 10_000  # per generator process: past it, its offered load is dropped


def _in_process(kind: str, address: str, amount: float, seconds: float, seed: int) -> object:
    """Run one generator in this (child) process."""
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    if kind == "closed":
        return run(closed_loop(address, seconds, int(amount)))
    return run(open_loop(address, amount, seconds, seed))


def generate(kind: str, address: str, amount: float, seconds: float, processes: int,
             procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """Drive the cluster from ``processes`` client processes at once
    (``amount``: closed-loop workers, or offered puts per second, split
    evenly), sampling the services' RSS and everyone's CPU meanwhile."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
    tail_start = asyncio.run(_tail(address))
    cpu_start = {p.pid: cpu_seconds(p.pid) for p in procs}
    peaks = {p.pid: 0.0 for p in procs}
    started = time.monotonic()
    with context.Pool(processes) as pool:
        pending = pool.starmap_async(_in_process, [
            (kind, address, amount / processes, seconds, 7 + i) for i in range(processes)
        ])
        generators = [child.pid for child in multiprocessing.active_children()]
        cpu_first = {pid: cpu_seconds(pid) for pid in generators}
        cpu_last = dict(cpu_first)
        while not pending.ready():
            for p in procs:
                peaks[p.pid] = max(peaks[p.pid], rss_mb(p.pid))
            for pid in generators:
                cpu_last[pid] = max(cpu_last[pid], cpu_seconds(pid))
            pending.wait(0.5)
        results = pending.get()
    elapsed = time.monotonic() - started
    tail_end = asyncio.run(_tail(address))
    window = min(elapsed, seconds + 1.0)
    out: dict[str, float] = {
        # Server side: positions the log advanced per second (every put is
        # one position; submits whose client gave up count too).
        "logged_per_s": (tail_end - tail_start) / elapsed,
        "cpu_percent_coordinator": 100 * (cpu_seconds(procs[0].pid) - cpu_start[procs[0].pid])
        / window,
        "cpu_percent_shards": sum(100 * (cpu_seconds(p.pid) - cpu_start[p.pid])
                                  for p in procs[1:]) / window,
        "cpu_percent_generators": sum(100 * (cpu_last[pid] - cpu_first[pid])
                                      for pid in generators) / window,
        "generator_processes": processes,
    }
    if kind == "closed":
        out["committed_per_s"] = sum(int(r) for r in results) / seconds  # type: ignore[call-overload]
    else:
        for key in ("committed", "refused", "failed", "dropped"):
            out[key] = sum(r[key] for r in results)  # type: ignore[index]
        out["offered_per_s"] = amount
    for i, p in enumerate(procs):
        out[f"peak_rss_mb_{'coordinator' if i == 0 else f'shard{i - 1}'}"] = peaks[p.pid]
    return out


async def _tail(address: str) -> int:
    async with ordo.connect(address, timeout=10) as db:
        return await db.tail()


def overload(args: argparse.Namespace) -> None:
    with cluster(args.shards, args.port, []) as (address, procs, _):
        # The most it commits with closed-loop clients, whatever their number.
        rates = {w: generate("closed", address, w, 8, args.generators, procs)["committed_per_s"]
                 for w in (32, 256, 1024)}
        sustainable = max(rates.values())
        print("closed loop: " + ", ".join(f"{w} workers {r:,.0f}/s" for w, r in rates.items()))
        print(f"sustainable: {sustainable:,.0f} puts/s", flush=True)
        runs = {}
        for factor, seconds in ((1, min(20.0, args.seconds)), (2, args.seconds)):
            runs[factor] = generate("open", address, factor * sustainable, seconds,
                                    args.generators, procs)
            print(f"offered {factor}x for {seconds:.0f} s: " + ", ".join(
                f"{k} {v:,.1f}" for k, v in runs[factor].items()), flush=True)
    held = runs[2]["logged_per_s"] / sustainable
    print(f"throughput under 2x offered load / sustainable: {held:.2f}")
    print("throughput under 2x offered load / under 1x, same generators: "
          f"{runs[2]['logged_per_s'] / runs[1]['logged_per_s']:.2f}")


async def overwrite(address: str, seconds: float, keys: int) -> int:
    async def eight_puts(db: ordo.AsyncClient, rng: random.Random) -> int:
        await db.txn(then=[ordo.put(f"key:{rng.randrange(keys)}", b"v" * 100) for _ in range(8)])
        return 8

    return await closed_loop(address, seconds, 32, eight_puts)


def retention(args: argparse.Namespace) -> None:
    extra = ["--retain-positions", "20000", "--retain-seconds", "0", "--compact-interval-s", "5"]
    with cluster(args.shards, args.port, extra) as (address, _, data):
        asyncio.run(overwrite(address, 30, 10_000))  # every key written, history building up
        dirs = sorted(d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d)))
        start = {d: du_mb(os.path.join(data, d)) for d in dirs}
        print("after 30 s:", ", ".join(f"{d} {mb:.1f} MB" for d, mb in start.items()), flush=True)
        writes = 0
        left = args.seconds
        while left > 0:  # a size sample every minute: flat means flat throughout
            step = min(60.0, left)
            writes += asyncio.run(overwrite(address, step, 10_000))
            left -= step
            sizes = {d: du_mb(os.path.join(data, d)) for d in dirs}
            print(f"after {args.seconds - left + 30:.0f} s: total {sum(sizes.values()):.1f} MB "
                  f"({', '.join(f'{d} {mb:.1f}' for d, mb in sizes.items())})", flush=True)
        end = {d: du_mb(os.path.join(data, d)) for d in dirs}
        print(f"{writes:,} overwrites in {args.seconds:.0f} s")
        print("at the end: ", ", ".join(f"{d} {mb:.1f} MB" for d, mb in end.items()))
        print(f"total: {sum(start.values()):.1f} MB -> {sum(end.values()):.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["overload", "retention"])
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--generators", type=int, default=2,
                        help="overload: client processes that generate the load")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 60.0 if args.mode == "overload" else 600.0
    (overload if args.mode == "overload" else retention)(args)


if __name__ == "__main__":
    sys.exit(main())
