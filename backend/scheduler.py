"""Fair ordering of queued jobs, queue positions, and handing jobs to idle workers.

Order: round-robin across users, FIFO within a user. Each queued job gets a key
``(round, seq)``: a user's next job goes into the round after their previous queued job, and never
into a round that has already been served (``round >= current_round``), so a newcomer's first job
runs before anyone's second. Inside a round, jobs run in the order they were accepted (``seq``).
The keys are kept in one sorted list, so a job's position is a binary search: O(log n) per
position, O(n) memmove per insert, which stays in microseconds at the queue sizes we allow.

Estimates from these positions are ``backend.estimates``'.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

UserKey = tuple[str, str]  # (platform, user id)


class _Key(NamedTuple):
    """Sort key of a queued job; a tuple so that ``bisect`` compares in C (seq is unique)."""

    round: int
    seq: int
    job_id: str


@dataclass
class _UserQueue:
    keys: deque[_Key] = field(default_factory=deque)


class QueueClosed(Exception):
    """``take`` was called (or was waiting) after ``close``."""


class FairQueue:
    """Queued job ids in fair order, with positions; ``take`` waits for the next one."""

    def __init__(self) -> None:
        self._order: list[_Key] = []
        self._by_job: dict[str, tuple[_Key, UserKey, int]] = {}  # job → key, user, steps
        self._users: dict[UserKey, _UserQueue] = {}
        self._current_round = 0
        self._total_steps = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._by_job

    @property
    def total_steps(self) -> int:
        """Denoising steps of every queued job together."""
        return self._total_steps

    @property
    def mean_steps(self) -> float | None:
        """Mean denoising steps of a queued job; None when the queue is empty."""
        return self._total_steps / len(self._order) if self._order else None

    def count_for(self, user: UserKey) -> int:
        queue = self._users.get(user)
        return len(queue.keys) if queue else 0

    def ids_of(self, user: UserKey) -> list[str]:
        """The user's queued job ids in the order they will run."""
        queue = self._users.get(user)
        return [key.job_id for key in queue.keys] if queue else []

    def push(self, job_id: str, user: UserKey, seq: int, steps: int, *, first: bool = False) -> int:
        """Queue a job; ``first`` puts it ahead of everything (an interrupted job). → position."""
        queue = self._users.setdefault(user, _UserQueue())
        if first:
            round_ = min(self._current_round, self._order[0].round if self._order else 0) - 1
        elif queue.keys:
            round_ = max(queue.keys[-1].round + 1, self._current_round)
        else:
            round_ = self._current_round
        key = _Key(round_, seq, job_id)
        if first:
            queue.keys.appendleft(key)
        else:
            queue.keys.append(key)
        bisect.insort(self._order, key)
        self._by_job[job_id] = (key, user, steps)
        self._total_steps += steps
        self._wake_one()
        return self.position(job_id) or 0

    def position(self, job_id: str) -> int | None:
        """1 = the next job to run; None if not queued."""
        entry = self._by_job.get(job_id)
        if entry is None:
            return None
        return bisect.bisect_left(self._order, entry[0]) + 1

    def remove(self, job_id: str) -> bool:
        """Take a queued job out (cancelled). False if it was not queued."""
        entry = self._by_job.pop(job_id, None)
        if entry is None:
            return False
        key, user, steps = entry
        del self._order[bisect.bisect_left(self._order, key)]
        self._forget(key, user, steps)
        return True

    def pop(self) -> str | None:
        """The next job in fair order, or None if the queue is empty."""
        if not self._order:
            return None
        key = self._order.pop(0)
        _, user, steps = self._by_job.pop(key.job_id)
        self._current_round = max(self._current_round, key.round)
        self._forget(key, user, steps)
        return key.job_id

    async def take(self) -> str:
        """Wait for the next job. Raises ``QueueClosed`` once ``close`` was called."""
        while True:
            if self._closed:
                raise QueueClosed
            job_id = self.pop()
            if job_id is not None:
                return job_id
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def close(self) -> None:
        """Stop handing out jobs; waiting ``take`` calls raise ``QueueClosed``. Jobs stay queued."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def job_ids(self) -> list[str]:
        """Queued job ids in the order they will run."""
        return [key.job_id for key in self._order]

    def _forget(self, key: _Key, user: UserKey, steps: int) -> None:
        self._total_steps -= steps
        queue = self._users[user]
        queue.keys.remove(key)
        if not queue.keys:
            del self._users[user]

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
