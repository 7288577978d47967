"""Every job follower of one adapter, the re-attach after a restart, and the retry loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from backend.domain import Job, Platform
from backend.service import Service
from bots.follow.budget import EditBudget
from bots.follow.clock import Clock, MonotonicClock
from bots.follow.follower import FollowContext, FollowerTuning, JobFollower
from bots.follow.policy import DeliveryFailed
from bots.follow.queue_watch import QueueWatch
from bots.follow.surface import Surface
from bots.follow.tasks import TaskSet

log = logging.getLogger("majicbot.follow")

SurfaceFor = Callable[[Job], Surface]


class Followers:
    """Follows and delivers the jobs of one platform.

    ``surface_for`` rebuilds a job's surface from what the store keeps (after a restart, or for
    a result delivered by the retry loop). Run it with ``async with followers.running():``.
    """

    def __init__(
        self,
        service: Service,
        platform: Platform,
        budget: EditBudget,
        surface_for: SurfaceFor,
        *,
        clock: Clock | None = None,
        tuning: FollowerTuning | None = None,
    ) -> None:
        self._service = service
        self._platform = platform
        self._surface_for = surface_for
        clock = clock or MonotonicClock()
        self._context = FollowContext(
            service, budget, clock, QueueWatch(service), tuning or FollowerTuning()
        )
        self._tasks = TaskSet()
        self._busy: set[str] = set()
        self._retries: dict[str, tuple[int, float]] = {}  # job id → (failed rounds, next try)
        self._recovered = asyncio.Event()
        # Work handed over by handlers; started by ``running``'s task, so that a follower
        # belongs to the adapter, not to the handler (or interaction) that started the job.
        self._inbox: asyncio.Queue[tuple[str, Coroutine[Any, Any, None]]] = asyncio.Queue()

    @property
    def budget(self) -> EditBudget:
        return self._context.budget

    def following(self, job_id: str) -> bool:
        """Whether ``job_id`` is being followed or delivered now."""
        return job_id in self._busy

    def follow(self, job: Job, surface: Surface, *, shown: str | None = None) -> bool:
        """Follow ``job`` to its end in the background; False if it is followed already.

        ``shown`` is the text the surface shows now (no edit is spent repeating it).
        """
        if job.id in self._busy:
            return False
        follower = JobFollower(job.id, surface, self._context, shown)
        self._busy.add(job.id)
        self._inbox.put_nowait((f"follow-{job.id}", self._guarded(job.id, follower.run())))
        return True

    async def wait_idle(self) -> None:
        """Until the start-up recovery ran and no job is being followed or delivered (tests)."""
        await self._recovered.wait()
        while not self._inbox.empty() or self._tasks:
            await self._tasks.wait_idle()
            await asyncio.sleep(0)  # let the inbox hand over what it holds

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The queue watch and the retry loop run for the block; followers stop with it."""
        background = TaskSet()
        background.spawn(self._context.watch.run(), name=f"{self._platform}-queue-watch")
        background.spawn(self._start_followers(), name=f"{self._platform}-followers")
        background.spawn(self._recover_forever(), name=f"{self._platform}-delivery-retry")
        try:
            yield
        finally:
            await background.cancel_all()
            await self._tasks.cancel_all()
            while not self._inbox.empty():  # never started: close them unawaited-warning free
                self._inbox.get_nowait()[1].close()
            await self._context.budget.close()

    async def reattach(self) -> None:
        """Follow this platform's jobs that were queued or running before a restart."""
        for job in await self._service.deliveries.active_jobs(self._platform):
            self.follow(job, self._surface_for(job))

    async def deliver_pending(self) -> None:
        """Deliver every undelivered result whose retry time has come."""
        now = self._context.clock.now()
        for job in await self._service.deliveries.undelivered(self._platform):
            rounds, due = self._retries.get(job.id, (0, 0.0))
            if job.id in self._busy or due > now:
                continue
            # The list may be stale: a follower can have delivered (and left _busy) while it was
            # read. Claim the job first, then look again (it marks delivered before leaving).
            self._busy.add(job.id)
            try:
                delivered = (await self._service.job(job.id)).delivered_at is not None
            except BaseException:
                self._busy.discard(job.id)
                raise
            if delivered:
                self._busy.discard(job.id)
                continue
            if rounds >= self._context.tuning.retry_rounds:
                log.warning("job %s: giving up delivery after %d rounds", job.id, rounds)
                await self._service.deliveries.mark_delivered(job.id)
                self._retries.pop(job.id, None)
                self._busy.discard(job.id)
                continue
            follower = JobFollower(job.id, self._surface_for(job), self._context, None)
            self._tasks.spawn(self._guarded(job.id, follower.deliver(job)), f"deliver-{job.id}")

    async def _start_followers(self) -> None:
        while True:
            name, work = await self._inbox.get()
            self._tasks.spawn(work, name=name)

    async def _recover_forever(self) -> None:
        try:
            await self.reattach()
        except Exception:
            log.exception("%s: re-attaching to unfinished jobs failed", self._platform)
        while True:
            try:
                await self.deliver_pending()
            except Exception:  # a store hiccup must not end the loop
                log.exception("%s: delivering pending results failed", self._platform)
            self._recovered.set()
            await self._context.clock.sleep(self._context.tuning.retry_interval_s)

    async def _guarded(self, job_id: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
            self._retries.pop(job_id, None)
        except DeliveryFailed as exc:
            rounds, _ = self._retries.get(job_id, (0, 0.0))
            tuning = self._context.tuning
            delay = tuning.retry_interval_s * 2**rounds
            self._retries[job_id] = (rounds + 1, self._context.clock.now() + delay)
            log.warning("%s; the retry loop tries again in %.0f s", exc, delay)
        except Exception:
            log.exception(
                "job %s: following or delivering failed; the retry loop takes over", job_id
            )
        finally:
            self._busy.discard(job_id)
