"""One TCP proxy per directed link, to partition and slow the network.

Every connection that one ordo process (or the test clients) opens to
another goes through the proxy for that directed link: "coordinator->s1",
"s1->coordinator", "s0->s2", "client->coordinator", "client->s0", ...
(the runner writes the proxies' addresses into the processes' command
lines). Per link, the nemesis can:

- **black-hole** it: stop forwarding bytes in both directions of every
  connection on the link, and leave new connections hanging unanswered, as
  a dropped route does. With ``reset=True`` it also aborts the existing
  connections (as a REJECT rule, or a partition long enough for keepalives
  to expire, would). Healing resumes forwarding; held bytes are delivered
  in order, because TCP never reorders or loses bytes inside a connection.
- **delay** it: forward each chunk no sooner than ``delay_s`` after it
  arrived, keeping the order.

It runs on its own event loop in a thread, so a busy client loop (or a
blocking call in the runner) never stalls the network. Only 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ordojepsen.proxy")

CHUNK_BYTES = 65536
HOST = "127.0.0.1"


@dataclass(eq=False)
class _Conn:
    link: Link
    client_writer: asyncio.StreamWriter
    upstream_writer: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closed: bool = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for w in (self.client_writer, self.upstream_writer):
            if w is not None:
                transport = w.transport
                if transport is not None:
                    transport.abort()
        for t in self.tasks:
            t.cancel()


class Link:
    """A listener that forwards to one target address; with ``bus_offset``,
    a second one, that many ports above, forwarding to the target's bus port
    (ordo's internal streams, see ordo.bus). Faults hit both alike."""

    def __init__(self, name: str, target: str, bus_offset: int = 0) -> None:
        self.name = name
        self.target = target
        self.bus_offset = bus_offset
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.bus_server: asyncio.base_events.Server | None = None
        self.open = asyncio.Event()
        self.open.set()
        self.delay_s = 0.0
        self.conns: set[_Conn] = set()
        self.bytes = 0
        self.accepted = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(
            lambda r, w: self._accept(r, w, self.target), HOST, port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]
        if self.bus_offset:
            host, target_port = self.target.rsplit(":", 1)
            bus_target = f"{host}:{int(target_port) + self.bus_offset}"
            self.bus_server = await asyncio.start_server(
                lambda r, w: self._accept(r, w, bus_target), HOST, self.port + self.bus_offset,
                reuse_address=True,
            )

    async def stop(self) -> None:
        for server in (self.server, self.bus_server):
            if server is not None:
                server.close()
        for c in list(self.conns):
            c.abort()
        self.conns.clear()

    def block(self, reset: bool) -> None:
        self.open.clear()
        if reset:
            for c in list(self.conns):
                c.abort()
            self.conns.clear()

    def heal(self) -> None:
        self.open.set()

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> None:
        conn = _Conn(self, writer)
        self.conns.add(conn)
        self.accepted += 1
        try:
            # A black-holed link answers nothing: the connect hangs until healed.
            await self.open.wait()
            host, port = target.rsplit(":", 1)
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port)), 5.0
                )
            except (OSError, TimeoutError):
                conn.abort()
                return
            if conn.closed:
                up_writer.transport.abort()
                return
            conn.upstream_writer = up_writer
            a = asyncio.create_task(self._pump(conn, reader, up_writer))
            b = asyncio.create_task(self._pump(conn, up_reader, writer))
            conn.tasks += [a, b]
            await asyncio.wait([a, b], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            conn.abort()
            self.conns.discard(conn)

    async def _pump(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy one direction. Chunks wait for the link to be open and for the delay."""
        queue: deque[tuple[float, bytes]] = deque()
        ready = asyncio.Event()
        eof = False

        async def read() -> None:
            nonlocal eof
            try:
                while True:
                    data = await reader.read(CHUNK_BYTES)
                    if not data:
                        break
                    queue.append((time.monotonic(), data))
                    ready.set()
                    # Backpressure: while the link is cut, stop reading, so
                    # bytes pile up in the kernel as they would on a dead route.
                    while len(queue) > 64 or not self.open.is_set():
                        await asyncio.sleep(0.01)
                        if self.open.is_set() and len(queue) <= 64:
                            break
            except (ConnectionError, OSError):
                pass
            finally:
                eof = True
                ready.set()

        reading = asyncio.create_task(read())
        try:
            while True:
                while not queue:
                    if eof:
                        return
                    ready.clear()
                    await ready.wait()
                arrived, data = queue[0]
                await self.open.wait()
                if self.delay_s > 0:
                    wait = arrived + self.delay_s - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await self.open.wait()
                queue.popleft()
                writer.write(data)
                self.bytes += len(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            reading.cancel()


class ProxyNet:
    """All the links, on an event loop in a background thread."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy-net",
                                       daemon=True)
        self.thread.start()

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add(self, name: str, target: str, port: int = 0, bus_offset: int = 0) -> str:
        """Start the proxy for link ``name`` to ``target`` (on ``port``, or
        any free one); returns its address."""

        async def start() -> Link:
            link = Link(name, target, bus_offset)
            await link.start(port)
            return link

        link = self._run(start())
        self.links[name] = link
        return link.address

    def address(self, name: str) -> str:
        return self.links[name].address

    def block(self, names: list[str], reset: bool = False) -> None:
        async def go() -> None:
            for n in names:
                self.links[n].block(reset)

        self._run(go())

    def heal(self, names: list[str] | None = None) -> None:
        async def go() -> None:
            for n in names if names is not None else list(self.links):
                self.links[n].heal()

        self._run(go())

    def set_delay(self, names: list[str], delay_s: float) -> None:
        async def go() -> None:
            for n in names:
                self.links[n].delay_s = delay_s

        self._run(go())

    def stats(self) -> dict[str, dict[str, int]]:
        return {n: {"bytes": link.bytes, "connections": link.accepted}
                for n, link in self.links.items()}

    def close(self) -> None:
        async def go() -> None:
            for link in self.links.values():
                await link.stop()

        try:
            self._run(go())
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
