"""Read-your-writes across stateless service instances, with a position token.

The problem
-----------
A notes service runs as several identical processes behind a load balancer.
A user saves a note (the request lands on instance A) and the page reloads
(the request lands on instance B). Instance B must show the note just saved,
not an older one. The usual answers all cost something: sticky sessions pin a
user to one instance (and break when it restarts), "read from the leader"
sends every read to one place, and a cache in front of a replica can simply
be behind.

Why the answer works
--------------------
In ordo every commit has a **position** in one totally ordered log, and
every shard applies the log in that order. The position is therefore a
*causality token*: "the state of the database including everything up to
position P" means the same thing on every shard, to every process, forever.
``POST /notes/<id>`` commits the note and returns ``{"position": P}``; the
browser (or the next service in the chain) passes it back as
``GET /notes/<id>?min_position=P``, and whichever instance answers calls
``db.get(key, min_position=P)``: the owning shard waits, if it has to, until
it has applied P, then reads. Nothing needs to remember who wrote what, no
session is sticky and no read goes to a leader; the token is a plain integer
that any process can carry and any process can wait for. A read with no
token is linearizable (the client first asks the coordinator for the log
tail), which is correct but costs an extra round trip; the token is cheaper
and says exactly how fresh the answer must be.

By default the POST answers as soon as the commit is durable in the log
(``wait="logged"``): the log has already decided the outcome (a plain put
cannot fail), so the position is final even though the shard may not have
applied it yet. That makes writes faster, and it is exactly the case where
the reader's ``min_position`` does real work. ``--wait applied`` answers
after the shard has applied it instead.

Run it (with a cluster from ``ordo dev`` on 127.0.0.1:7400)::

    python examples/read_your_writes.py --ordo 127.0.0.1:7400 --port 8080
    python examples/read_your_writes.py --ordo 127.0.0.1:7400 --port 8081
    curl -s -XPOST --data 'buy milk' localhost:8080/notes/n1
    # {"id": "n1", "position": 57}
    curl -s 'localhost:8081/notes/n1?min_position=57'
    # {"id": "n1", "text": "buy milk", "version": 57}

The HTTP layer is a deliberately small HTTP/1.1 server on ``asyncio.start_server``
(standard library only): keep-alive, ``Content-Length`` bodies with a size
limit, read timeouts, and JSON answers. ``--port 0`` picks a free port; the
first line on stdout is always ``listening on HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import ordo

NOTE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
BODY_BYTES_MAX = 64 * 1024  # well under ordo's value limit
HEADER_COUNT_MAX = 100
REQUEST_LINE_BYTES_MAX = 8 * 1024
IDLE_TIMEOUT_S = 30.0  # a keep-alive connection with no request is closed after this
READ_TIMEOUT_S = 10.0  # headers and body must arrive within this
REQUESTS_PER_CONNECTION_MAX = 1000
ORDO_TIMEOUT_S = 5.0  # per ordo call, including a min_position wait

REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


def note_key(note_id: str) -> str:
    return f"note:{note_id}"


class HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


class NotesService:
    def __init__(self, db: ordo.AsyncClient, wait: str) -> None:
        self.db = db
        self.wait = wait

    async def handle(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        url = urlsplit(target)
        path = unquote(url.path)
        if path == "/healthz":
            if method != "GET":
                raise HttpError(405, "use GET")
            return 200, {"ok": True}
        parts = path.split("/")
        if len(parts) != 3 or parts[1] != "notes" or not NOTE_ID.match(parts[2]):
            raise HttpError(404, "no such route; use /notes/<id> with id in [A-Za-z0-9_.-]")
        note_id = parts[2]
        if method == "POST":
            return await self.post(note_id, body)
        if method == "GET":
            return await self.get(note_id, parse_qs(url.query))
        raise HttpError(405, "use GET or POST")

    async def post(self, note_id: str, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "the note must be UTF-8 text") from None
        result = await self.db.put(note_key(note_id), text, wait=self.wait,
                                   timeout=ORDO_TIMEOUT_S)
        # The position is the causality token: hand it to whoever reads next.
        return 200, {"id": note_id, "position": result.position}

    async def get(self, note_id: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        min_position: int | None = None
        if "min_position" in query:
            raw = query["min_position"][-1]
            if not raw.isdigit() or int(raw) < 1:
                raise HttpError(400, "min_position is a log position, 1 or more")
            min_position = int(raw)
        # With a token: wait for that position on the owning shard, then read.
        # Without one: a linearizable read (ordo asks for the log tail first).
        item = await self.db.get_item(note_key(note_id), min_position=min_position,
                                      timeout=ORDO_TIMEOUT_S)
        if item.value is None:
            raise HttpError(404, "no such note", id=note_id)
        return 200, {"id": note_id, "text": item.value, "version": item.version}


async def read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, str, dict[str, str], bytes] | None:
    """One request: (method, target, version, headers, body); None on a clean close."""
    try:
        line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_S)
    except (TimeoutError, ConnectionError):
        return None
    except ValueError:  # longer than the stream's limit
        raise HttpError(400, "request line too long") from None
    if not line:
        return None
    if len(line) > REQUEST_LINE_BYTES_MAX or not line.endswith(b"\n"):
        raise HttpError(400, "request line too long or truncated")
    try:
        method, target, version = line.decode("latin-1").strip().split(" ")
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise HttpError(400, "only HTTP/1.x is spoken here")
    headers: dict[str, str] = {}
    async with asyncio.timeout(READ_TIMEOUT_S):
        while True:
            try:
                raw = await reader.readline()
            except ValueError:
                raise HttpError(400, "header line too long") from None
            if raw in (b"\r\n", b"\n"):
                break
            if not raw:
                raise HttpError(400, "connection closed inside the headers")
            if len(headers) >= HEADER_COUNT_MAX:
                raise HttpError(400, "too many headers")
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise HttpError(400, "malformed header")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise HttpError(501, "send the body with Content-Length, not a transfer encoding")
        body = b""
        if "content-length" in headers:
            length_text = headers["content-length"]
            if not length_text.isdigit():
                raise HttpError(400, "bad Content-Length")
            length = int(length_text)
            if length > BODY_BYTES_MAX:
                raise HttpError(413, f"the body is over {BODY_BYTES_MAX} bytes")
            try:
                body = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                raise HttpError(400, "connection closed inside the body") from None
        elif method == "POST":
            raise HttpError(411, "POST needs a Content-Length")
    return method, target, version, headers, body


def encode_response(status: int, payload: dict[str, Any], keep_alive: bool) -> bytes:
    body = json.dumps(payload).encode("utf-8") + b"\n"
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def ordo_error_status(error: ordo.OrdoError) -> tuple[int, dict[str, Any]]:
    if isinstance(error, ordo.DeadlineExceeded):
        # The shard did not reach min_position in time; say how far it got.
        return 504, {"error": str(error), "position": getattr(error, "position", None)}
    if isinstance(error, ordo.InvalidArgument):
        return 400, {"error": str(error)}
    if isinstance(error, ordo.OutOfRange):
        return 400, {"error": str(error)}
    if isinstance(error, (ordo.Unavailable, ordo.ResourceExhausted)):
        return 503, {"error": str(error)}
    return 502, {"error": str(error)}


async def serve_connection(
    service: NotesService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        for _ in range(REQUESTS_PER_CONNECTION_MAX):
            keep_alive = True
            try:
                request = await read_request(reader)
                if request is None:
                    return
                method, target, version, headers, body = request
                connection = headers.get("connection", "").lower()
                keep_alive = (connection == "keep-alive" if version == "HTTP/1.0"
                              else connection != "close")
                status, payload = await service.handle(method, target, body)
            except HttpError as error:
                status, payload, keep_alive = error.status, error.body, False
            except TimeoutError:
                status, payload, keep_alive = 408, {"error": "request too slow"}, False
            except ordo.OrdoError as error:
                status, payload = ordo_error_status(error)
            except Exception as error:  # noqa: BLE001 - answer, log, keep serving
                print(f"error: {error!r}", file=sys.stderr, flush=True)
                status, payload, keep_alive = 500, {"error": "internal error"}, False
            writer.write(encode_response(status, payload, keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except ConnectionError:
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def main_async(args: argparse.Namespace) -> None:
    async with ordo.connect(args.ordo, timeout=ORDO_TIMEOUT_S) as db:
        service = NotesService(db, args.wait)
        server = await asyncio.start_server(
            lambda r, w: serve_connection(service, r, w), args.host, args.port,
            limit=REQUEST_LINE_BYTES_MAX,
        )
        host, port = server.sockets[0].getsockname()[:2]
        print(f"listening on {host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()
        print("stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ordo", default="127.0.0.1:7400", help="coordinator address")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--wait", choices=("logged", "applied"), default="logged",
                        help="answer a POST once the commit is durable (logged) or applied")
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
