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

    def __init__(self, position: int = 0) -> None:
        self.position = position
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

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
            return False
        return True

    def fail_all(self, error: BaseException) -> None:
        for _, _, future in self._heap:
            if not future.done():
                future.set_exception(error)
        self._heap.clear()
