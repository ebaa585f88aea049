"""Wait for a monotonically increasing position to reach a target."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class PositionWatch:
    """Futures resolved when ``advance`` passes their position.

    Waiting is bounded by the caller's timeout; a cancelled or timed-out
    waiter leaves a done future behind that the next advance discards.
    """

    # Abandoned waits (timed out, cancelled) are swept out once there are at
    # least this many and they are half the heap, so memory stays bounded.
    ABANDONED_SWEEP_MIN = 256

    def __init__(self, position: int = 0) -> None:
        self.position = position
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._abandoned = 0

    def advance(self, position: int) -> None:
        if position <= self.position:
            return
        self.position = position
        heap = self._heap
        while heap and heap[0][0] <= position:
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(None)

    async def wait(self, position: int, timeout_s: float | None) -> bool:
        """True once ``self.position >= position``; False if the timeout passed."""
        if self.position >= position:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (position, next(self._seq), future))
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            self._abandon()
            return False
        except asyncio.CancelledError:
            self._abandon()
            raise
        return True

    def future(self, position: int) -> asyncio.Future[None]:
        """A future resolved once ``self.position >= position``, for callbacks.

        Give it back with :meth:`drop` if it is no longer wanted.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.position >= position:
            future.set_result(None)
        else:
            heapq.heappush(self._heap, (position, next(self._seq), future))
        return future

    def drop(self, future: asyncio.Future[None]) -> None:
        if not future.done():
            future.cancel()
            self._abandon()

    def _abandon(self) -> None:
        self._abandoned += 1
        if self._abandoned >= self.ABANDONED_SWEEP_MIN and 2 * self._abandoned >= len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].done()]
            heapq.heapify(self._heap)
            self._abandoned = 0

    def fail_all(self, error: BaseException) -> None:
        for _, _, future in self._heap:
            if not future.done():
                future.set_exception(error)
        self._heap.clear()
