"""Fixtures that run real ordo clusters: separate processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ordo.cli import dev_commands, port_free, wait_serving


def free_port_block(count: int) -> int:
    """A base port such that base..base+2*count-1 are free on 127.0.0.1 now:
    ``count`` services' gRPC ports, then their bus ports (see dev_commands)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + 2 * count >= 65000:
            continue
        if all(port_free(p) for p in range(base, base + 2 * count)):
            return base
    raise RuntimeError("no free block of ports")


@dataclass
class Cluster:
    """A coordinator and N shards, each its own process, data under one folder."""

    shards: int
    data: str
    port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # flags for every service
    shard_extra: list[str] = field(default_factory=list)  # flags for the shards only
    per_process: dict[int, list[str]] = field(default_factory=dict)  # flags for process i
    tls: object = None  # a TLSConfig when the cluster runs TLS
    shards_per_process: int = 1  # above 1: shard processes host several shards each

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def shard_address(self, i: int) -> str:
        return f"127.0.0.1:{self.port + 1 + i}"

    @property
    def addresses(self) -> list[str]:
        return [self.address] + [self.shard_address(i) for i in range(self.shards)]

    def _commands(self) -> list[list[str]]:
        return dev_commands(self.shards, self.data, "127.0.0.1", self.port, self.extra,
                            self.shards_per_process)

    def _process_addresses(self, i: int) -> list[str]:
        """What process i serves: the coordinator, or the shards it hosts."""
        if i == 0:
            return [self.address]
        per = self.shards_per_process
        first = (i - 1) * per
        return [self.shard_address(s) for s in range(first, min(self.shards, first + per))]

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        cmd = self._commands()[i]
        if i > 0:
            cmd = cmd + self.shard_extra
        cmd = cmd + self.per_process.get(i, [])
        with open(os.path.join(self.data, f"proc-{i}.log"), "ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=log)

    def start(self) -> None:
        self.procs = [self._spawn(i) for i in range(len(self._commands()))]
        if not wait_serving(self.addresses, 60, self.tls):
            self.stop()
            raise RuntimeError("cluster did not start:\n" + self.logs())

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Signal process i (0 is the coordinator, 1 + s is shard s, or with
        several shards per process, the s-th shard process) and reap it."""
        self.procs[i].send_signal(sig)
        self.procs[i].wait(timeout=20)

    def revive(self, i: int, wait: bool = True) -> None:
        """Start process i again from its own command line and data directory."""
        assert self.procs[i].poll() is not None, "still running"
        self.procs[i] = self._spawn(i)
        if wait and not wait_serving(self._process_addresses(i), 60, self.tls):
            raise RuntimeError(f"process {i} did not restart:\n" + self.logs())

    def stop(self, sig: int = signal.SIGTERM) -> list[int]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(sig)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=20))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        return codes

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def shard_data(self, i: int) -> str:
        return os.path.join(self.data, f"shard-{i}")

    def logs(self) -> str:
        out = []
        for name in sorted(os.listdir(self.data)):
            if name.endswith(".log"):
                with open(os.path.join(self.data, name), errors="replace") as f:
                    out.append(f"--- {name}\n{f.read()[-4000:]}")
        return "\n".join(out)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="ordo-test-") as data:
        c = Cluster(shards=3, data=data, port=free_port_block(4))
        c.start()
        try:
            yield c
        finally:
            codes = c.stop()
            if any(code != 0 for code in codes):
                sys.stderr.write(c.logs())


@pytest.fixture
def fresh_cluster() -> Iterator[Cluster]:
    """A cluster of its own, for tests that restart or break it."""
    with tempfile.TemporaryDirectory(prefix="ordo-test-") as data:
        c = Cluster(shards=3, data=data, port=free_port_block(4))
        c.start()
        try:
            yield c
        finally:
            c.stop(signal.SIGKILL)


@pytest.fixture(params=[1, 3], ids=["process-per-shard", "three-in-one-process"])
def compacting_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster that keeps only the last 20 positions of history and compacts
    often: a process per shard, and three shards in one process (whose
    compaction asks its neighbours directly)."""
    with tempfile.TemporaryDirectory(prefix="ordo-test-") as data:
        c = Cluster(shards=3, data=data, port=free_port_block(4),
                    extra=["--retain-positions", "20", "--retain-seconds", "0",
                           "--compact-interval-s", "0.3"],
                    shards_per_process=request.param)
        c.start()
        try:
            yield c
        finally:
            c.stop(signal.SIGKILL)


def stream_transport(pipe: Any) -> str:
    """Which transport a client's multiplexed stream (``_Pipe``) is open on."""
    from ordo import bus
    from ordo.client import _Opening

    call = pipe.call
    assert call is not None, "the stream is not open"
    if isinstance(call, _Opening):
        call = call.opening.result()
    return "bus" if isinstance(call, bus.Call) else "grpc"
