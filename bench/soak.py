"""Soak benchmarks for backpressure and retention (not part of `make test`).

``python -m bench.soak overload``: measures the sustainable put rate (the best of
32, 256 and 1,024 closed-loop workers), then offers twice that rate open-loop for 60 s and
reports whether throughput holds, how many submits were refused with
RESOURCE_EXHAUSTED (and retried), and the peak RSS of the coordinator and of
each shard, sampled from /proc every 0.5 s.

``python -m bench.soak retention``: overwrites 10,000 keys for 10 minutes on
a cluster that keeps 20,000 positions of history, and reports the size of
every data directory at the start and at the end: with compaction it stays
flat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import ordo
from ordo.cli import dev_commands, wait_serving


@contextmanager
def cluster(shards: int, port: int, extra: list[str]) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], str]]:
    with tempfile.TemporaryDirectory(prefix="ordo-soak-") as data:
        procs = []
        for i, cmd in enumerate(dev_commands(shards, data, "127.0.0.1", port, extra)):
            log = open(os.path.join(data, f"proc-{i}.log"), "ab")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=log))
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
    """User + system CPU time of a process, its threads included."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def du_mb(path: str) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return total / 1e6


async def closed_loop(address: str, seconds: float, workers: int) -> float:
    payload = b"x" * 100
    done = 0
    stop = time.monotonic() + seconds
    async with ordo.connect(address, timeout=30) as db:
        async def worker(i: int) -> None:
            nonlocal done
            rng = random.Random(i)
            while time.monotonic() < stop:
                await db.put(f"k{rng.randrange(100_000)}", payload)
                done += 1

        await asyncio.gather(*(worker(i) for i in range(workers)))
    return done / seconds


async def open_loop(address: str, rate: float, seconds: float, procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """Offer ``rate`` puts per second whatever the answers: an arrival every
    1/rate s is handed to a free worker of a pool of ``inflight_max``. When
    every worker is busy, arrivals are dropped (counted), as a load balancer
    in front of a service would shed them. The pool keeps the generator
    cheap: a task per arrival would cost the client more CPU than the puts."""
    payload = b"x" * 100
    committed = refused = failed = 0
    peaks = [0.0] * len(procs)
    per_second: list[int] = []
    inflight_max = 20_000  # the generator's own bound: past it, offered load is dropped
    dropped = 0
    arrivals: asyncio.Queue[str] = asyncio.Queue()
    async with ordo.connect(address, timeout=10) as db:
        async def worker() -> None:
            nonlocal committed, refused, failed
            while True:
                key = await arrivals.get()
                try:
                    await db.put(key, payload)
                    committed += 1
                except ordo.ResourceExhausted:
                    refused += 1
                except ordo.OrdoError:
                    failed += 1
                finally:
                    busy[0] -= 1

        async def sample() -> None:
            last = 0
            while True:
                await asyncio.sleep(0.5)
                for i, p in enumerate(procs):
                    peaks[i] = max(peaks[i], rss_mb(p.pid))
                per_second.append(committed - last)
                last = committed

        busy = [0]
        workers = [asyncio.create_task(worker()) for _ in range(inflight_max)]
        sampler = asyncio.create_task(sample())
        cpu_start = [cpu_seconds(p.pid) for p in procs] + [cpu_seconds(os.getpid())]
        tail_start = await db.tail()
        start = time.monotonic()
        sent = 0
        rng = random.Random(7)
        while time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * rate)
            while sent < due:
                sent += 1
                if busy[0] >= inflight_max:
                    dropped += 1
                    continue
                busy[0] += 1
                arrivals.put_nowait(f"k{rng.randrange(100_000)}")
            await asyncio.sleep(0.005)
        tail_end = await db.tail()
        elapsed = time.monotonic() - start
        logged_per_s = (tail_end - tail_start) / elapsed
        cpu_end = [cpu_seconds(p.pid) for p in procs] + [cpu_seconds(os.getpid())]
        cpu_pct = [100 * (b - a) / elapsed for a, b in zip(cpu_start, cpu_end)]
        while busy[0]:
            await asyncio.sleep(0.05)
        for task in workers:
            task.cancel()
        sampler.cancel()
    steady = sorted(2 * x for x in per_second[4:])  # per 0.5 s -> per second
    return {
        "offered_per_s": rate,
        "committed_per_s": committed / seconds,
        # Server side: positions the log advanced per second while offered
        # load ran (includes submits whose client gave up after logging).
        "logged_per_s": logged_per_s,
        "median_committed_per_s": steady[len(steady) // 2] if steady else 0.0,
        "committed_per_half_second": per_second,
        "refused": refused,
        "failed": failed,
        "dropped_by_generator": dropped,
        "cpu_percent_servers": sum(cpu_pct[:-1]),
        "cpu_percent_client": cpu_pct[-1],
        **{f"peak_rss_mb_{'coordinator' if i == 0 else f'shard{i - 1}'}": peaks[i]
           for i in range(len(procs))},
    }


def overload(args: argparse.Namespace) -> None:
    with cluster(args.shards, args.port, []) as (address, procs, _):
        # The most it commits with closed-loop clients, whatever their number.
        rates = {w: asyncio.run(closed_loop(address, 8, w)) for w in (32, 256, 1024)}
        sustainable = max(rates.values())
        print("closed loop: " + ", ".join(f"{w} workers {r:,.0f}/s" for w, r in rates.items()))
        print(f"sustainable: {sustainable:,.0f} puts/s", flush=True)
        result = asyncio.run(open_loop(address, 2 * sustainable, args.seconds, procs))
    for key, value in result.items():
        print(f"{key}: {value:,.1f}" if isinstance(value, float | int) else f"{key}: {value}")
    held = result["logged_per_s"] / sustainable
    print(f"throughput under 2x offered load / sustainable: {held:.2f}")


async def overwrite(address: str, seconds: float, keys: int) -> int:
    payload = b"v" * 100
    done = 0
    stop = time.monotonic() + seconds
    async with ordo.connect(address, timeout=30) as db:
        async def worker(i: int) -> None:
            nonlocal done
            rng = random.Random(i)
            while time.monotonic() < stop:
                await db.txn(then=[ordo.put(f"key:{rng.randrange(keys)}", payload)
                                   for _ in range(8)])
                done += 8
        await asyncio.gather(*(worker(i) for i in range(32)))
    return done


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
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 60.0 if args.mode == "overload" else 600.0
    (overload if args.mode == "overload" else retention)(args)


if __name__ == "__main__":
    sys.exit(main())
