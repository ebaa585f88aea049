"""Bad input is refused with INVALID_ARGUMENT naming the field, before anything
is logged, and the services keep serving."""

from __future__ import annotations

import uuid

import grpc
import pytest

import ordo
from ordo import errors
from ordo.core import limits as L
from ordo.v1 import coordinator_pb2 as cpb
from ordo.v1 import coordinator_pb2_grpc
from ordo.v1 import types_pb2 as pb
from tests.conftest import Cluster

pytestmark = pytest.mark.cluster


def _put(key: bytes, value: pb.Value | None = None) -> pb.Txn:
    txn = pb.Txn()
    op = txn.success.add(type=pb.OP_TYPE_PUT, key=key)
    op.value.CopyFrom(value if value is not None else pb.Value(text_value="v"))
    return txn


def _bad_txns() -> list[tuple[str, pb.Txn, str]]:
    cases: list[tuple[str, pb.Txn, str]] = [
        ("empty key", _put(b""), "txn.success[0].key"),
        ("key over key_bytes_max", _put(b"k" * (L.KEY_BYTES_MAX + 1)), "txn.success[0].key"),
        (
            "value over value_bytes_max",
            _put(b"k", pb.Value(bytes_value=b"x" * (L.VALUE_BYTES_MAX + 1))),
            "txn.success[0].value",
        ),
        ("empty transaction", pb.Txn(), "txn"),
    ]
    many = pb.Txn()
    for i in range(L.TXN_OPS_MAX + 1):
        many.success.add(type=pb.OP_TYPE_DELETE, key=b"k%d" % i)
    cases.append(("more than txn_ops_max ops", many, "txn"))
    big = pb.Txn()
    for i in range(L.TXN_BYTES_MAX // L.VALUE_BYTES_MAX + 1):
        op = big.success.add(type=pb.OP_TYPE_PUT, key=b"big%d" % i)
        op.value.bytes_value = b"x" * L.VALUE_BYTES_MAX
    cases.append(("transaction over txn_bytes_max", big, "txn"))
    unknown_op = pb.Txn()
    unknown_op.success.add(type=99, key=b"k")
    cases.append(("unknown op type", unknown_op, "txn.success[0].type"))
    unknown_target = pb.Txn()
    c = unknown_target.compares.add(key=b"k", target=42, operator=pb.COMPARE_OPERATOR_EQUAL)
    c.operand.int_value = 1
    cases.append(("unknown compare target", unknown_target, "txn.compares[0].target"))
    unknown_operator = pb.Txn()
    c = unknown_operator.compares.add(key=b"k", target=pb.COMPARE_TARGET_VALUE, operator=17)
    c.operand.int_value = 1
    cases.append(("unknown compare operator", unknown_operator, "txn.compares[0].operator"))
    no_value = pb.Txn()
    no_value.success.add(type=pb.OP_TYPE_ADD, key=b"k")
    cases.append(("add without a value", no_value, "txn.success[0].value"))
    text_add = pb.Txn()
    text_add.failure.add(type=pb.OP_TYPE_ADD, key=b"k").value.text_value = "1"
    cases.append(("add of text", text_add, "txn.failure[0].value"))
    untagged_range = pb.Txn()
    untagged_range.success.add(type=pb.OP_TYPE_RANGE, key=b"users:")
    cases.append(("range across shards", untagged_range, "txn.success[0].key"))
    nested = pb.Txn()
    item = nested.success.add(type=pb.OP_TYPE_PUT, key=b"k").value.list_value.items.add()
    item.list_value.items.add(int_value=1)
    cases.append(("list inside a list", nested, "txn.success[0].value"))
    return cases


@pytest.mark.parametrize("name,txn,field", _bad_txns(), ids=[c[0] for c in _bad_txns()])
async def test_bad_transaction_is_refused_naming_the_field(
    cluster: Cluster, name: str, txn: pb.Txn, field: str
) -> None:
    async with grpc.aio.insecure_channel(
        cluster.address, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as ch:
        stub = coordinator_pb2_grpc.CoordinatorServiceStub(ch)
        tail_before = (await stub.Tail(cpb.TailRequest())).position
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Submit(cpb.SubmitRequest(request_id=uuid.uuid4().hex, txn=txn), timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        mapped = errors.from_rpc_error(raised.value)
        assert isinstance(mapped, errors.InvalidArgument)
        assert mapped.field == field, mapped.message
        # Nothing was logged, and the cluster still commits.
        assert (await stub.Tail(cpb.TailRequest())).position == tail_before
    async with ordo.connect(cluster.address) as db:
        r = await db.put(f"after-bad-input:{name}", 1)
        assert r.succeeded and r.position > tail_before


async def test_unknown_wait_mode_and_long_request_id_are_refused(cluster: Cluster) -> None:
    async with grpc.aio.insecure_channel(cluster.address) as ch:
        stub = coordinator_pb2_grpc.CoordinatorServiceStub(ch)
        for request, field in (
            (cpb.SubmitRequest(request_id="a", txn=_put(b"k"), wait=7), "wait"),
            (cpb.SubmitRequest(request_id="r" * (L.REQUEST_ID_BYTES_MAX + 1), txn=_put(b"k")),
             "request_id"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Submit(request, timeout=5)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert errors.from_rpc_error(raised.value).field == field


def test_client_refuses_values_ordo_cannot_store() -> None:
    with pytest.raises(TypeError):
        ordo.put("k", True)  # bool is not an int64 here
    with pytest.raises(TypeError):
        ordo.put("k", 2**63)
    with pytest.raises(TypeError):
        ordo.put("k", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ordo.append("k", ["nested"])  # type: ignore[arg-type]
