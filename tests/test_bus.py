"""The bus (ordo.bus): framed internal streams over real loopback TCP and TLS."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordo import bus, errors, rpc, security
from ordo.cli import port_free
from ordo.v1 import shard_pb2 as spb
from tests.conftest import stream_transport

READ_AT = "/ordo.v1.ShardService/ReadAt"
RESULTS = "/ordo.v1.ShardService/StreamResults"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Handlers:
    def __init__(self) -> None:
        self.closed = asyncio.Event()  # a server-stream handler was closed

    async def results(self, request: spb.StreamResultsRequest, context: Any) -> AsyncIterator[Any]:
        try:
            start = request.from_position
            if start == 999:
                raise errors.OutOfRange("below the horizon", oldest_position=1000)
            if start == 998:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused by abort")
            if start == 997:
                await asyncio.sleep(3600)  # until the client goes away
            for position in range(start, start + 5):
                # Pre-serialized bytes pass untouched, as ReadLog sends them.
                message = spb.StreamResultsResponse(applied_position=position)
                yield message.SerializeToString() if position % 2 else message
        finally:
            self.closed.set()

    async def read_at(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            yield spb.ReadAtResponse(
                answers=[spb.ReadAtAnswer(position=q.position) for q in request.reads]
            )


def _methods(h: Handlers) -> dict[str, bus.Method]:
    return {
        RESULTS: bus.Method(spb.StreamResultsRequest.FromString, h.results),
        READ_AT: bus.Method(spb.ReadAtRequest.FromString, h.read_at, client_streams=True),
    }


async def _server(h: Handlers, **kw: Any) -> tuple[bus.Server, str]:
    addr = f"127.0.0.1:{_port()}"
    server = bus.Server(addr, _methods(h), **kw)
    await server.start()
    return server, addr


async def _results(addr: str, start: int, **kw: Any) -> list[int]:
    call = await bus.Call.open(addr, RESULTS, spb.StreamResultsResponse.FromString, **kw)
    await call.write(spb.StreamResultsRequest(from_position=start))
    return [m.applied_position async for m in call]


def test_address_offsets() -> None:
    assert bus.address("127.0.0.1:7400", 4) == "127.0.0.1:7404"
    assert bus.address("[::1]:7401", 100) == "[::1]:7501"
    with pytest.raises(ValueError):
        bus.address("127.0.0.1:65530", 10)


async def test_server_stream_then_clean_end() -> None:
    h = Handlers()
    server, addr = await _server(h)
    try:
        assert await _results(addr, 10) == [10, 11, 12, 13, 14]
    finally:
        await server.stop()


async def test_errors_arrive_as_ordo_errors_with_details() -> None:
    h = Handlers()
    server, addr = await _server(h)
    try:
        with pytest.raises(errors.OutOfRange) as info:
            await _results(addr, 999)
        assert info.value.oldest_position == 1000
        with pytest.raises(errors.FailedPrecondition, match="refused by abort"):
            await _results(addr, 998)
        # A hello the server does not take is refused at once, by open().
        with pytest.raises(errors.OrdoError) as unknown:
            await bus.Call.open(addr, "/ordo.v1.ShardService/Nope", bytes)
        # ordo has no class of its own for UNIMPLEMENTED; the message names it.
        assert "UNIMPLEMENTED" in unknown.value.message
    finally:
        await server.stop()


async def test_bidirectional_stream() -> None:
    h = Handlers()
    server, addr = await _server(h)
    try:
        call = await bus.Call.open(addr, READ_AT, spb.ReadAtResponse.FromString)
        for first in (1, 10, 100):
            await call.write(spb.ReadAtRequest(reads=[
                spb.ReadAtQuery(position=first + i, keys=[b"k"]) for i in range(3)
            ]))
        got = []
        for _ in range(3):
            got += [a.position for a in (await call.read()).answers]
        assert got == [1, 2, 3, 10, 11, 12, 100, 101, 102]
        call.cancel()
    finally:
        await server.stop()


async def test_client_going_away_closes_the_handler() -> None:
    h = Handlers()
    server, addr = await _server(h)
    try:
        call = await bus.Call.open(addr, RESULTS, spb.StreamResultsResponse.FromString)
        await call.write(spb.StreamResultsRequest(from_position=997))
        await asyncio.sleep(0.1)
        assert not h.closed.is_set()
        call.cancel()
        await asyncio.wait_for(h.closed.wait(), 5)
    finally:
        await server.stop()


async def test_a_dead_server_is_unavailable() -> None:
    with pytest.raises(errors.Unavailable):
        await bus.Call.open(f"127.0.0.1:{_port()}", RESULTS, bytes)


async def test_server_killed_mid_stream_is_unavailable_not_a_clean_end() -> None:
    h = Handlers()
    server, addr = await _server(h)
    call = await bus.Call.open(addr, RESULTS, spb.StreamResultsResponse.FromString)
    await call.write(spb.StreamResultsRequest(from_position=997))
    await asyncio.sleep(0.1)
    await server.stop()
    with pytest.raises(errors.Unavailable):
        await call.read()


async def test_tokens_and_roles() -> None:
    h = Handlers()
    tokens = {"r": "read", "a": "admin"}
    server, addr = await _server(h, tokens=tokens)
    try:
        with pytest.raises(errors.Unauthenticated):
            await _results(addr, 1)
        with pytest.raises(errors.Unauthenticated):
            await _results(addr, 1, token="nobody")
        with pytest.raises(errors.PermissionDenied):
            await _results(addr, 1, token="r")
        assert await _results(addr, 1, token="a") == [1, 2, 3, 4, 5]
    finally:
        await server.stop()


async def test_mutual_tls() -> None:
    h = Handlers()
    with tempfile.TemporaryDirectory() as folder:
        tls = security.make_dev_certificates(folder)
        assert tls.client_auth
        server, addr = await _server(h, tls=tls)
        try:
            assert await _results(addr, 3, tls=tls) == [3, 4, 5, 6, 7]
            # Without a client certificate the handshake fails: no stream.
            anonymous = security.TLSConfig(ca=tls.ca)
            with pytest.raises(errors.Unavailable):
                await _results(addr, 3, tls=anonymous)
            # Plain TCP to a TLS bus gets nowhere either.
            with pytest.raises(errors.Unavailable):
                await _results(addr, 3)
        finally:
            await server.stop()


def test_refuses_a_wildcard_address_without_tls() -> None:
    with pytest.raises(SystemExit, match="without TLS"):
        bus.Server("0.0.0.0:7999", {})


async def _raw(addr: str, *frames: tuple[int, bytes]) -> bytes:
    """Send raw frames; what the server sends back before it closes."""
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    for kind, payload in frames:
        writer.write(struct.pack(">IB", len(payload) + 1, kind) + payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def _kinds(data: bytes) -> list[int]:
    kinds = []
    while data:
        size, kind = struct.unpack(">IB", data[:5])
        kinds.append(kind)
        data = data[4 + size:]
    return kinds


def _status(data: bytes) -> errors.OrdoError:
    """The STATUS frame of ``data``, after the ACCEPT of a hello taken."""
    size, kind = struct.unpack(">IB", data[:5])
    if kind == bus.ACCEPT:
        return _status(data[4 + size:])
    assert kind == bus.STATUS, kind
    return errors.from_status_bytes(data[5:4 + size])


async def test_hostile_frames_get_invalid_argument() -> None:
    h = Handlers()
    server, addr = await _server(h)
    hello = json.dumps({"method": RESULTS}).encode()
    try:
        # No hello first, a hello that is not JSON, an oversized hello.
        for frames in (
            [(bus.MESSAGE, b"")],
            [(bus.HELLO, b"{nope")],
            [(bus.HELLO, b"x" * (bus.HELLO_BYTES_MAX + 1))],
            [(bus.HELLO, json.dumps({"method": 7}).encode())],
            # A request that does not parse, a second hello.
            [(bus.HELLO, hello), (bus.MESSAGE, b"\xff\xff\xff")],
            [(bus.HELLO, hello), (bus.HELLO, hello)],
        ):
            assert isinstance(_status(await _raw(addr, *frames)), errors.InvalidArgument), frames
        # The server still serves.
        assert await _results(addr, 1) == [1, 2, 3, 4, 5]
    finally:
        await server.stop()


async def test_open_fails_soon_where_something_accepts_and_says_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bus, "ACCEPT_WAIT_S", 0.3)
    heard: list[bytes] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.read())
        writer.close()

    port = _port()
    server = await asyncio.start_server(mute, "127.0.0.1", port)
    try:
        with pytest.raises(errors.Unavailable, match="no answer to the hello"):
            await asyncio.wait_for(bus.Call.open(f"127.0.0.1:{port}", RESULTS, bytes), 5)
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.05)
        assert heard and heard[0][4] == bus.HELLO  # it was asked, then the socket closed
    finally:
        server.close()


async def test_accept_is_sent_when_asked_and_only_then() -> None:
    """A hello of the version before ACCEPT (no "accept" key) gets none, so
    a service of that version still reads this one's streams."""
    h = Handlers()
    server, addr = await _server(h)
    try:
        request = spb.StreamResultsRequest(from_position=1).SerializeToString()
        for asked, first in ((True, bus.ACCEPT), (False, bus.MESSAGE)):
            hello = {"method": RESULTS, **({"accept": True} if asked else {})}
            data = await _raw(addr, (bus.HELLO, json.dumps(hello).encode()),
                              (bus.MESSAGE, request))
            kinds = _kinds(data)
            assert kinds[0] == first and kinds.count(bus.ACCEPT) == (1 if asked else 0), kinds
            assert kinds.count(bus.MESSAGE) == 5 and kinds[-1] == bus.STATUS
    finally:
        await server.stop()


async def test_internal_streams_read_a_server_that_sends_no_accept() -> None:
    """The services' own streams (``open_stream``) do not wait for ACCEPT: a
    server of the version before it, which never sends one, serves them."""

    async def old_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # the hello and the request
        payload = spb.StreamResultsResponse(applied_position=7).SerializeToString()
        writer.write(struct.pack(">IB", len(payload) + 1, bus.MESSAGE) + payload)
        writer.write(struct.pack(">IB", 1, bus.STATUS))
        await writer.drain()
        writer.close()

    port = _port()
    server = await asyncio.start_server(old_server, "127.0.0.1", port)
    try:
        call = await bus.open_stream(
            rpc.Transport(bus_port_offset=1), f"127.0.0.1:{port - 1}", RESULTS,
            spb.StreamResultsResponse.FromString, spb.StreamResultsRequest(from_position=1))
        assert [m.applied_position async for m in call] == [7]
    finally:
        server.close()


async def test_a_silent_peer_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus, "PING_INTERVAL_S", 0.05)
    monkeypatch.setattr(bus, "SILENCE_S", 0.3)
    h = Handlers()
    server, addr = await _server(h)
    try:
        hello = json.dumps({"method": RESULTS}).encode()
        request = spb.StreamResultsRequest(from_position=997).SerializeToString()
        # A client that never pings: the server closes on it, and the
        # handler is closed with it.
        data = await _raw(addr, (bus.HELLO, hello), (bus.MESSAGE, request))
        assert _kinds(data)[0] == bus.PING  # no ACCEPT: the hello did not ask for one
        await asyncio.wait_for(h.closed.wait(), 5)
    finally:
        await server.stop()


# ------------------------------------------------------------ in a cluster


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


async def _transfers(address: str, n: int) -> None:
    """Cross-shard transfers, then every balance read back exactly."""
    import ordo

    async with ordo.connect(address) as db:
        await db.txn(then=[ordo.put(f"acct:{i}", 100) for i in range(6)])
        for k in range(n):
            a, b = k % 6, (k * 5 + 1) % 6
            if a != b:
                await db.txn(when=[ordo.int_value(f"acct:{a}") >= 1],
                             then=[ordo.add(f"acct:{a}", -1), ordo.add(f"acct:{b}", 1)])
        balances = [await db.get(f"acct:{i}") for i in range(6)]
        assert sum(balances) == 600 and min(balances) >= 0, balances


async def test_a_dev_cluster_streams_internally_over_the_bus(cluster: Any) -> None:
    """The bus ReadLog of a running coordinator carries the same log as its
    gRPC ReadLog, and every service listens on its bus port."""
    from ordo import rpc
    from ordo.cli import dev_bus_port_offset
    from ordo.v1 import coordinator_pb2 as cpb
    from ordo.v1 import coordinator_pb2_grpc

    offset = dev_bus_port_offset(cluster.shards)
    assert all(_listening(bus.address(a, offset)) for a in cluster.addresses)
    await _transfers(cluster.address, 30)
    request = cpb.ReadLogRequest(from_position=1, reader="test")
    transport = rpc.Transport(bus_port_offset=offset)
    call = await bus.open_stream(transport, cluster.address, "/ordo.v1.SequencerService/ReadLog",
                                 cpb.ReadLogResponse.FromString, request)
    over_bus = (await call.read()).batch
    call.cancel()
    async with transport.channel(cluster.address) as channel:
        stream = coordinator_pb2_grpc.SequencerServiceStub(channel).ReadLog(request)
        over_grpc = (await stream.read()).batch
        stream.cancel()
    assert over_bus.entries[0].HasField("shard_map")
    assert over_bus == over_grpc


async def test_internal_streams_can_stay_on_grpc() -> None:
    """--bus-port-offset 0: no bus port, and the cluster works as before."""
    from tests.conftest import Cluster, free_port_block

    with tempfile.TemporaryDirectory(prefix="ordo-test-") as data:
        c = Cluster(shards=3, data=data, port=free_port_block(4),
                    extra=["--bus-port-offset", "0"])
        c.start()
        try:
            from ordo.cli import dev_bus_port_offset

            offset = dev_bus_port_offset(3)
            assert not any(_listening(bus.address(a, offset)) for a in c.addresses)
            await _transfers(c.address, 30)
        finally:
            assert c.stop() == [0, 0, 0, 0], c.logs()


async def test_a_client_carries_its_streams_on_the_bus(cluster: Any) -> None:
    """The coordinator reports the cluster's bus; a client's transaction and
    read streams go there (with ``bus=False``, on gRPC), and both see the
    same data."""
    import ordo

    async with ordo.connect(cluster.address) as db, \
            ordo.connect(cluster.address, bus=False) as plain:
        run = uuid.uuid4().hex[:8]
        keys = [f"via:{run}:{i}" for i in range(6)]
        r = await db.txn(then=[ordo.put(k, i) for i, k in enumerate(keys)])
        assert [await plain.get(k, min_position=r.position) for k in keys] == list(range(6))
        r = await plain.add(keys[0], 10)
        assert [await db.get(k, min_position=r.position) for k in keys] == [10, 1, 2, 3, 4, 5]
        assert stream_transport(db._pipe) == "bus"
        assert {stream_transport(p) for p in db._get_pipes.values()} == {"bus"}
        assert stream_transport(plain._pipe) == "grpc"
        assert {stream_transport(p) for p in plain._get_pipes.values()} == {"grpc"}


@pytest.mark.parametrize("bus_port", ["closed", "not-a-bus", "silent", "without-the-method"])
async def test_a_client_uses_grpc_where_the_bus_does_not_answer(
    cluster: Any, bus_port: str,
) -> None:
    """Behind a proxy that forwards the gRPC port alone, the client's
    transactions still go through, on gRPC: whether nothing listens at the
    bus port, something there accepts and hangs up, something there accepts
    and says nothing (within the call's 5 s, far less than the bus's silence
    limit), or a bus there does not serve the method (an older ordo,
    mid-upgrade)."""
    import ordo
    from ordo.cli import dev_bus_port_offset

    target_host, target_port = cluster.address.rsplit(":", 1)

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target_host, int(target_port))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer),
                             return_exceptions=True)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    offset = dev_bus_port_offset(cluster.shards)
    servers: list[asyncio.Server] = []
    for _ in range(20):  # a proxy port whose bus port (port + offset) is free
        proxy = await asyncio.start_server(forward, "127.0.0.1", 0)
        port = proxy.sockets[0].getsockname()[1]
        if port_free(port + offset, "127.0.0.1"):
            servers.append(proxy)
            break
        proxy.close()
    else:
        raise AssertionError("no proxy port with a free bus port")
    if bus_port in ("not-a-bus", "silent"):
        servers.append(await asyncio.start_server(
            hang_up if bus_port == "not-a-bus" else say_nothing, "127.0.0.1", port + offset))
    other_bus = bus.Server(f"127.0.0.1:{port + offset}", {})
    if bus_port == "without-the-method":
        await other_bus.start()
    try:
        async with ordo.connect(f"127.0.0.1:{port}", timeout=5) as db:
            key = f"proxied:{uuid.uuid4().hex}"
            r = await db.add(key, 7)
            assert r.succeeded
            assert await db.get(key, min_position=r.position) == 7
            assert stream_transport(db._pipe) == "grpc"
            # Only the coordinator's bus is missing here: reads (straight to
            # the shards) stay on theirs.
            assert {stream_transport(p) for p in db._get_pipes.values()} == {"bus"}
    finally:
        for server in servers:
            server.close()
        if bus_port == "without-the-method":
            await other_bus.stop()


async def test_a_failing_handler_answers_internal_and_the_server_goes_on() -> None:
    async def broken(request: Any, context: Any) -> AsyncIterator[Any]:
        yield spb.StreamResultsResponse(applied_position=1)
        raise KeyError("a bug")

    addr = f"127.0.0.1:{_port()}"
    server = bus.Server(addr, {RESULTS: bus.Method(spb.StreamResultsRequest.FromString, broken)})
    await server.start()
    try:
        for _ in range(2):
            call = await bus.Call.open(addr, RESULTS, spb.StreamResultsResponse.FromString)
            await call.write(spb.StreamResultsRequest())
            assert (await call.read()).applied_position == 1
            with pytest.raises(errors.Internal, match="a bug"):
                await call.read()
    finally:
        await server.stop()


async def test_an_oversized_frame_ends_the_stream_with_invalid_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bus, "FRAME_BYTES_MAX", 1000)
    h = Handlers()
    server, addr = await _server(h)
    try:
        hello = json.dumps({"method": READ_AT}).encode()
        status = _status(await _raw(addr, (bus.HELLO, hello), (bus.MESSAGE, b"\x00" * 2000)))
        assert isinstance(status, errors.InvalidArgument)
    finally:
        await server.stop()


_frames = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=64)), min_size=1, max_size=4
)


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=256), frames=_frames, method=st.sampled_from([READ_AT, RESULTS]))
def test_garbage_never_breaks_the_server(raw: bytes, frames: list[tuple[int, bytes]],
                                         method: str) -> None:
    """Bytes that are not frames, and frames of any kind after a valid
    hello: each connection ends (with a status or not), and the server
    serves the next one."""

    async def go() -> None:
        h = Handlers()
        server, addr = await _server(h)
        try:
            host, port = addr.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(raw)
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
            hello = json.dumps({"method": method}).encode()
            sent = [(bus.HELLO, hello)] + [(k, p) for k, p in frames if k != bus.PING]
            reader, writer = await asyncio.open_connection(host, int(port))
            for kind, payload in sent:
                writer.write(struct.pack(">IB", len(payload) + 1, kind) + payload)
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert await _results(addr, 1) == [1, 2, 3, 4, 5]
        finally:
            await server.stop()

    asyncio.run(go())


async def test_a_peer_that_pings_is_kept_while_the_handler_does_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Silence is judged only while a side waits to read: a handler that is
    busy (a ReadAt waiting for the log) keeps a live client."""
    monkeypatch.setattr(bus, "PING_INTERVAL_S", 0.05)
    monkeypatch.setattr(bus, "SILENCE_S", 0.3)

    async def slow(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(1.0)  # more than three silences without reading
        async for request in requests:
            yield spb.ReadAtResponse(answers=[spb.ReadAtAnswer(position=request.reads[0].position)])

    addr = f"127.0.0.1:{_port()}"
    server = bus.Server(addr, {READ_AT: bus.Method(spb.ReadAtRequest.FromString, slow, True)})
    await server.start()
    try:
        call = await bus.Call.open(addr, READ_AT, spb.ReadAtResponse.FromString)
        await call.write(spb.ReadAtRequest(reads=[spb.ReadAtQuery(position=7)]))
        answer = await asyncio.wait_for(call.read(), 5)
        assert answer.answers[0].position == 7
        call.cancel()
    finally:
        await server.stop()


async def test_a_client_gone_while_the_handler_does_not_read_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server's next ping meets the closed socket: the stream ends
    within two ping intervals even if the handler never reads or writes."""
    monkeypatch.setattr(bus, "PING_INTERVAL_S", 0.1)
    closed = asyncio.Event()

    async def deaf(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        try:
            await asyncio.sleep(3600)
            yield spb.ReadAtResponse()
        finally:
            closed.set()

    addr = f"127.0.0.1:{_port()}"
    server = bus.Server(addr, {READ_AT: bus.Method(spb.ReadAtRequest.FromString, deaf, True)})
    await server.start()
    try:
        call = await bus.Call.open(addr, READ_AT, spb.ReadAtResponse.FromString)
        await call.write(spb.ReadAtRequest())
        await asyncio.sleep(0.1)
        call.cancel()
        await asyncio.wait_for(closed.wait(), 5)
        assert not server.streams
    finally:
        await server.stop()


async def test_a_connection_without_a_hello_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus, "HANDSHAKE_S", 0.3)
    h = Handlers()
    server, addr = await _server(h, tokens={"a": "admin"})
    try:
        host, port = addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing said
        writer.close()
        assert not server.streams
    finally:
        await server.stop()


@pytest.mark.parametrize("accepted", [True, False])
async def test_a_status_that_does_not_parse_is_unavailable(accepted: bool) -> None:
    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        if accepted:
            writer.write(struct.pack(">IB", 1, bus.ACCEPT))
        payload = b"\xff\xff\xff"
        writer.write(struct.pack(">IB", len(payload) + 1, bus.STATUS) + payload)
        await writer.drain()
        writer.close()

    port = _port()
    server = await asyncio.start_server(liar, "127.0.0.1", port)
    try:
        if not accepted:  # in place of the hello's answer
            with pytest.raises(errors.Unavailable, match="status does not parse"):
                await bus.Call.open(f"127.0.0.1:{port}", RESULTS, bytes)
            return
        call = await bus.Call.open(f"127.0.0.1:{port}", RESULTS, bytes)
        await call.write(spb.StreamResultsRequest())
        with pytest.raises(errors.Unavailable):
            await call.read()
    finally:
        server.close()
