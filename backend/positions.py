"""The waiting jobs: fair order, positions and estimates, pulled by followers, never pushed.

Nothing is published to a waiting job's subscribers when the queue moves (that was n events per
completion, quadratic in the queue length). Instead the queue has a version that bumps, at most
once per event-loop turn, whenever positions, estimates or the engines' warm-up/availability
change; a follower awaits ``moved(after)`` and reads ``waiting(job_id)`` when it wants to show
something. ``moved(after)`` wakes a waiter only once the version passes ``after``, so a follower
that refreshes a job far back every N-th move (``after = seen + N - 1``) costs nothing in
between: the work is proportional to the refreshes made, not to the queue length squared.

Denoising steps of the running jobs do not bump the version (that would wake followers every
step): an estimate read at any time already counts what is left of the running jobs then.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from backend.domain import Availability, Job, Queued
from backend.estimates import queue_eta_s
from backend.pool import WorkerPool
from backend.scheduler import FairQueue, UserKey


def user_key(job: Job) -> UserKey:
    return (job.requester.platform.value, job.requester.user_id)


class Board:
    """Queued jobs in fair order (``backend.scheduler.FairQueue``) with their ``Job`` values."""

    def __init__(self) -> None:
        self._queue = FairQueue()
        self._jobs: dict[str, Job] = {}
        self._pool: WorkerPool | None = None
        self.version = 0
        self.departures = 0  # jobs taken or removed so far (bounds how far a position can fall)
        self._bump_pending = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # (after, n, future)
        self._tiebreak = itertools.count()

    def attach(self, pool: WorkerPool) -> None:
        """The workers whose rates and state the estimates use."""
        self._pool = pool

    def __len__(self) -> int:
        return len(self._queue)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def count_for(self, user: UserKey) -> int:
        return self._queue.count_for(user)

    def jobs_of(self, user: UserKey) -> list[Job]:
        """The user's queued jobs in the order they will run."""
        return [self._jobs[job_id] for job_id in self._queue.ids_of(user)]

    def ordered(self) -> list[Job]:
        """Every queued job in the order they will run (O(n): for tools and benchmarks)."""
        return [self._jobs[job_id] for job_id in self._queue.job_ids()]

    # ---- changes -------------------------------------------------------------------------------

    def add(self, job: Job, seq: int, *, first: bool = False) -> int:
        """Queue ``job`` (``first``: ahead of everything, an interrupted job). → its position."""
        self._jobs[job.id] = job
        position = self._queue.push(job.id, user_key(job), seq, job.params.steps, first=first)
        self.bump()
        return position

    def put_back(self, job: Job) -> None:
        """A job whose worker was lost mid-run: first in line again (its order among other
        put-back jobs: the latest first; ``seq`` only breaks ties inside a round)."""
        self.add(job, 0, first=True)

    def remove(self, job_id: str) -> Job | None:
        """Take a queued job out (cancelled); None if it was not queued."""
        if not self._queue.remove(job_id):
            return None
        self.departures += 1
        self.bump()
        return self._jobs.pop(job_id)

    async def take(self) -> Job:
        """The next job in fair order, for an idle worker (raises ``QueueClosed`` once closed)."""
        job_id = await self._queue.take()
        self.departures += 1
        self.bump()
        return self._jobs.pop(job_id)

    def close(self) -> None:
        """Hand out no more jobs; wake every ``moved`` waiter a last time."""
        self._queue.close()
        self.bump()

    # ---- the queue version ---------------------------------------------------------------------

    def bump(self) -> None:
        """Positions, estimates or engine state changed: bump the version (once per loop turn)."""
        if self._bump_pending:
            return
        self._bump_pending = True
        asyncio.get_running_loop().call_soon(self._bump_now)

    def _bump_now(self) -> None:
        self._bump_pending = False
        self.version += 1
        while self._waiters and self._waiters[0][0] < self.version:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)

    async def moved(self, after: int) -> int:
        """Wait until the version is past ``after``; returns the version then."""
        if self.version > after:
            return self.version
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (after, next(self._tiebreak), future))
        await future  # a cancelled waiter stays in the heap until the version passes it
        return self.version

    # ---- what a follower reads -----------------------------------------------------------------

    def waiting(self, job_id: str) -> Queued | None:
        """The job's position, estimate and engine state; None once it is no longer queued."""
        job = self._jobs.get(job_id)
        position = self._queue.position(job_id)
        if job is None or position is None:
            return None
        pool = self._pool
        if pool is None:
            return Queued(job_id, position, None, 0.0)
        return Queued(
            job_id,
            position,
            self.eta_s(position, job.params.steps),
            pool.warming_percent(),
            pool.unavailable(),
        )

    def availability(self) -> Availability:
        """The engines' warm-up (coarse, so that it changes a handful of times) and failure."""
        if self._pool is None:
            return Availability(0.0, None)
        warming = self._pool.warming_percent()
        coarse = None if warming is None else float(int(warming // 25) * 25)
        return Availability(coarse, self._pool.unavailable())

    def eta_s(self, position: int, steps: int) -> float | None:
        """Seconds until a job at ``position`` with ``steps`` finishes (``backend.estimates``)."""
        if self._pool is None:
            return None
        workers, rates = self._pool.rates()
        mean_steps = self._queue.mean_steps or steps
        running_left = self._pool.running_left_s(rates) if rates is not None else 0.0
        return queue_eta_s(position, steps, mean_steps, running_left, workers, rates)
