"""The ordo processes of one run: command lines, start, kill, pause, restart.

Nodes are ``coordinator`` and ``s0`` .. ``s{N-1}``. Each is its own OS
process, started from its own command line and data directory, exactly as an
operator's supervisor would (DESIGN.md: "each service restarts from its own
command line alone"). Every address a process dials is the address of the
proxy for that directed link, so the nemesis can cut or slow any link:

    coordinator --shard <proxy coordinator->s0> --shard <proxy coordinator->s1> ...
    shard i     --coordinator <proxy si->coordinator>
                --peer <proxy si->s0> ... --peer <own listen address> ... (in shard order)

The internal streams, and the test clients' transaction and read streams,
run on ordo's bus (``--bus-port-offset 1``): every process and every proxy
(the clients' too) listens on a pair of ports, gRPC on the first and the bus
on the next, and a link's faults hit both.

Kills and pauses are reference counted, so overlapping faults compose: a
node is down while any kill (or power loss) holds it, paused while any pause
holds it; a node restarted while a pause holds it is stopped again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ordo.cli import port_free
from ordojepsen.proxy import HOST, ProxyNet

COORDINATOR = "coordinator"
CLIENT = "client"

# Which processes get which --inject-bug flag.
BUG_TARGETS = {
    "ack-before-fsync": "coordinator",  # the sequencer acknowledges early
    "skip-writes": "s0",  # one shard drops one transaction's writes
    "stale-read": "shards",  # every shard ignores min_position
}


def shard_name(i: int) -> str:
    return f"s{i}"


# The repository this runner belongs to: its nodes run its ordo.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Children die with the runner, even if it is killed with SIGKILL: a tiny
# launcher sets PR_SET_PDEATHSIG, checks the parent is still there, and execs
# the service. (A preexec_fn would run Python in the forked child of a
# multi-threaded process, with gRPC's threads about: that can crash.)
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "parent = int(sys.argv[1])\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def node_env() -> dict[str, str]:
    """A node's environment: the ordo of this source tree first on the
    import path, wherever the runner was started from (not whichever ordo
    is installed), and unbuffered output for its log."""
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
        filter(None, [REPO, os.environ.get("PYTHONPATH")])))


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


BUS_PORT_OFFSET = 1  # each process's bus port: its gRPC port + 1


def free_listen_ports(count: int, span: int = 1 + BUS_PORT_OFFSET) -> list[int]:
    """Ports outside the ephemeral range (so an outgoing connection can never
    take a killed service's port before it restarts), free right now, each
    with the ``span - 1`` ports above it (its bus port) free as well."""
    lo, hi = _ephemeral_range()
    candidates = (15000, lo - span) if lo > 16000 else (hi + 1, 65000 - span)
    rng = random.Random()  # not the run's seed: parallel runs must not collide
    ports: list[int] = []
    taken: set[int] = set()
    for _ in range(5000):
        port = rng.randrange(*candidates)
        block = range(port, port + span)
        if taken.intersection(block) or not all(port_free(p, HOST) for p in block):
            continue
        ports.append(port)
        taken.update(block)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free ports")




@dataclass
class Node:
    name: str
    cmd: list[str]
    listen: str
    data: str
    log_path: str
    proc: subprocess.Popen[bytes] | None = None
    down: int = 0  # kill holds
    paused: int = 0  # pause holds
    starts: int = 0
    expected_exit: bool = False
    exits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(
        self, shards: int, root: str, proxies: ProxyNet, inject_bug: str = "",
        python: str = sys.executable, log_level: str = "info",
        events: Any = None,
    ) -> None:
        self.shards = shards
        self.root = root
        self.proxies = proxies
        self.inject_bug = inject_bug
        self.python = python
        self.events = events  # callable(name, detail) for the run log, optional
        self.nodes: dict[str, Node] = {}
        self.t0 = time.monotonic()
        os.makedirs(os.path.join(root, "data"), exist_ok=True)
        os.makedirs(os.path.join(root, "logs"), exist_ok=True)
        names = [COORDINATOR] + [shard_name(i) for i in range(shards)]
        # Proxies of the links between processes, then of the client's links
        # (the client too carries its streams on the bus).
        internal = shards * (shards + 1)
        ports = free_listen_ports(len(names) + internal + shards + 1)
        listen = {n: f"{HOST}:{p}" for n, p in zip(names, ports[:len(names)], strict=True)}
        self.listen = listen
        spare = iter(ports[len(names):])

        def link(name: str, target: str) -> None:
            proxies.add(name, target, next(spare), BUS_PORT_OFFSET)

        # Proxies: one per directed link.
        for i in range(shards):
            s = shard_name(i)
            link(f"{COORDINATOR}->{s}", listen[s])
            link(f"{s}->{COORDINATOR}", listen[COORDINATOR])
            for j in range(shards):
                if j != i:
                    link(f"{s}->{shard_name(j)}", listen[shard_name(j)])
            link(f"{CLIENT}->{s}", listen[s])
        link(f"{CLIENT}->{COORDINATOR}", listen[COORDINATOR])

        exe = [python, "-m", "ordo"]
        bug_to = BUG_TARGETS.get(inject_bug, "")
        bus = ["--bus-port-offset", str(BUS_PORT_OFFSET)]
        cmd = exe + ["coordinator", "--listen", listen[COORDINATOR], *bus,
                     "--data", os.path.join(root, "data", COORDINATOR), "--log-level", log_level]
        for i in range(shards):
            cmd += ["--shard", proxies.address(f"{COORDINATOR}->{shard_name(i)}")]
        if inject_bug and bug_to == COORDINATOR:
            cmd += ["--inject-bug", inject_bug]
        self._add(COORDINATOR, cmd)
        for i in range(shards):
            s = shard_name(i)
            cmd = exe + ["shard", "--id", str(i), "--listen", listen[s], *bus,
                         "--data", os.path.join(root, "data", s), "--log-level", log_level,
                         "--coordinator", proxies.address(f"{s}->{COORDINATOR}")]
            for j in range(shards):
                peer = listen[s] if j == i else proxies.address(f"{s}->{shard_name(j)}")
                cmd += ["--peer", peer]
            if inject_bug and (bug_to == s or bug_to == "shards"):
                cmd += ["--inject-bug", inject_bug]
            self._add(s, cmd)

    def _add(self, name: str, cmd: list[str]) -> None:
        self.nodes[name] = Node(
            name, cmd, self.listen[name], os.path.join(self.root, "data", name),
            os.path.join(self.root, "logs", f"{name}.log"),
        )

    # ------------------------------------------------------------ addresses

    @property
    def names(self) -> list[str]:
        return list(self.nodes)

    @property
    def server_names(self) -> list[str]:
        return list(self.nodes)

    def client_coordinator(self) -> str:
        return self.proxies.address(f"{CLIENT}->{COORDINATOR}")

    def client_shards(self) -> list[str]:
        return [self.proxies.address(f"{CLIENT}->{shard_name(i)}") for i in range(self.shards)]

    def links(self) -> list[str]:
        return list(self.proxies.links)

    def command_lines(self) -> dict[str, list[str]]:
        return {n: node.cmd for n, node in self.nodes.items()}

    # ------------------------------------------------------------- processes

    def _note(self, what: str, detail: dict[str, Any]) -> None:
        if self.events is not None:
            self.events(what, detail)

    def spawn(self, name: str) -> None:
        node = self.nodes[name]
        assert not node.alive, f"{name} is running"
        with open(node.log_path, "ab" if node.starts else "wb") as log:
            log.write(f"\n=== ordojepsen: start #{node.starts + 1} at "
                      f"{time.monotonic() - self.t0:.3f}s: {' '.join(node.cmd)}\n".encode())
            log.flush()
            env = node_env()
            node.proc = subprocess.Popen(
                [self.python, "-c", _LAUNCHER, str(os.getpid()), *node.cmd],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
            )
        node.starts += 1
        node.expected_exit = False
        if node.paused:
            os.kill(node.proc.pid, signal.SIGSTOP)

    def _signal(self, node: Node, sig: int) -> None:
        if node.proc is not None and node.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.proc.pid, sig)

    def _reap(self, node: Node, timeout: float = 10.0) -> None:
        if node.proc is None:
            return
        try:
            node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(node, signal.SIGKILL)
            node.proc.wait(5)

    def kill(self, names: list[str]) -> list[str]:
        """Take a kill hold on each node; SIGKILL those that were up. Returns them."""
        killed = []
        for n in names:
            node = self.nodes[n]
            node.down += 1
            if node.down == 1 and node.alive:
                node.expected_exit = True
                self._signal(node, signal.SIGKILL)
                killed.append(n)
        for n in killed:
            self._reap(self.nodes[n])
        return killed

    def release(self, names: list[str]) -> list[str]:
        """Drop a kill hold; restart nodes no longer held. Returns the restarted."""
        started = []
        for n in names:
            node = self.nodes[n]
            node.down = max(0, node.down - 1)
            if node.down == 0 and not node.alive:
                self.spawn(n)
                started.append(n)
        return started

    def pause(self, names: list[str]) -> list[str]:
        stopped = []
        for n in names:
            node = self.nodes[n]
            node.paused += 1
            if node.paused == 1 and node.alive:
                self._signal(node, signal.SIGSTOP)
                stopped.append(n)
        return stopped

    def resume(self, names: list[str]) -> list[str]:
        resumed = []
        for n in names:
            node = self.nodes[n]
            node.paused = max(0, node.paused - 1)
            if node.paused == 0 and node.alive:
                self._signal(node, signal.SIGCONT)
                resumed.append(n)
        return resumed

    def heal(self) -> list[str]:
        """Drop every hold: continue paused nodes, restart dead ones."""
        for node in self.nodes.values():
            if node.paused:
                node.paused = 0
                self._signal(node, signal.SIGCONT)
        started = []
        for name, node in self.nodes.items():
            node.down = 0
            if not node.alive:
                self.spawn(name)
                started.append(name)
        return started

    def check_exits(self) -> list[dict[str, Any]]:
        """Nodes that died without a nemesis killing them: record and restart them."""
        found = []
        for name, node in self.nodes.items():
            if node.proc is None or node.alive or node.down:
                continue
            if node.expected_exit:
                continue
            exit_info = {
                "node": name, "code": node.proc.returncode,
                "time_s": round(time.monotonic() - self.t0, 3),
                "log_tail": tail_file(node.log_path, 3000),
            }
            node.exits.append(exit_info)
            found.append(exit_info)
            self._note("unexpected-exit", {"node": name, "code": node.proc.returncode})
            self.spawn(name)
        return found

    def stop_all(self, grace_s: float = 8.0) -> dict[str, int | None]:
        for node in self.nodes.values():
            node.expected_exit = True
            self._signal(node, signal.SIGCONT)
        # Shards first, then the coordinator, as `ordo dev` does.
        order = [n for n in self.nodes if n != COORDINATOR] + [COORDINATOR]
        for n in order:
            self._signal(self.nodes[n], signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        codes: dict[str, int | None] = {}
        for n in order:
            node = self.nodes[n]
            if node.proc is None:
                codes[n] = None
                continue
            try:
                codes[n] = node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(node, signal.SIGKILL)
                codes[n] = node.proc.wait(5)
        return codes

    def kill_all_now(self) -> None:
        for node in self.nodes.values():
            self._signal(node, signal.SIGKILL)

    # -------------------------------------------------------------- health

    async def wait_serving(
        self, names: list[str] | None = None, timeout_s: float = 30.0, fail_fast: bool = False,
    ) -> bool:
        """Wait until each node answers its gRPC health check (direct, not via proxies).

        ``fail_fast``: give up at once if a node's process has exited."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout_s
        for n in names or list(self.nodes):
            async with grpc.aio.insecure_channel(self.listen[n]) as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                while True:
                    try:
                        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    if time.monotonic() > deadline:
                        return False
                    proc = self.nodes[n].proc
                    if fail_fast and proc is not None and proc.poll() is not None:
                        return False
                    await asyncio.sleep(0.1)
        return True


def tail_file(path: str, size: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            f.seek(max(0, end - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
