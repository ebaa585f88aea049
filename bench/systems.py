"""The systems that ``bench/run.py`` compares, behind one small interface.

Each :class:`Target` starts its own server processes on 127.0.0.1 with data
under a folder the caller owns (a temporary one), opens its client
connections, and offers the three operations of the workloads: ``put``,
``transfer`` and ``write_read``, plus the account set-up and a read of every
balance for the check. Every server acknowledges a write only after an fsync
(ordo: sequencer log and shards; etcd: its WAL, the default; PostgreSQL:
``fsync=on``, ``synchronous_commit=on``), except Redis, the non-durable
reference (no RDB, no AOF).

Server processes are started through ``setpriv --pdeathsig KILL`` where it
exists, so they die with the harness even if it is killed with SIGKILL, and
they are stopped by :meth:`Servers.stop` at the end of every run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import importlib.util
import math
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

import ordo
from ordo import rpc as ordo_rpc
from ordo.cli import dev_commands, wait_serving

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
INITIAL_BALANCE = 1_000_000
SETUP_PARALLEL = 16
READ_CHUNK = 500
HERE = Path(__file__).resolve().parent

PG_BIN = os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_USER = "postgres"  # the OS user PostgreSQL runs as when the harness is root


class NotInstalled(RuntimeError):
    """A server binary or client library is missing (bench/install.sh, the bench extra)."""


def account_key(i: int) -> str:
    return f"acct:{i}"


# --------------------------------------------------------------- processes


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_ticks(pid: int | str) -> int | None:
    """User + system clock ticks of a process, threads included; None if gone."""
    fields = stat_fields(pid)
    try:
        return None if fields is None else int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return None


def proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, user+system clock ticks with threads, short command line), from /proc."""
    out: dict[int, tuple[int, int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        if fields is None:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
                # Program names only: a report names no path of the machine.
                name = " ".join(os.path.basename(a) if a.startswith("/") else a
                                for a in args).strip()
        except (OSError, IndexError):
            continue
        try:
            out[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                               name[:90] or "?")
        except (IndexError, ValueError):
            continue
    return out


def descendants(table: dict[int, tuple[int, int, str]], root: int) -> set[int]:
    """``root`` and every process below it (PostgreSQL's backends, say)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo += children.get(pid, [])
    return found & (set(table) | {root})


_LIVE: list[subprocess.Popen[bytes]] = []


def kill_leftovers() -> None:
    """SIGKILL every server process still running (the harness is on its way out)."""
    for p in _LIVE:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.kill()


ROOT = str(Path(__file__).resolve().parent.parent)


def service_env() -> dict[str, str]:
    """The environment of the services a benchmark starts: this source tree
    first on the import path, so that they run the code the report names
    (from a second work tree too, not whichever ordo is installed), and the
    caller's ORDO_* settings left out, so every run measures the same
    configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDO_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return env


@dataclass
class Servers:
    """The server processes of one run, each with a log file in the data folder."""

    data: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    stop_signals: list[int] = field(default_factory=list)
    stopped_at: float = math.inf

    def log_path(self, role: str) -> str:
        return os.path.join(self.data, f"{role}.log")

    def spawn(self, role: str, cmd: list[str], *, user: str | None = None,
              env: dict[str, str] | None = None, stop_signal: int = signal.SIGTERM) -> None:
        """Start ``cmd`` (from the calling thread: the parent-death signal is tied to it)."""
        cmd = _as_user(cmd, user, pdeathsig=True)
        with open(self.log_path(role), "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=self.data)
        self.procs.append(proc)
        self.roles.append(role)
        self.stop_signals.append(stop_signal)
        _LIVE.append(proc)

    def pids(self) -> set[int]:
        table = proc_table()
        out: set[int] = set()
        for p in self.procs:
            out |= descendants(table, p.pid)
        return out

    def cpu_ticks(self, table: dict[int, tuple[int, int, str]]) -> dict[str, int]:
        """user+system ticks of each role's process tree."""
        out: dict[str, int] = {}
        for role, p in zip(self.roles, self.procs, strict=True):
            if p.pid in table:
                out[role] = sum(table[q][1] for q in descendants(table, p.pid) if q in table)
        return out

    def dead(self) -> list[str]:
        return [f"{role} exited with {p.returncode}"
                for role, p in zip(self.roles, self.procs, strict=True) if p.poll() is not None]

    def stop(self) -> list[int]:
        """Each process its stop signal, last started first; SIGKILL after a timeout."""
        self.stopped_at = time.time()
        for p, sig in zip(reversed(self.procs), reversed(self.stop_signals), strict=True):
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.send_signal(sig)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=STOP_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes

    def log_tails(self, lines: int = 15) -> str:
        parts = []
        for role in self.roles:
            try:
                with open(self.log_path(role), errors="replace") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {role}.log (last {len(tail)} lines)\n" + "".join(tail))
        return "\n".join(parts)

    def log_problems(self, marks: tuple[str, ...], limit: int = 4) -> list[str]:
        """Log lines with one of ``marks``; those logged after stop() began apart (ordo's
        text log format, ``2026-01-02 03:04:05,678 LEVEL ...``)."""
        running: list[str] = []
        stopping: list[str] = []
        trace: list[str] = []  # the lines after the first problem while running
        for role in self.roles:
            when = 0.0
            following = False
            with contextlib.suppress(OSError), open(self.log_path(role), errors="replace") as f:
                for line in f:
                    stamped = False
                    with contextlib.suppress(ValueError):
                        when = datetime.datetime.strptime(
                            line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                        stamped = True
                    if following and not stamped and len(trace) < 25:
                        trace.append(line.rstrip()[:200])
                        continue
                    following = False
                    if any(m in line for m in marks):
                        in_run = when < self.stopped_at
                        (running if in_run else stopping).append(
                            f"{role}: {line.rstrip()}"[:300])
                        following = in_run and not trace
        if trace:
            running.insert(1, "its traceback: " + " | ".join(x.strip() for x in trace))
        out = running[:limit]
        if len(running) > limit:
            out.append(f"... {len(running) - limit} more while running")
        if stopping:
            out.append(f"while stopping ({len(stopping)}): {stopping[0]}")
        return out


def _as_user(cmd: list[str], user: str | None, pdeathsig: bool) -> list[str]:
    setpriv = shutil.which("setpriv")
    prefix: list[str] = []
    if setpriv and pdeathsig:
        prefix = [setpriv, "--pdeathsig", "KILL"]
    if user is not None and os.geteuid() == 0:
        if not setpriv:
            return ["runuser", "-u", user, "--", *cmd]
        prefix = (prefix or [setpriv]) + ["--reuid", user, "--regid", user, "--init-groups"]
    return [*prefix, "--", *cmd] if prefix else cmd


def _which(name: str, *fallbacks: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for f in fallbacks:
        if os.access(f, os.X_OK):
            return f
    raise NotInstalled(f"{name} not found: run bench/install.sh")


async def _poll(ready: Any, what: str, servers: Servers, timeout: float = START_TIMEOUT_S) -> None:
    """Await ``ready()`` until it returns without raising, or fail with the logs."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if servers.dead():
            break
        try:
            await ready()
            return
        except Exception as error:  # not up yet
            last = error
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} did not start ({', '.join(servers.dead()) or last}):\n"
                       + servers.log_tails())


# ------------------------------------------------------------------ target


class Target:
    """One system in one configuration; a fresh instance per run."""

    system = "?"
    label = "?"
    ports = 1  # ports needed from the base port
    profile_ok = False  # py-spy can profile its servers (Python processes)
    traceable = False  # its client and servers write ordo.trace stages

    trace_dir: str | None = None  # set before start(): the run's --trace folder

    def __init__(self, args: Any) -> None:
        self.args = args
        self.timeout: float = args.op_timeout
        self.servers: Servers | None = None

    # lifecycle
    async def start(self, data: str, port: int) -> None:
        raise NotImplementedError

    async def connect(self, workers: int, readers: bool) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    def settings(self) -> str:
        """The server's durability settings, for the report."""
        return ""

    # workloads
    async def setup_accounts(self, n: int) -> None:
        raise NotImplementedError

    async def put(self, w: int, key: str, value: bytes) -> None:
        raise NotImplementedError

    async def transfer(self, w: int, a: int, b: int) -> tuple[bool, int]:
        """Move 1 from a to b if balance(a) >= 1, atomically: (committed, retries)."""
        raise NotImplementedError

    async def ryw_write(self, w: int, key: str, value: bytes) -> Any:
        """read-your-writes, first half: commit ``key = value``; returns what the read needs."""
        raise NotImplementedError

    async def ryw_read(self, w: int, key: str, token: Any) -> Any:
        """read-your-writes, second half: read ``key`` on another connection."""
        raise NotImplementedError

    async def balances(self, n: int) -> list[Any]:
        """Every account's balance once the writers have stopped (None if missing)."""
        raise NotImplementedError

    async def resolve_unknown(self) -> tuple[collections.Counter[int], int,
                                             collections.Counter[str]] | None:
        """For transfers that ended in an error: (their deltas, still unknown, fates), if the
        system can tell what became of them; None otherwise."""
        return None


def _deadline_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("operation timeout (retries included)")
    return left


# -------------------------------------------------------------------- ordo


def ordo_label(shards: int, per_process: int = 1, bus: bool = True) -> str:
    """``ordo-3``: a process per shard; ``ordo-3x1``: three shards in one process;
    ``-grpc`` at the end: every stream on gRPC instead of the bus."""
    label = f"ordo-{shards}" if per_process == 1 else f"ordo-{shards}x{shards // per_process}"
    return label if bus else label + "-grpc"


def shard_roles(shards: int, per_process: int = 1) -> list[str]:
    """The role of each shard process, in the order ``dev_commands`` starts them."""
    per = max(1, per_process)
    return [f"shard-{i}" if min(shards, i + per) == i + 1
            else f"shards-{i}-{min(shards, i + per) - 1}" for i in range(0, shards, per)]


class OrdoTarget(Target):
    system = "ordo"
    profile_ok = True
    traceable = True

    def __init__(self, args: Any, shards: int, per_process: int = 1, bus: bool = True) -> None:
        super().__init__(args)
        self.shards = shards
        self.per_process = per_process
        self.bus = bus
        self.label = ordo_label(shards, per_process, bus)
        self.ports = 2 * (shards + 1)  # gRPC ports, then bus ports
        self.writers: list[ordo.AsyncClient] = []
        self.readers: list[ordo.AsyncClient] = []
        self.unknown: list[tuple[str, int, int]] = []
        self.address = ""

    def settings(self) -> str:
        hosting = ("" if self.per_process == 1 else
                   f" in {self.shards // self.per_process} shard process(es), {self.per_process} "
                   "each (co-located shards read each other's inputs directly)")
        transport = ("internal and client streams on the bus" if self.bus else
                     "every stream on gRPC (--bus-port-offset 0)")
        return (f"{self.shards} shard(s){hosting}, {transport}, default settings (the "
                "coordinator fsyncs each sequencer batch before answering; shards fsync their "
                "applied batches)")

    async def start(self, data: str, port: int) -> None:
        self.servers = servers = Servers(data)
        per = self.per_process
        cmds = dev_commands(self.shards, data, HOST, port, shards_per_process=per,
                            bus_port_offset=None if self.bus else 0)
        if self.trace_dir:
            flags = ["--trace-dir", self.trace_dir, "--trace-sample", str(self.args.trace_sample)]
            cmds = [cmd + flags for cmd in cmds]
        env = service_env()
        roles = ["coordinator"] + shard_roles(self.shards, per)
        for role, cmd in zip(roles, cmds, strict=True):
            servers.spawn(role, cmd, env=env)
        self.address = f"{HOST}:{port}"
        addresses = [f"{HOST}:{port + i}" for i in range(self.shards + 1)]
        if not await asyncio.to_thread(wait_serving, addresses, START_TIMEOUT_S):
            raise RuntimeError("ordo did not start serving:\n" + servers.log_tails())

    async def connect(self, workers: int, readers: bool) -> None:
        n = max(1, min(self.args.clients, workers))
        self.writers = [ordo.connect(self.address, timeout=self.timeout) for _ in range(n)]
        if readers:
            self.readers = [ordo.connect(self.address, timeout=self.timeout) for _ in range(n)]
        for c in self.writers + self.readers:
            await c.connect()

    async def close(self) -> None:
        for c in self.writers + self.readers:
            with contextlib.suppress(Exception):
                await c.close()

    async def setup_accounts(self, n: int) -> None:
        gate = asyncio.Semaphore(SETUP_PARALLEL)
        db = self.writers[0]

        async def one(start: int) -> None:
            async with gate:
                then = [ordo.put(account_key(i), INITIAL_BALANCE)
                        for i in range(start, min(start + 100, n))]
                r = await db.txn(then=then, timeout=60.0)
                if not r.succeeded or r.aborted:
                    raise RuntimeError(f"account set-up failed at {start}: {r}")

        await asyncio.gather(*(one(s) for s in range(0, n, 100)))

    async def put(self, w: int, key: str, value: bytes) -> None:
        r = await self.writers[w % len(self.writers)].put(key, value, timeout=self.timeout)
        if r.aborted:
            raise RuntimeError(f"put aborted: {r.abort_reason}")

    async def transfer(self, w: int, a: int, b: int) -> tuple[bool, int]:
        ka, kb = account_key(a), account_key(b)
        request_id = uuid.uuid4().hex
        try:
            r = await self.writers[w % len(self.writers)].txn(
                when=[ordo.int_value(ka) >= 1],
                then=[ordo.add(ka, -1), ordo.add(kb, 1)],
                request_id=request_id, timeout=self.timeout)
        except BaseException:
            self.unknown.append((request_id, a, b))
            raise
        if r.aborted:
            raise RuntimeError(f"transfer aborted: {r.abort_reason}")
        return r.succeeded, 0

    async def ryw_write(self, w: int, key: str, value: bytes) -> Any:
        r = await self.writers[w % len(self.writers)].put(key, value, timeout=self.timeout)
        if r.aborted:
            raise RuntimeError(f"put aborted: {r.abort_reason}")
        return r.position

    async def ryw_read(self, w: int, key: str, token: Any) -> Any:
        return await self.readers[w % len(self.readers)].get(
            key, min_position=token, timeout=self.timeout)

    async def resolve_unknown(self) -> tuple[collections.Counter[int], int,
                                             collections.Counter[str]]:
        db = self.writers[0]
        deltas: collections.Counter[int] = collections.Counter()
        fates: collections.Counter[str] = collections.Counter()
        unresolved = 0
        for request_id, a, b in self.unknown:
            try:
                r = await db.result(request_id, timeout=30.0)
            except ordo.NotFound:
                fates["never logged"] += 1
                continue
            except ordo.OrdoError as error:
                fates[f"unknown ({type(error).__name__})"] += 1
                unresolved += 1
                continue
            if r.succeeded and not r.aborted:
                fates["committed"] += 1
                deltas[a] -= 1
                deltas[b] += 1
            else:
                fates["not committed"] += 1
        return deltas, unresolved, fates

    async def balances(self, n: int) -> list[Any]:
        db = self.writers[0]
        # The tail once it stops moving (a submit whose client gave up may be queued).
        tail = await db.tail()
        for _ in range(25):
            await asyncio.sleep(0.2)
            now = await db.tail()
            if now == tail:
                break
            tail = now
        out: list[Any] = []
        for start in range(0, n, READ_CHUNK):
            out += await asyncio.gather(*(
                db.get(account_key(i), min_position=tail, timeout=30.0)
                for i in range(start, min(start + READ_CHUNK, n))))
        return out


class NullTarget(OrdoTarget):
    """``bench.null_ordo``: a coordinator that answers every submit at once,
    reached through ordo's client like ordo itself (``put`` only). Its rate
    is the ceiling of the client and the transport in this harness."""

    system = "null"
    profile_ok = False

    def __init__(self, args: Any) -> None:
        super().__init__(args, 1)
        self.label = "null"
        self.ports = 2  # gRPC, then the bus

    def settings(self) -> str:
        linger = self.args.null_fsync_linger_ms
        if linger is not None:
            return ("bench.null_ordo --fsync: each burst of submits appended to a file and "
                    f"fdatasync-ed before it is answered (group commit, {linger:g} ms linger), "
                    "nothing validated or applied; not a database")
        return ("bench.null_ordo: ClusterInfo and SubmitStream (bus) answered at once, "
                "nothing validated, logged or applied; not durable, not a database")

    async def start(self, data: str, port: int) -> None:
        self.servers = servers = Servers(data)
        env = service_env()
        cmd = [sys.executable, "-m", "bench.null_ordo", "--listen", f"{HOST}:{port}",
               "--bus-port-offset", "1"]
        if self.args.null_fsync_linger_ms is not None:
            cmd += ["--fsync", os.path.join(data, "null.log"),
                    "--linger-ms", str(self.args.null_fsync_linger_ms)]
        servers.spawn("null", cmd, env=env)
        self.address = f"{HOST}:{port}"
        if not await asyncio.to_thread(wait_serving, [self.address], START_TIMEOUT_S):
            raise RuntimeError("the null coordinator did not start:\n" + servers.log_tails())


# -------------------------------------------------------------------- etcd

_ETCD_PB: ModuleType | None = None


def etcd_pb() -> ModuleType:
    """The messages of bench/etcd/rpc.proto, compiled now into a temporary folder."""
    global _ETCD_PB
    if _ETCD_PB is None:
        try:
            from grpc_tools import protoc
        except ImportError as error:
            raise NotInstalled("grpc_tools (grpcio-tools) is needed to compile "
                               "bench/etcd/rpc.proto: pip install '.[bench]'") from error
        with tempfile.TemporaryDirectory(prefix="ordo-bench-etcdpb-") as out:
            # Compiled relative to bench/ so the descriptor is named etcd/rpc.proto.
            code = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}",
                                str(HERE / "etcd" / "rpc.proto")])
            if code != 0:
                raise RuntimeError(f"protoc failed on bench/etcd/rpc.proto ({code})")
            spec = importlib.util.spec_from_file_location(
                "bench_etcd_rpc_pb2", os.path.join(out, "etcd", "rpc_pb2.py"))
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        _ETCD_PB = module
    return _ETCD_PB


class _EtcdKV:
    """etcdserverpb.KV over one gRPC channel (unary calls, as etcd's clients make them)."""

    def __init__(self, channel: grpc.aio.Channel, pb: ModuleType) -> None:
        self.channel = channel

        def method(name: str, req: Any, resp: Any) -> Any:
            return channel.unary_unary(f"/etcdserverpb.KV/{name}",
                                       request_serializer=req.SerializeToString,
                                       response_deserializer=resp.FromString)

        self.Range = method("Range", pb.RangeRequest, pb.RangeResponse)
        self.Put = method("Put", pb.PutRequest, pb.PutResponse)
        self.Txn = method("Txn", pb.TxnRequest, pb.TxnResponse)


def _prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class EtcdTarget(Target):
    system = "etcd"
    label = "etcd"
    ports = 2

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.pb = etcd_pb()
        self.writers: list[_EtcdKV] = []
        self.readers: list[_EtcdKV] = []
        self.channels: list[grpc.aio.Channel] = []
        self.address = ""

    def settings(self) -> str:
        return "single member, default settings (WAL fsync before a write is acknowledged)"

    async def start(self, data: str, port: int) -> None:
        exe = _which("etcd", "/usr/bin/etcd")
        self.servers = servers = Servers(data)
        client, peer = f"http://{HOST}:{port}", f"http://{HOST}:{port + 1}"
        servers.spawn("etcd", [
            exe, "--name", "bench", "--data-dir", os.path.join(data, "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"bench={peer}", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ])
        self.address = f"{HOST}:{port}"
        probe = grpc.aio.insecure_channel(self.address)
        kv = _EtcdKV(probe, self.pb)
        try:
            await _poll(lambda: kv.Range(self.pb.RangeRequest(key=b"\0"), timeout=1.0),
                        "etcd", servers)
        finally:
            await probe.close()

    def _channel(self) -> grpc.aio.Channel:
        ch = grpc.aio.insecure_channel(self.address, options=ordo_rpc.CHANNEL_OPTIONS)
        self.channels.append(ch)
        return ch

    async def connect(self, workers: int, readers: bool) -> None:
        n = max(1, min(self.args.clients, workers))
        self.writers = [_EtcdKV(self._channel(), self.pb) for _ in range(n)]
        if readers:
            self.readers = [_EtcdKV(self._channel(), self.pb) for _ in range(n)]
        for ch in self.channels:
            await asyncio.wait_for(ch.channel_ready(), 10.0)

    async def close(self) -> None:
        for ch in self.channels:
            with contextlib.suppress(Exception):
                await ch.close()

    def _put_op(self, key: bytes, value: bytes) -> Any:
        pb = self.pb
        return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))

    def _range_op(self, key: bytes) -> Any:
        pb = self.pb
        return pb.RequestOp(request_range=pb.RangeRequest(key=key))

    async def setup_accounts(self, n: int) -> None:
        gate = asyncio.Semaphore(SETUP_PARALLEL)
        kv = self.writers[0]
        value = str(INITIAL_BALANCE).encode()

        async def one(start: int) -> None:
            async with gate:
                ops = [self._put_op(account_key(i).encode(), value)
                       for i in range(start, min(start + 100, n))]
                await kv.Txn(self.pb.TxnRequest(success=ops), timeout=60.0)

        await asyncio.gather(*(one(s) for s in range(0, n, 100)))

    async def put(self, w: int, key: str, value: bytes) -> None:
        await self.writers[w % len(self.writers)].Put(
            self.pb.PutRequest(key=key.encode(), value=value), timeout=self.timeout)

    async def transfer(self, w: int, a: int, b: int) -> tuple[bool, int]:
        """Read both accounts (one read-only Txn, linearizable), then a Txn that writes both
        if neither mod_revision moved; its failure branch reads them again for the retry."""
        pb = self.pb
        kv = self.writers[w % len(self.writers)]
        ka, kb = account_key(a).encode(), account_key(b).encode()
        deadline = time.monotonic() + self.timeout
        reads = [self._range_op(ka), self._range_op(kb)]
        r = await kv.Txn(pb.TxnRequest(success=reads), timeout=_deadline_left(deadline))
        responses = r.responses
        retries = 0
        while True:
            kva = responses[0].response_range.kvs
            kvb = responses[1].response_range.kvs
            if not kva or not kvb:
                raise RuntimeError(f"account missing: {ka!r} or {kb!r}")
            va, vb = int(kva[0].value), int(kvb[0].value)
            if va < 1:
                return False, retries
            compare = [
                pb.Compare(result=pb.Compare.EQUAL, target=pb.Compare.MOD, key=ka,
                           mod_revision=kva[0].mod_revision),
                pb.Compare(result=pb.Compare.EQUAL, target=pb.Compare.MOD, key=kb,
                           mod_revision=kvb[0].mod_revision),
            ]
            r = await kv.Txn(pb.TxnRequest(
                compare=compare,
                success=[self._put_op(ka, str(va - 1).encode()),
                         self._put_op(kb, str(vb + 1).encode())],
                failure=reads), timeout=_deadline_left(deadline))
            if r.succeeded:
                return True, retries
            retries += 1
            responses = r.responses

    async def ryw_write(self, w: int, key: str, value: bytes) -> Any:
        await self.writers[w % len(self.writers)].Put(
            self.pb.PutRequest(key=key.encode(), value=value), timeout=self.timeout)

    async def ryw_read(self, w: int, key: str, token: Any) -> Any:
        r = await self.readers[w % len(self.readers)].Range(
            self.pb.RangeRequest(key=key.encode()), timeout=self.timeout)  # linearizable
        return r.kvs[0].value if r.kvs else None

    async def balances(self, n: int) -> list[Any]:
        prefix = b"acct:"
        r = await self.writers[0].Range(
            self.pb.RangeRequest(key=prefix, range_end=_prefix_end(prefix)), timeout=30.0)
        found = {kv.key.decode(): int(kv.value) for kv in r.kvs}
        return [found.get(account_key(i)) for i in range(n)]


# -------------------------------------------------------------- PostgreSQL

PUT_SQL = ("INSERT INTO kv (k, v) VALUES ($1, $2) "
           "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v")
DEBIT_SQL = "UPDATE accounts SET balance = balance - 1 WHERE id = $1 AND balance >= 1 RETURNING 1"
CREDIT_SQL = "UPDATE accounts SET balance = balance + 1 WHERE id = $1"
RETRY_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock detected


class _Rollback(Exception):
    """Leave the transaction without writing (the debit's condition was false)."""


PG_VARIANTS = {  # transfer variant -> (isolation level, UPDATEs in account order)
    "serializable": ("serializable", False),
    "serializable-ordered": ("serializable", True),
    "read-committed": ("read_committed", True),
}


class PostgresTarget(Target):
    system = "postgres"

    def __init__(self, args: Any, variant: str | None) -> None:
        super().__init__(args)
        try:
            import asyncpg
        except ImportError as error:
            raise NotInstalled("asyncpg is missing: pip install '.[bench]'") from error
        self.asyncpg = asyncpg
        self.variant = variant  # a PG_VARIANTS key, or None (put, read-your-writes)
        self.isolation, self.ordered = PG_VARIANTS[variant] if variant else (None, False)
        self.label = f"pg-{variant}" if variant else "postgres"
        self.conns: list[Any] = []
        self.read_conns: list[Any] = []
        self.port = 0

    def settings(self) -> str:
        how = {"serializable": "SERIALIZABLE, debit then credit",
               "serializable-ordered": "SERIALIZABLE, the two UPDATEs in account order",
               "read-committed": "READ COMMITTED, the two UPDATEs in account order",
               None: "autocommit statements"}[self.variant]
        return ("fsync=on, synchronous_commit=on (commit waits for the WAL flush), "
                f"other settings default; {how}")

    async def start(self, data: str, port: int) -> None:
        bindir = Path(PG_BIN)
        if not (bindir / "postgres").exists():
            raise NotInstalled(f"{bindir}/postgres not found: run bench/install.sh")
        user = None
        pgdata = os.path.join(data, "pg")
        if os.geteuid() == 0:  # postgres refuses to run as root
            user = PG_USER
            try:
                pw = pwd.getpwnam(user)
            except KeyError as error:
                raise NotInstalled(f"no OS user {user!r} (the postgresql-15 package "
                                   "creates it): run bench/install.sh") from error
            os.chown(data, pw.pw_uid, pw.pw_gid)
        self.servers = servers = Servers(data)
        initdb = _as_user([str(bindir / "initdb"), "-D", pgdata, "-U", "postgres",
                           "--auth=trust", "-E", "UTF8", "--no-sync"], user, pdeathsig=False)
        done = await asyncio.to_thread(
            subprocess.run, initdb, capture_output=True, text=True, timeout=120, cwd=data)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
        max_conn = max(100, 2 * self.args.concurrency + 20)
        servers.spawn("postgres", [
            str(bindir / "postgres"), "-D", pgdata, "-k", data, "-p", str(port),
            "-c", f"listen_addresses={HOST}", "-c", "fsync=on",
            "-c", "synchronous_commit=on", "-c", f"max_connections={max_conn}",
        ], user=user, stop_signal=signal.SIGINT)  # SIGINT: fast shutdown
        self.port = port

        async def ready() -> None:
            conn = await self._connect_one()
            await conn.close()

        await _poll(ready, "PostgreSQL", servers)
        conn = await self._connect_one()
        try:
            await conn.execute(
                "CREATE TABLE kv (k text PRIMARY KEY, v bytea NOT NULL);"
                "CREATE TABLE accounts (id integer PRIMARY KEY, balance bigint NOT NULL)")
        finally:
            await conn.close()

    async def _connect_one(self) -> Any:
        return await self.asyncpg.connect(host=HOST, port=self.port, user="postgres",
                                          database="postgres", timeout=5.0)

    async def connect(self, workers: int, readers: bool) -> None:
        async def many(k: int) -> list[Any]:
            out: list[Any] = []
            for start in range(0, k, 16):
                out += await asyncio.gather(*(self._connect_one()
                                              for _ in range(start, min(start + 16, k))))
            return out

        self.conns = await many(workers)  # one connection per worker
        if readers:
            self.read_conns = await many(workers)

    async def close(self) -> None:
        for c in self.conns + self.read_conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 5.0)

    async def setup_accounts(self, n: int) -> None:
        await self.conns[0].execute(
            "INSERT INTO accounts (id, balance) SELECT g, $1 FROM generate_series(0, $2) g",
            INITIAL_BALANCE, n - 1)

    async def put(self, w: int, key: str, value: bytes) -> None:
        await self.conns[w].execute(PUT_SQL, key, value, timeout=self.timeout)

    async def transfer(self, w: int, a: int, b: int) -> tuple[bool, int]:
        conn = self.conns[w]
        deadline = time.monotonic() + self.timeout
        retries = 0
        while True:
            try:
                return await asyncio.wait_for(self._transfer_once(conn, a, b),
                                              _deadline_left(deadline)), retries
            except self.asyncpg.PostgresError as error:
                if getattr(error, "sqlstate", None) not in RETRY_SQLSTATES:
                    raise
                retries += 1

    async def _transfer_once(self, conn: Any, a: int, b: int) -> bool:
        try:
            if not self.ordered:
                async with conn.transaction(isolation=self.isolation):
                    if await conn.fetchval(DEBIT_SQL, a) is None:
                        return False  # commits an empty transaction
                    await conn.execute(CREDIT_SQL, b)
                return True
            # The two rows locked in account order: no deadlock.
            async with conn.transaction(isolation=self.isolation):
                if a < b:
                    if await conn.fetchval(DEBIT_SQL, a) is None:
                        return False
                    await conn.execute(CREDIT_SQL, b)
                else:
                    await conn.execute(CREDIT_SQL, b)
                    if await conn.fetchval(DEBIT_SQL, a) is None:
                        raise _Rollback
            return True
        except _Rollback:
            return False

    async def ryw_write(self, w: int, key: str, value: bytes) -> Any:
        await self.conns[w].execute(PUT_SQL, key, value, timeout=self.timeout)

    async def ryw_read(self, w: int, key: str, token: Any) -> Any:
        return await self.read_conns[w].fetchval("SELECT v FROM kv WHERE k = $1", key,
                                                 timeout=self.timeout)

    async def balances(self, n: int) -> list[Any]:
        rows = await self.conns[0].fetch("SELECT id, balance FROM accounts")
        found = {r["id"]: r["balance"] for r in rows}
        return [found.get(i) for i in range(n)]


# ------------------------------------------------------------------- Redis

TRANSFER_LUA = """
local a = tonumber(redis.call('GET', KEYS[1]) or '-1')
if a < 1 then return 0 end
redis.call('DECRBY', KEYS[1], 1)
redis.call('INCRBY', KEYS[2], 1)
return 1
"""


class RedisTarget(Target):
    system = "redis"
    label = "redis"

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        try:
            import redis.asyncio as aioredis
        except ImportError as error:
            raise NotInstalled("redis (redis-py) is missing: pip install '.[bench]'") from error
        self.aioredis = aioredis
        self.conns: list[Any] = []
        self.read_conns: list[Any] = []
        self.scripts: list[Any] = []
        self.port = 0

    def settings(self) -> str:
        return "not durable: no RDB snapshots, no AOF (a reference, not a peer)"

    async def start(self, data: str, port: int) -> None:
        exe = _which("redis-server", "/usr/bin/redis-server")
        self.servers = servers = Servers(data)
        servers.spawn("redis", [exe, "--port", str(port), "--bind", HOST, "--save", "",
                                "--appendonly", "no", "--dir", data, "--daemonize", "no",
                                "--logfile", ""])
        self.port = port

        async def ready() -> None:
            c = self._client()
            try:
                await c.ping()
            finally:
                await c.aclose()

        await _poll(ready, "Redis", servers)

    def _client(self) -> Any:
        return self.aioredis.Redis(host=HOST, port=self.port, single_connection_client=True,
                                   socket_timeout=self.timeout,
                                   socket_connect_timeout=5.0)

    async def connect(self, workers: int, readers: bool) -> None:
        self.conns = [self._client() for _ in range(workers)]  # one connection per worker
        if readers:
            self.read_conns = [self._client() for _ in range(workers)]
        for c in self.conns + self.read_conns:
            await c.ping()
        self.scripts = [c.register_script(TRANSFER_LUA) for c in self.conns]

    async def close(self) -> None:
        for c in self.conns + self.read_conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.aclose(), 5.0)

    async def setup_accounts(self, n: int) -> None:
        for start in range(0, n, 1000):
            await self.conns[0].mset({account_key(i): INITIAL_BALANCE
                                      for i in range(start, min(start + 1000, n))})

    async def put(self, w: int, key: str, value: bytes) -> None:
        await self.conns[w].set(key, value)

    async def transfer(self, w: int, a: int, b: int) -> tuple[bool, int]:
        done = await self.scripts[w](keys=[account_key(a), account_key(b)])
        return done == 1, 0

    async def ryw_write(self, w: int, key: str, value: bytes) -> Any:
        await self.conns[w].set(key, value)

    async def ryw_read(self, w: int, key: str, token: Any) -> Any:
        return await self.read_conns[w].get(key)

    async def balances(self, n: int) -> list[Any]:
        out: list[Any] = []
        for start in range(0, n, 1000):
            values = await self.conns[0].mget([account_key(i)
                                               for i in range(start, min(start + 1000, n))])
            out += [int(v) if v is not None else None for v in values]
        return out


# ----------------------------------------------------------------- helpers


def unique_value(worker: int, seq: int, size: int) -> bytes:
    """A value no other write of the run has: worker, sequence number, padding."""
    return f"{worker}:{seq}:".encode().ljust(size, b".")


def fixed_payload(size: int) -> bytes:
    return random.Random(7).randbytes(size)

