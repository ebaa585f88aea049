"""Running one service process: event loop, logging, signals, graceful stop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any, Protocol


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


SWITCH_INTERVAL_S = 0.0005


def run(make_service: Any) -> int:
    """Start the service, run until SIGTERM or SIGINT, then stop it cleanly."""
    # The event loop thread is busy under load; the disk threads (log
    # appends, fsyncs) need the GIL only briefly around each call into
    # LevelDB, and with the default 5 ms switch interval each such hand-over
    # costs them up to 5 ms. A shorter interval bounds that wait.
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    async def main() -> int:
        service: Service = make_service()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service.start()
        await stop.wait()
        await service.stop()
        return 0

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def critical_task(coro: Any, name: str) -> asyncio.Task[Any]:
    """A task the service cannot live without: if it fails, the process exits.

    A broken invariant in the apply or sequencing path must stop the process
    (and let its supervisor restart it from durable state) rather than leave
    a service that answers but no longer makes progress.
    """
    task = asyncio.create_task(coro, name=name)

    def done(t: asyncio.Task[Any]) -> None:
        if t.cancelled():
            return
        error = t.exception()
        if error is not None:
            logging.getLogger("ordo").critical(
                "task %s failed; exiting", name, exc_info=(type(error), error, error.__traceback__)
            )
            logging.shutdown()
            os._exit(70)

    task.add_done_callback(done)
    return task
