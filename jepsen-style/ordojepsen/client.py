"""Test clients: the ordo client, routed through the client proxies.

The ordo client learns the shards' addresses from the coordinator's
``ClusterInfo``, which returns the addresses the coordinator was started
with: here, the proxies of the coordinator->shard links. Reads through those
would make a "coordinator cut off from s1" partition also cut the *clients*
off from s1. So test clients read through their own links (``client->s0``
...), given to ordo's client as ``shard_addresses``. Each link is a proxy
pair (gRPC and bus), so the client's streams take the bus as they would in
production, through the same faults. :class:`RoutedClient` overrides one
private method of the client (``_dial``) so that each client's gRPC channels
get their own TCP connection (gRPC otherwise shares one connection among all
identical channels of a process, so every "client" would be one).

:func:`classify` decides what an exception means for the history:
``fail`` only when the operation certainly did not take effect.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

import ordo
from ordo.errors import OrdoError

log = logging.getLogger("ordojepsen.client")


class RoutedClient(ordo.AsyncClient):
    def __init__(self, address: str, shard_addresses: list[str], *, timeout: float) -> None:
        super().__init__(address, timeout=timeout, shard_addresses=list(shard_addresses))

    def _dial(self, address: str) -> grpc.aio.Channel:
        """A channel with its own connection: gRPC shares one TCP connection
        among identical channels of a process, and each test client must be
        its own client (own connections, like a separate service)."""
        from ordo import rpc

        options = [*rpc.CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        return grpc.aio.insecure_channel(address, options=options)


def connect(coordinator: str, shards: list[str], timeout: float) -> RoutedClient:
    return RoutedClient(coordinator, shards, timeout=timeout)


async def close_quietly(client: ordo.AsyncClient | None) -> None:
    if client is None:
        return
    try:
        await asyncio.wait_for(client.close(), 2.0)
    except Exception:  # noqa: BLE001 - a broken channel is closed anyway
        pass


CERTAIN_FAILURES = (ordo.InvalidArgument, ordo.FailedPrecondition)


def classify(error: BaseException) -> tuple[str, str, dict[str, Any]]:
    """(type, error text, extra fields) for an exception raised by an op.

    ``fail``: the request was refused before it was logged (bad input, a
    request id reused) or the transaction ran and aborted deterministically.
    ``info``: everything else, including ResourceExhausted and Unavailable
    (the client retries those under the same request id, and a retry may
    follow an attempt that did reach the log) and every timeout.
    """
    extra: dict[str, Any] = {}
    position = getattr(error, "position", None) if isinstance(error, OrdoError) else None
    if isinstance(error, ordo.TransactionAborted):
        position = error.position
    if isinstance(position, int) and position:
        extra["position"] = position
    text = f"{type(error).__name__}: {error}"[:300]
    if isinstance(error, CERTAIN_FAILURES) or isinstance(error, ordo.TransactionAborted):
        return "fail", text, extra
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return "info", "timeout", extra
    if isinstance(error, grpc.aio.AioRpcError):
        return "info", f"grpc {error.code().name}", extra
    return "info", text, extra
