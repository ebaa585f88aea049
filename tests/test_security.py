"""Operable and safe: TLS, token roles, health during catch-up, reflection, metrics."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import ordo
from ordo.security import TLSConfig, make_dev_certificates
from tests.conftest import Cluster, free_port_block, stream_transport

pytestmark = pytest.mark.cluster

TOKENS = {"admin": "admin-" + uuid.uuid4().hex, "write": "write-" + uuid.uuid4().hex,
          "read": "read-" + uuid.uuid4().hex}


@pytest.fixture(scope="module")
def secure_cluster() -> Iterator[Cluster]:
    """Mutual TLS on every link, and every call needs a token."""
    with tempfile.TemporaryDirectory(prefix="ordo-secure-") as data:
        tls = make_dev_certificates(os.path.join(data, "tls"))
        tokens = os.path.join(data, "tokens.toml")
        with open(tokens, "w") as f:
            f.write("[tokens]\n" + "".join(f'"{t}" = "{r}"\n' for r, t in TOKENS.items()))
        port = free_port_block(4)
        c = Cluster(shards=3, data=data, port=port, tls=tls, extra=[
            "--tls-cert", tls.cert, "--tls-key", tls.key, "--tls-ca", tls.ca,
            "--tls-client-auth", "--tokens-file", tokens, "--token", TOKENS["admin"],
        ], per_process={0: ["--metrics-port", str(free_port_block(1))]})
        c.start()
        try:
            yield c
        finally:
            c.stop()


async def test_tls_cluster_serves_a_client_with_the_ca_and_a_certificate(
    secure_cluster: Cluster,
) -> None:
    tls = secure_cluster.tls
    assert isinstance(tls, TLSConfig)
    async with ordo.connect(secure_cluster.address, tls=tls, token=TOKENS["write"]) as db:
        r = await db.txn(then=[ordo.put("tls:{a}:x", 1), ordo.put("tls:b", 2)])
        assert await db.get("tls:b", min_position=r.position) == 2
        # Both streams on the bus: mutual TLS and the token there too.
        assert stream_transport(db._pipe) == "bus"
        assert {stream_transport(p) for p in db._get_pipes.values()} == {"bus"}


async def test_a_client_without_the_ca_or_certificate_is_refused(
    secure_cluster: Cluster,
) -> None:
    async with ordo.connect(secure_cluster.address, token=TOKENS["admin"], timeout=1.5) as db:
        with pytest.raises(ordo.OrdoError):
            await db.tail()  # plaintext to a TLS port
    tls = secure_cluster.tls
    assert isinstance(tls, TLSConfig)
    no_cert = TLSConfig(ca=tls.ca)  # verifies the server, but has no client certificate
    async with ordo.connect(secure_cluster.address, tls=no_cert, token=TOKENS["admin"],
                            timeout=1.5) as db:
        with pytest.raises(ordo.OrdoError):
            await db.tail()


async def test_token_roles_are_enforced_and_refusals_log_nothing(
    secure_cluster: Cluster,
) -> None:
    tls = secure_cluster.tls
    async with ordo.connect(secure_cluster.address, tls=tls, token=TOKENS["admin"]) as admin:
        tail = await admin.tail()
    async with ordo.connect(secure_cluster.address, tls=tls, token=None) as anonymous:
        with pytest.raises(ordo.errors.Unauthenticated):
            await anonymous.put("auth:x", 1)
    async with ordo.connect(secure_cluster.address, tls=tls, token="wrong") as stranger:
        with pytest.raises(ordo.errors.Unauthenticated):
            await stranger.tail()
    async with ordo.connect(secure_cluster.address, tls=tls, token=TOKENS["read"]) as reader:
        assert await reader.tail() == tail
        with pytest.raises(ordo.errors.PermissionDenied):
            await reader.put("auth:x", 1)
        assert await reader.get("auth:x") is None
    async with ordo.connect(secure_cluster.address, tls=tls, token=TOKENS["admin"]) as admin:
        assert await admin.tail() == tail, "refused calls logged nothing"


def _secure_channel(cluster: Cluster, address: str) -> grpc.Channel:
    tls = cluster.tls
    assert isinstance(tls, TLSConfig)
    return grpc.secure_channel(address, tls.channel_credentials())


def test_health_and_reflection_need_no_token(secure_cluster: Cluster) -> None:
    for address in secure_cluster.addresses:
        with _secure_channel(secure_cluster, address) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            answers = stub.ServerReflectionInfo(iter([
                reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = {s.name for a in answers for s in a.list_services_response.service}
            assert "grpc.health.v1.Health" in names
            assert names & {"ordo.v1.CoordinatorService", "ordo.v1.ShardService"}


async def test_metrics_after_load(secure_cluster: Cluster) -> None:
    port = secure_cluster.per_process[0][1]
    async with ordo.connect(secure_cluster.address, tls=secure_cluster.tls,
                            token=TOKENS["write"]) as db:
        await asyncio.gather(*(db.put(f"m:{i}", i) for i in range(30)))
        await db.txn(then=[ordo.put("m:text", "x"), ordo.add("m:text", 1)])
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {line.split(" ")[0]: float(line.split(" ")[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    assert values["ordo_transactions_submitted_total"] >= 31
    assert values["ordo_transactions_committed_total"] >= 31
    assert values['ordo_transactions_aborted_total{reason="type_mismatch"}'] >= 1
    assert values["ordo_batch_transactions_count"] >= 1
    assert values["ordo_commit_latency_seconds_count"] >= 31
    assert values["ordo_log_tail_position"] >= 32
    assert not any("m:" in name for name in values), "no per-key labels"


async def test_a_shard_reports_serving_only_after_catching_up(fresh_cluster: Cluster) -> None:
    fresh_cluster.kill(1, 9)  # shard 0
    async with ordo.connect(fresh_cluster.address) as db:
        for chunk in range(5):
            await asyncio.gather(*(
                db.txn(then=[ordo.put(f"catch:{chunk}:{i}", i) for i in range(8)], wait="logged")
                for _ in range(100)))
        tail = await db.tail()
    # With the coordinator down too, the restarted shard cannot know how far
    # the log goes: it must not claim to be ready.
    fresh_cluster.kill(0, 9)
    fresh_cluster.revive(1, wait=False)
    from ordo.v1 import shard_pb2, shard_pb2_grpc

    seen: list[int] = []
    with grpc.insecure_channel(fresh_cluster.shard_address(0)) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                seen.append(health.Check(health_pb2.HealthCheckRequest(), timeout=1).status)
            except grpc.RpcError:
                pass  # not listening yet
            await asyncio.sleep(0.05)
        assert seen and set(seen) == {health_pb2.HealthCheckResponse.NOT_SERVING}
        fresh_cluster.revive(0)
        shard = shard_pb2_grpc.ShardServiceStub(ch)
        for _ in range(600):
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                applied = shard.ShardStatus(shard_pb2.ShardStatusRequest()).applied_position
                assert applied >= tail, "SERVING before catching up"
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the shard never reported SERVING")
