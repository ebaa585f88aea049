"""Unit tests of the client's pure asyncio parts, with a fetch function the
test controls in place of the coordinator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ordo import errors
from ordo.client import _SharedTail


class Fetches:
    """Tail calls the test answers by hand, in the order they were made."""

    def __init__(self) -> None:
        self.calls: list[asyncio.Future[int]] = []

    async def __call__(self) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.calls.append(future)
        return await future


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_read_never_joins_a_tail_call_already_sent() -> None:
    fetches = Fetches()
    tails = _SharedTail(fetches)
    early = asyncio.create_task(tails.get(5.0))
    await settle()
    assert len(fetches.calls) == 1  # the first read's call went out
    # A write is acknowledged now; these reads begin after it.
    late = [asyncio.create_task(tails.get(5.0)) for _ in range(3)]
    await settle()
    assert len(fetches.calls) == 1, "no second call while one is in flight"
    fetches.calls[0].set_result(10)  # as of before the write
    await settle()
    assert early.done() and early.result() == 10
    assert not any(t.done() for t in late), "a late read must not take the earlier tail"
    assert len(fetches.calls) == 2, "the late reads share one new call"
    fetches.calls[1].set_result(11)
    assert await asyncio.gather(*late) == [11, 11, 11]
    assert len(fetches.calls) == 2


async def test_a_failed_tail_call_fails_its_readers_only() -> None:
    fetches = Fetches()
    tails = _SharedTail(fetches)
    first = [asyncio.create_task(tails.get(5.0)) for _ in range(2)]
    await settle()
    assert len(fetches.calls) == 1
    second = asyncio.create_task(tails.get(5.0))
    await settle()
    fetches.calls[0].set_exception(errors.Unavailable("coordinator gone"))
    for task in first:
        with pytest.raises(errors.Unavailable):
            await task
    await settle()
    fetches.calls[1].set_result(7)
    assert await second == 7


async def test_a_reader_that_gives_up_does_not_cancel_the_shared_call() -> None:
    fetches = Fetches()
    tails = _SharedTail(fetches)
    impatient = asyncio.create_task(tails.get(0.01))
    patient = asyncio.create_task(tails.get(5.0))
    with pytest.raises(errors.DeadlineExceeded):
        await impatient
    assert not fetches.calls[0].cancelled()
    fetches.calls[0].set_result(3)
    assert await patient == 3
    cancelled = asyncio.create_task(tails.get(5.0))
    other = asyncio.create_task(tails.get(5.0))
    await settle()
    assert len(fetches.calls) == 2, "reads begun in one loop pass share a call"
    cancelled.cancel()
    await settle()
    assert not fetches.calls[1].cancelled()
    fetches.calls[1].set_result(4)
    assert await other == 4


@pytest.mark.parametrize(("call", "name"), [
    (lambda db: db.get("k", min_position=-1), "min_position"),
    (lambda db: db.get("k", at_position=0), "at_position"),
    (lambda db: db.get_item("k", at_position=True), "at_position"),
    (lambda db: db.range("p", limit=-1), "limit"),
    (lambda db: db.history("k", from_position=-5), "from_position"),
    (lambda db: db.history("k", limit=-1), "limit"),
    (lambda db: db.result(position=0), "position"),
])
async def test_a_bad_position_or_limit_is_named_before_anything_is_sent(
    call: Any, name: str,
) -> None:
    """Positions and limits are checked by the client: protobuf alone would
    say "Value out of range" without naming the argument. Nothing listens
    at the address: the check comes before any call."""
    import ordo

    db = ordo.AsyncClient("127.0.0.1:1", timeout=1)
    with pytest.raises(ValueError, match=f"^{name} is an integer"):
        await call(db)


async def test_a_bad_watch_start_or_snapshot_position_is_named() -> None:
    import ordo

    db = ordo.AsyncClient("127.0.0.1:1", timeout=1)
    with pytest.raises(ValueError, match="^from_position is an integer"):
        await db.watch("k", from_position=-1).__anext__()
    with pytest.raises(ValueError, match="^position is an integer"):
        db.snapshot(0)
