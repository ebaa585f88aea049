"""The `ordo` command as a person at a terminal uses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import Cluster, free_port_block

pytestmark = pytest.mark.cluster


def ordo_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ordo", *args], capture_output=True, text=True,
                          timeout=60, check=check)


def test_put_get_txn_and_status(cluster: Cluster) -> None:
    a = ("--address", cluster.address)
    put = json.loads(ordo_cli("put", *a, "cli:{1}:n", "41", "--type", "int").stdout)
    got = json.loads(ordo_cli("get", *a, "cli:{1}:n", "--min-position",
                              str(put["position"])).stdout)
    assert got["value"] == 41 and got["version"] == put["position"]
    txn = {"when": [{"key": "cli:{1}:n", "target": "int_value", "op": ">=", "value": 40}],
           "then": [{"op": "add", "key": "cli:{1}:n", "value": 1},
                    {"op": "append", "key": "cli:{1}:log", "value": "inc"},
                    {"op": "get", "key": "cli:{1}:n"}],
           "otherwise": []}
    out = json.loads(ordo_cli("txn", *a, json.dumps(txn)).stdout)
    assert out["succeeded"] and out["values"] == {"cli:{1}:n": 42}
    missing = ordo_cli("get", *a, "cli:missing", check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout)["value"] is None
    status = ordo_cli("status", *a).stdout.splitlines()
    assert status[0].startswith("tail ")
    assert len(status) == 2 + cluster.shards and "down" not in "".join(status)


def test_dev_prints_ready_and_stops_cleanly_on_sigterm() -> None:
    port = free_port_block(3)
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ordo", "dev", "--shards", "2", "--data", data,
             "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == f"ordo ready: 127.0.0.1:{port}"
            out = json.loads(ordo_cli("put", "--address", f"127.0.0.1:{port}", "k", "v").stdout)
            assert out["succeeded"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert sorted(os.listdir(data)) == ["coordinator", "shard-0", "shard-1"]


def test_dev_hosts_several_shards_in_one_process() -> None:
    port = free_port_block(4)
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ordo", "dev", "--shards", "3", "--shards-per-process", "3",
             "--data", data, "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == f"ordo ready: 127.0.0.1:{port}"
            a = ("--address", f"127.0.0.1:{port}")
            # Keys on three shards, in one transaction.
            txn = {"when": [], "otherwise": [],
                   "then": [{"op": "put", "key": f"k{{{i}}}", "value": i} for i in range(12)]}
            assert json.loads(ordo_cli("txn", *a, json.dumps(txn)).stdout)["succeeded"]
            status = ordo_cli("status", *a).stdout.splitlines()
            assert len(status) == 2 + 3 and "down" not in "".join(status)
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                      text=True).stdout.split()
            assert len(children) == 2, "a coordinator and one shard process"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert sorted(os.listdir(data)) == ["coordinator", "shard-0", "shard-1", "shard-2"]


def test_shard_refuses_a_bad_host_spec() -> None:
    base = ["shard", "--id", "0", "--peer", "127.0.0.1:1", "--peer", "127.0.0.1:2"]
    for spec in ("1", "x=dir", "1=", "0=dir", "5=dir"):
        out = ordo_cli(*base, "--host", spec, check=False)
        assert out.returncode == 2 and "--host" in out.stderr, (spec, out.stderr)


def test_a_bad_request_prints_a_clear_error(cluster: Cluster) -> None:
    bad = ordo_cli("put", "--address", cluster.address, "", "v", check=False)
    assert bad.returncode == 1
    assert "InvalidArgument" in bad.stderr and "key is empty" in bad.stderr
