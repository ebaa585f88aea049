"""The bus: ordo's streams on plain framed TCP, beside the gRPC API.

The three streams between services (``ReadLog`` from the coordinator to the
shards, ``StreamResults`` from the shards to the coordinator, ``ReadAt``
between shards) carry a message per log batch on every link, and the
client's two multiplexed streams (``SubmitStream`` to the coordinator,
``GetStream`` to each shard) a message per burst of calls. Through grpc.aio
each message costs about 60 µs of CPU at each end and a hop through gRPC's
threads. So these streams may also travel the way etcd's peer traffic and
Redis Cluster's bus do: on a second port, in a protocol of their own. The
bus port is the gRPC port plus the cluster's ``bus_port_offset`` (0: no bus,
everything on gRPC), which the coordinator's ``ClusterInfo`` reports to
clients. The gRPC API stays whole: every method, these included, is served
there too.

The same handlers serve both transports: a bus method is the gRPC handler
called with a small stand-in for its context. TLS (and mutual TLS) and the
bearer-token roles apply as on gRPC.

Wire format. Every frame is a 4-byte big-endian length, then a kind byte,
then the payload::

    HELLO    client, first frame: JSON {"method": "/ordo.v1.X/Y", "token": ...,
             "accept": true}
    ACCEPT   server, empty, at once, when the hello asked for it: the hello
             is taken (method served, token allowed). A client that asks
             waits up to ACCEPT_WAIT_S for it (or for the STATUS that refuses
             the hello), so a port where something accepts connections but
             is no bus (a proxy without a backend) fails in seconds, not
             after SILENCE_S. The Python client asks (it has gRPC to fall
             back on); the services' internal streams do not, so services
             of this version and of the one before it, which sent no ACCEPT
             and took none, still talk while a cluster is upgraded one
             process at a time.
    MESSAGE  a serialized request (client) or response (server)
    STATUS   server, last frame: a serialized google.rpc.Status (the error)
    PING     either side, every PING_INTERVAL_S; a side that hears nothing
             for SILENCE_S while it waits to read closes the stream (a cut
             link, a frozen peer). A side that is not reading (its consumer
             is busy) does not judge: its peer's pings wait in the socket.

A stream that ends without a STATUS frame broke; the client raises
``Unavailable``, as for a broken gRPC stream, and callers reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import status_pb2

from ordo import errors, security
from ordo.core.limits import GRPC_MESSAGE_BYTES_MAX
from ordo.security import TLSConfig

log = logging.getLogger("ordo.bus")

_HEADER = struct.Struct(">IB")
HELLO, MESSAGE, STATUS, PING, ACCEPT = 1, 2, 3, 4, 5
HELLO_BYTES_MAX = 4096
FRAME_BYTES_MAX = GRPC_MESSAGE_BYTES_MAX
PING_INTERVAL_S = 5.0
SILENCE_S = 20.0
HANDSHAKE_S = 10.0  # to connect (and the TLS handshake), and for the hello to arrive
ACCEPT_WAIT_S = 3.0  # for the server's answer to the hello
WRITE_BUFFER_HIGH = 1 << 20  # bytes queued in the socket before a writer waits


def address(grpc_address: str, offset: int) -> str:
    """The bus address of a service: its gRPC host, its port plus ``offset``."""
    host, _, port = grpc_address.rpartition(":")
    number = int(port) + offset
    if not 0 < number < 65536:
        raise ValueError(f"bus port {number} of {grpc_address} (offset {offset}) is not a port")
    return f"{host}:{number}"


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def server_ssl(tls: TLSConfig) -> ssl.SSLContext:
    if not (tls.cert and tls.key):
        raise ValueError("a TLS server needs a certificate and a key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tls.ca)
    return context


def client_ssl(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca)
    if tls.cert and tls.key:
        context.load_cert_chain(tls.cert, tls.key)
    return context


class _Connection:
    """Frames over one TCP (or TLS) connection, with pings both ways."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.heard = asyncio.get_running_loop().time()
        self.reading = False  # a receive() is waiting for bytes
        self.pinger: asyncio.Task[None] | None = None

    def start_pings(self) -> None:
        self.pinger = asyncio.create_task(self._ping())

    async def _ping(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            if self.writer.is_closing():
                return
            if self.reading and loop.time() - self.heard > SILENCE_S:
                log.info("bus peer silent for %.0f s: closing", SILENCE_S)
                self.writer.transport.abort()
                return
            self.send(PING, b"")

    def send(self, kind: int, payload: bytes) -> None:
        self.writer.write(_HEADER.pack(len(payload) + 1, kind) + payload)

    async def drain(self) -> None:
        if self.writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            await self.writer.drain()

    async def receive(self, limit: int | None = None) -> tuple[int, bytes] | None:
        """The next frame other than a ping; None at the end of the stream."""
        limit = FRAME_BYTES_MAX if limit is None else limit
        loop = asyncio.get_running_loop()
        # Silence counts from when this side starts listening.
        self.heard = max(self.heard, loop.time())
        self.reading = True
        try:
            while True:
                # OSError: a reset, an unreachable peer, a TLS record that
                # does not decrypt: all of them end the stream.
                try:
                    header = await self.reader.readexactly(_HEADER.size)
                except (asyncio.IncompleteReadError, OSError):
                    return None
                size, kind = _HEADER.unpack(header)
                if size < 1 or size - 1 > limit:
                    raise errors.InvalidArgument(f"bus frame of {size} bytes is over the limit")
                try:
                    payload = await self.reader.readexactly(size - 1)
                except (asyncio.IncompleteReadError, OSError):
                    return None
                self.heard = loop.time()
                if kind != PING:
                    return kind, payload
        finally:
            self.reading = False

    def close(self) -> None:
        if self.pinger is not None:
            self.pinger.cancel()
        self.writer.close()


class _Abort(Exception):
    def __init__(self, status: bytes) -> None:
        self.status = status


class _Context:
    """What the internal handlers use of grpc.aio.ServicerContext."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], peer: str) -> None:
        self._metadata, self._peer = metadata, peer

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        raise _Abort(_status_bytes(code, details, trailing_metadata))

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> None:
        return None


def _status_bytes(code: grpc.StatusCode, details: str, trailing_metadata: Any) -> bytes:
    for key, value in trailing_metadata or ():
        if key == errors.DETAILS_KEY:
            return bytes(value)
    return status_pb2.Status(code=code.value[0], message=details).SerializeToString()


def _error_bytes(error: errors.OrdoError) -> bytes:
    return bytes(errors.to_rpc_status(error).SerializeToString())


@dataclass(frozen=True, slots=True)
class Method:
    """A bus method: how to parse its requests, its (gRPC) handler, and
    whether the client streams requests (ReadAt) or sends one."""

    parse: Callable[[bytes], Any]
    handler: Callable[[Any, Any], AsyncIterator[Any]]
    client_streams: bool = False


class Server:
    def __init__(
        self,
        listen: str,
        methods: dict[str, Method],
        tls: TLSConfig | None = None,
        tokens: dict[str, str] | None = None,
        insecure_listen_any: bool = False,
    ) -> None:
        security.check_listen(listen, tls, insecure_listen_any)
        self.listen, self.methods, self.tokens = listen, methods, tokens
        self.ssl = server_ssl(tls) if tls is not None and tls.enabled else None
        self.server: asyncio.Server | None = None
        self.streams: set[asyncio.Task[None]] = set()
        self.stopping = False

    async def start(self) -> None:
        host, port = _split(self.listen)
        try:
            self.server = await asyncio.start_server(self._accept, host, port, ssl=self.ssl)
        except OSError as error:
            raise RuntimeError(f"cannot listen on {self.listen} (bus): {error}") from error

    async def stop(self) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.close()
        for task in list(self.streams):
            task.cancel()
        await asyncio.gather(*self.streams, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stopping:  # accepted just as stop() began
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self.streams.add(task)
        conn = _Connection(reader, writer)
        try:
            await self._serve(conn)
        except asyncio.CancelledError:
            pass
        except Exception:  # a handler's bug must not take the server down
            log.exception("bus stream failed")
        finally:
            self.streams.discard(task)
            conn.close()

    async def _serve(self, conn: _Connection) -> None:
        try:
            frame = await asyncio.wait_for(conn.receive(HELLO_BYTES_MAX), HANDSHAKE_S)
        except TimeoutError:
            return
        except errors.OrdoError as error:
            conn.send(STATUS, _error_bytes(error))
            return
        if frame is None:
            return
        try:
            method, token, accept = _hello(frame)
            entry = self.methods.get(method)
            if entry is None:
                conn.send(STATUS, _status_bytes(
                    grpc.StatusCode.UNIMPLEMENTED, f"no bus method {method}", ()))
                return
            metadata: tuple[tuple[str, str], ...] = (
                (("authorization", f"Bearer {token}"),) if token else ()
            )
            if self.tokens is not None:
                refusal = security.allowed(method, metadata, self.tokens)
                if refusal is not None:
                    raise refusal
        except errors.OrdoError as error:
            conn.send(STATUS, _error_bytes(error))
            return
        peer = conn.writer.get_extra_info("peername")
        context = _Context(metadata, f"bus:{peer}")
        if accept:
            conn.send(ACCEPT, b"")
        conn.start_pings()
        await self._run(conn, entry, context)

    async def _run(self, conn: _Connection, method: Method, context: _Context) -> None:
        bad_request: list[errors.OrdoError] = []
        gone = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            while True:
                try:
                    frame = await conn.receive()
                except errors.OrdoError as error:  # a frame over the limit
                    bad_request.append(error)
                    gone.set()
                    return
                if frame is None:
                    gone.set()
                    return
                kind, payload = frame
                if kind != MESSAGE:
                    bad_request.append(errors.InvalidArgument(f"unexpected bus frame {kind}"))
                    return
                try:
                    yield method.parse(payload)
                except Exception as error:
                    bad_request.append(errors.InvalidArgument(f"request does not parse: {error}"))
                    return

        stream = requests()
        if method.client_streams:
            output = method.handler(stream, context)
        else:
            try:
                first = await stream.__anext__()
            except StopAsyncIteration:
                if bad_request:
                    conn.send(STATUS, _error_bytes(bad_request[0]))
                return
            output = method.handler(first, context)

            async def watch() -> None:
                # Nothing more comes from a server-stream client but pings:
                # the end of its side means it went away.
                try:
                    async for _ in stream:
                        pass
                finally:
                    gone.set()

            watcher = asyncio.create_task(watch())
        status: bytes | None = None
        pump = asyncio.create_task(self._pump(conn, output))
        ended = asyncio.create_task(gone.wait())
        # The connection may also drop while the handler is not reading.
        lost = asyncio.create_task(conn.writer.wait_closed())
        try:
            await asyncio.wait({pump, ended, lost}, return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                status = pump.result()
        finally:
            for task in (pump, ended, lost):
                task.cancel()
            if not method.client_streams:
                watcher.cancel()
            await asyncio.gather(pump, ended, lost, return_exceptions=True)
        if bad_request and not status:
            # The handler stopped because its requests did: say why.
            status = _error_bytes(bad_request[0])
        if status is not None:
            conn.send(STATUS, status)
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()

    async def _pump(self, conn: _Connection, output: AsyncIterator[Any]) -> bytes | None:
        """Send what the handler yields; the closing status, if it failed."""
        try:
            async for message in output:
                conn.send(MESSAGE, message if isinstance(message, bytes)
                          else message.SerializeToString())
                await conn.drain()
        except _Abort as abort:
            return abort.status
        except errors.OrdoError as error:
            return _error_bytes(error)
        except ConnectionError:
            return None
        except Exception as error:  # a bug in a handler: say so, as gRPC would
            log.exception("bus handler failed")
            return _error_bytes(errors.Internal(f"handler failed: {error!r}"))
        return _OK


_OK = b""  # a STATUS frame with an empty payload: the stream ended cleanly


def _hello(frame: tuple[int, bytes]) -> tuple[str, str, bool]:
    kind, payload = frame
    if kind != HELLO:
        raise errors.InvalidArgument("a bus stream begins with a hello")
    try:
        hello = json.loads(payload)
        method, token = hello["method"], hello.get("token") or ""
        accept = hello.get("accept", False)
        if (not isinstance(method, str) or not isinstance(token, str)
                or not isinstance(accept, bool)):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise errors.InvalidArgument("the bus hello does not parse") from None
    return method, token, accept


class Call:
    """The client end of one bus stream, read and written like a grpc.aio call."""

    def __init__(self, conn: _Connection, parse: Callable[[bytes], Any]) -> None:
        self.conn, self.parse = conn, parse

    @classmethod
    async def open(
        cls, addr: str, method: str, parse: Callable[[bytes], Any],
        tls: TLSConfig | None = None, token: str | None = None, accept: bool = True,
    ) -> Call:
        """Connect and say hello. With ``accept``, also wait for the server to
        take the hello (see ACCEPT): a refusal is raised here, and silence
        past ACCEPT_WAIT_S is ``Unavailable``."""
        host, port = _split(addr)
        context = client_ssl(tls) if tls is not None and tls.enabled else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=context,
                    ssl_handshake_timeout=HANDSHAKE_S if context is not None else None,
                ),
                HANDSHAKE_S,
            )
        except (OSError, TimeoutError) as error:
            raise errors.Unavailable(f"bus {addr}: {error}") from None
        conn = _Connection(reader, writer)
        hello: dict[str, Any] = {"method": method, "token": token or ""}
        if accept:
            hello["accept"] = True
        conn.send(HELLO, json.dumps(hello).encode())
        if not accept:
            conn.start_pings()
            return cls(conn, parse)
        try:
            frame = await asyncio.wait_for(conn.receive(), ACCEPT_WAIT_S)
        except TimeoutError:
            conn.close()
            raise errors.Unavailable(
                f"bus {addr}: no answer to the hello in {ACCEPT_WAIT_S:g} s"
            ) from None
        except errors.OrdoError as error:  # a frame over the limit
            conn.close()
            raise errors.Unavailable(f"bus {addr}: {error.message}") from None
        except BaseException:  # cancelled
            conn.close()
            raise
        if frame is None or frame[0] != ACCEPT:
            conn.close()
            if frame is not None and frame[0] == STATUS and frame[1]:
                try:
                    error = errors.from_status_bytes(frame[1])
                except Exception:
                    raise errors.Unavailable(f"bus {addr}: status does not parse") from None
                raise error
            what = "hung up" if frame is None else f"answered with frame {frame[0]}"
            raise errors.Unavailable(f"bus {addr}: {what} instead of accepting the hello")
        conn.start_pings()
        return cls(conn, parse)

    async def write(self, message: Any) -> None:
        if self.conn.writer.is_closing():
            raise errors.Unavailable("bus stream closed")
        self.conn.send(MESSAGE, message.SerializeToString())
        try:
            await self.conn.drain()
        except OSError as error:
            raise errors.Unavailable(f"bus stream broke: {error}") from None

    async def read(self) -> Any:
        """The next message; ``grpc.aio.EOF`` when the server ended the
        stream cleanly. Raises the server's error, or ``Unavailable``."""
        try:
            frame = await self.conn.receive()
        except errors.OrdoError as error:  # a frame over the limit
            self.cancel()
            raise errors.Unavailable(f"bus stream broke: {error.message}") from None
        if frame is None:
            raise errors.Unavailable("bus stream broke")
        kind, payload = frame
        if kind == MESSAGE:
            try:
                return self.parse(payload)
            except Exception as error:
                self.cancel()
                raise errors.Unavailable(f"bus message does not parse: {error}") from None
        if kind == STATUS:
            self.cancel()
            if not payload:
                return grpc.aio.EOF
            try:
                error = errors.from_status_bytes(payload)
            except Exception:
                raise errors.Unavailable("bus status does not parse") from None
            raise error
        raise errors.Unavailable(f"unexpected bus frame {kind}")

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            while True:
                message = await self.read()
                if message is grpc.aio.EOF:
                    return
                yield message
        finally:
            self.cancel()

    def cancel(self) -> None:
        self.conn.close()


async def server_stream(
    addr: str, method: str, request: Any, parse: Callable[[bytes], Any],
    tls: TLSConfig | None = None, token: str | None = None,
) -> Call:
    """Open a server-streaming bus call: send the one request, then iterate."""
    call = await Call.open(addr, method, parse, tls, token)
    await call.write(request)
    return call


async def open_stream(
    transport: Any, grpc_address: str, method: str, parse: Callable[[bytes], Any],
    request: Any = None,
) -> Call:
    """A bus call between services to the one at ``grpc_address`` (an
    ``rpc.Transport`` says how: TLS, token, port offset); with ``request``,
    server-streaming. It does not wait for an ACCEPT (see the module)."""
    addr = address(grpc_address, transport.bus_port_offset)
    call = await Call.open(addr, method, parse, transport.tls, transport.token, accept=False)
    if request is not None:
        await call.write(request)
    return call
