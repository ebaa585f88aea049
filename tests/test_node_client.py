"""A Node.js client (tests/node/client.mjs) speaks to a real cluster using only
the .proto files in proto/: it submits a transaction, routes a read to the
owning shard with its own BLAKE2b-64 partitioner, and watches a prefix on every
shard. This is the cross-language check of the API: nothing Python-specific
(generated code, the Python client) sits between the other language and ordo.

The Node dependencies are pinned in tests/node/package.json and
package-lock.json; the test installs them with ``npm ci`` when they are
missing. Node and npm are required: without them the test fails, it does not
skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid

import pytest

from ordo.core.partition import ShardMap
from tests.conftest import Cluster

pytestmark = pytest.mark.cluster

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
CLIENT = os.path.join(NODE_DIR, "client.mjs")
NPM_CI = ["npm", "ci", "--no-audit", "--no-fund"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: the Node.js client test needs Node.js 18+ and npm "
            f"(then `cd tests/node && {' '.join(NPM_CI)}`)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with tests/node/node_modules installed from the lockfile."""
    node = _tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < 18:
        pytest.fail(f"Node.js 18 or newer is needed, found {version.stdout.strip()}",
                    pytrace=False)
    installed = all(
        os.path.isfile(os.path.join(NODE_DIR, "node_modules", "@grpc", name, "package.json"))
        for name in ("grpc-js", "proto-loader")
    )
    if not installed:
        npm = _tool("npm")
        done = subprocess.run([npm, *NPM_CI[1:]], cwd=NODE_DIR, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(NPM_CI)}` in tests/node failed:\n{done.stdout}\n"
                        f"{done.stderr}", pytrace=False)
    return node


def _run(node: str, *args: str, timeout_s: float = 60) -> list[dict]:
    done = subprocess.run([node, CLIENT, *args], cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=timeout_s)
    assert done.returncode == 0, f"node client failed ({done.returncode}):\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if args[0] != "--hash":
        assert lines and lines[-1] == {"event": "done"}, done.stdout
    return lines


def test_node_partitioner_matches_ordo(node: str) -> None:
    """BLAKE2b-64 in Node (no digest-size parameter in node:crypto) agrees with
    ordo's partitioner, across BLAKE2b block boundaries and hash tags."""
    keys = [b"", b"a", b"a" * 127, b"b" * 128, b"c" * 129, b"d" * 256, b"e" * 257,
            b"user:{42}:name", b"{}{x}", b"{x}", b"{", b"}{a}", "ünï{çødé}".encode(),
            bytes(range(256)), b"\x00" * 300]
    lines = _run(node, "--hash", *(k.hex() for k in keys))
    assert len(lines) == len(keys)
    for key, line in zip(keys, lines, strict=True):
        tag_or_key = key
        start = key.find(b"{")
        end = key.find(b"}", start + 1) if start >= 0 else -1
        if start >= 0 and end > start + 1:
            tag_or_key = key[start + 1:end]
        assert line["blake2b64"] == hashlib.blake2b(tag_or_key, digest_size=8).hexdigest(), key
        assert line["shard_of_3"] == ShardMap(3).shard_for_key(key), key
        assert line["shard_of_7"] == ShardMap(7).shard_for_key(key), key


def test_node_client_submits_reads_and_watches(cluster: Cluster, node: str) -> None:
    run = uuid.uuid4().hex[:12]
    lines = _run(node, cluster.address, run)
    by_event: dict[str, list[dict]] = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)

    (info,) = by_event["cluster"]
    assert info["shard_count"] == cluster.shards
    assert info["partitioner"] == "blake2b64-mod"
    assert info["shards"] == [cluster.shard_address(i) for i in range(cluster.shards)]

    (submit,) = by_event["submit"]
    position = int(submit["position"])  # uint64 arrives as a string (longs: String)
    assert position > 0
    assert submit["succeeded"] is True and submit["duplicate"] is False
    assert int(submit["result_position"]) == position
    assert submit["request_id"] == f"node-{run}"
    # Exactly-once: the same request id again is the same transaction.
    (again,) = by_event["resubmit"]
    assert again["duplicate"] is True and int(again["position"]) == position

    prefix = f"node:{run}:"
    expected = {
        prefix + "title": {"text_value": "héllo from node"},
        prefix + "count": {"int_value": "-42"},  # sint64, as a string
    }
    shard_map = ShardMap(cluster.shards)
    gets = {g["key"]: g for g in by_event["get"]}
    assert set(gets) == set(expected)
    for key, value in expected.items():
        owner = shard_map.shard_for_key(key.encode())
        got = gets[key]
        assert got["shard"] == owner, "the Node client routed like ordo's partitioner"
        assert got["value"] == value
        assert int(got["version"]) == position
        assert int(got["position"]) >= position
    for refusal in by_event["not_owner"]:
        assert set(refusal["answers"].values()) == {"FAILED_PRECONDITION"}, refusal
        assert len(refusal["answers"]) == cluster.shards - 1

    watches = {w["shard"]: w for w in by_event["watch"]}
    assert set(watches) == set(range(cluster.shards))
    seen: dict[str, dict] = {}
    for shard, watch in watches.items():
        assert int(watch["progress"]) >= position
        for event in watch["events"]:
            assert int(event["position"]) == position, event
            assert event["request_id"] == f"node-{run}"
            assert shard_map.shard_for_key(event["key"].encode()) == shard, event
            seen[event["key"]] = event["value"]
    assert seen == expected
