"""Clocks for follower tests: a manual one for unit tests, a fast one for adapter tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class ManualClock:
    """Time moves only when the test calls :meth:`advance`."""

    def __init__(self) -> None:
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in order and letting the loop run between."""
        end = self._now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self._now = end
        await settle()


class FastClock:
    """Real time, ``scale`` times faster: a 6 s edit interval passes in 6 / scale s."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._origin = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)


async def settle(rounds: int = 20) -> None:
    """Let every ready task run (a few loop turns)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
