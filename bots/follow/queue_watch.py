"""Waking waiting followers only when their queue position may have moved meaningfully.

Positions are pulled, never pushed: the service says *that* the queue moved, and how many jobs
have left it so far (``queue_departures``: taken or cancelled). A job's position can only fall by
as many departures as happened since it was read, so a follower that wants to know when its
position reaches ``target`` sleeps until ``departures_then + (position - target)`` departures — a
heap keyed on that number. Engine availability (warm-up, a failed engine) wakes every sleeper,
which happens a handful of times per start. Work is proportional to the edits made, not to the
queue length squared.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Hashable
from typing import Protocol


class QueueSignals(Protocol):
    """What the watch needs from the service facade."""

    @property
    def queue_version(self) -> int: ...

    @property
    def queue_departures(self) -> int: ...

    def availability(self) -> Hashable: ...

    async def queue_moved(self, after: int) -> int: ...


def next_target(position: int) -> int:
    """The position worth the next edit: coarser the further back (200 → 66 → 22 → 7 → 2 → 1)."""
    return position // 3 if position > 3 else position - 1


class QueueWatch:
    """One per adapter: ``wait`` until enough jobs left the queue, or availability changed."""

    def __init__(self, service: QueueSignals) -> None:
        self._service = service
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._availability: Hashable = None  # read when ``run`` starts
        self._sleepers: set[asyncio.Future[None]] = set()

    async def run(self) -> None:
        """Follow the service's queue signal until cancelled."""
        version = self._service.queue_version
        self._availability = self._service.availability()
        while True:
            version = await self._service.queue_moved(version)
            self._wake()

    async def wait(self, position: int) -> None:
        """Return once the position read now (``position``) may have reached its next target."""
        departures = self._service.queue_departures + position - next_target(position)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (departures, next(self._seq), future))
        self._sleepers.add(future)
        try:
            await future
        finally:
            self._sleepers.discard(future)

    def _wake(self) -> None:
        availability = self._service.availability()
        if availability != self._availability:
            self._availability = availability
            for future in list(self._sleepers):
                if not future.done():
                    future.set_result(None)
            self._heap.clear()
            return
        departures = self._service.queue_departures
        while self._heap and self._heap[0][0] <= departures:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)
