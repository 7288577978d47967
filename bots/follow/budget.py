"""One edit budget per platform, shared by every job that platform's adapter follows.

Status edits are the only messages a bot sends that nobody asked for, so they are the ones to
ration. The budget is a token bucket (``rate_per_s``, ``burst``) plus spacing per *lane* (a
Telegram chat, a Discord interaction token) derived from the platform's published limits:

- an edit waits for a token and for its lane's turn; waiters are served by priority (running
  jobs first, then waiting jobs nearest the front), skipping those whose lane is not ready;
- every other request the bot makes (a reply, a photo) :meth:`EditBudget.spend`\\ s a token at
  once without waiting, possibly going into debt, and pushes its lane's next edit back — so
  status edits yield to replies and results, never the other way round.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import math
from dataclasses import dataclass, field

from bots.follow.clock import Clock

RUNNING = 0.0  # priority of a running job's progress
WAITING = 1.0  # priority of a waiting job's position (plus a fraction for its place)


def waiting_priority(position: int) -> float:
    """Nearer the front first: 1.0 + a fraction that grows with the position."""
    return WAITING + position / (position + 1000.0)


@dataclass(frozen=True)
class Lane:
    """A place with its own rate limit: at least ``interval_s`` between two edits in it."""

    key: str
    interval_s: float


@dataclass(order=True)
class _Waiter:
    priority: float
    seq: int
    lane: Lane = field(compare=False)
    granted: asyncio.Future[None] = field(compare=False)


class EditBudget:
    """Token bucket + per-lane spacing + priorities; see the module docstring."""

    def __init__(self, clock: Clock, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("an edit budget needs rate_per_s > 0 and burst >= 1")
        self._clock = clock
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._refilled_at = clock.now()
        self._lane_next: dict[str, float] = {}
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._kick = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self.granted = 0  # edits allowed so far (for tests and /status)

    async def acquire(self, lane: Lane, priority: float) -> None:
        """Wait until an edit in ``lane`` may be made now; cancelling gives the turn up."""
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bisect.insort(self._waiters, _Waiter(priority, next(self._seq), lane, granted))
        self._kick.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="edit-budget")
        await granted

    def spend(self, lane: Lane | None) -> None:
        """Account for a request that is not a status edit (it goes first; edits wait)."""
        now = self._clock.now()
        self._refill(now)
        self._tokens = max(self._tokens - 1, -self._burst)
        if lane is not None:
            self._lane_next[lane.key] = max(self._lane_next.get(lane.key, now), now) + (
                lane.interval_s
            )

    async def close(self) -> None:
        """Stop the dispatcher (waiters stay pending; their tasks are being cancelled anyway)."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled_at)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._refilled_at = now

    async def _dispatch(self) -> None:
        while self._waiters:
            self._kick.clear()
            now = self._clock.now()
            self._refill(now)
            if self._tokens < 1:
                await self._pause((1 - self._tokens) / self._rate)
                continue
            waiter, lane_ready_at = self._next_ready(now)
            if waiter is None:
                if not self._waiters:
                    return
                await self._pause(lane_ready_at - now)
                continue
            self._tokens -= 1
            self._lane_next[waiter.lane.key] = now + waiter.lane.interval_s
            self.granted += 1
            waiter.granted.set_result(None)
            self._forget_old_lanes(now)

    def _next_ready(self, now: float) -> tuple[_Waiter | None, float]:
        """The first waiter by priority whose lane is ready, else when the next lane will be."""
        earliest = math.inf
        for index, waiter in enumerate(self._waiters):
            if waiter.granted.done():  # cancelled while waiting
                continue
            ready_at = self._lane_next.get(waiter.lane.key, -math.inf)
            if ready_at <= now:
                del self._waiters[index]
                self._drop_cancelled()
                return waiter, now
            earliest = min(earliest, ready_at)
        self._drop_cancelled()
        return None, earliest

    def _drop_cancelled(self) -> None:
        if any(w.granted.done() for w in self._waiters):
            self._waiters = [w for w in self._waiters if not w.granted.done()]

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` of clock time, or until a new waiter arrives."""
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait((sleep, kicked), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            kicked.cancel()

    def _forget_old_lanes(self, now: float) -> None:
        if len(self._lane_next) > 4096:
            self._lane_next = {k: t for k, t in self._lane_next.items() if t > now}
