"""Following one job: its state shown within the budget, then its end delivered.

Delivery is at least once, with at most one duplicate per crash: before an upload the store
counts it as begun (``Service.begin_delivery``), after it the job is marked delivered; an upload
known to have failed does not count (``delivery_failed``). An upload a crash interrupted may have
arrived: after the restart it is sent once more (``MAX_RESENDS``); if that one is interrupted too,
the result is left to /history rather than risk a third copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from backend.domain import TERMINAL_EVENTS, Job, JobEvent, Progress, Queued, Started
from backend.service import Service
from bots.follow.budget import RUNNING, EditBudget, waiting_priority
from bots.follow.clock import Clock
from bots.follow.policy import Backoff, DeliveryFailed, Failure, SurfaceGone
from bots.follow.queue_watch import QueueWatch
from bots.follow.surface import Surface
from bots.follow.tasks import TaskSet
from bots.i18n import translate
from bots.render import render_event, render_final

log = logging.getLogger("majicbot.follow")

MAX_RESENDS = 1  # uploads a crash interrupted that are sent again


@dataclass(frozen=True)
class FollowerTuning:
    """Timing knobs shared by both adapters (platform limits live in their budgets)."""

    keep_alive_s: float = 4.0  # Telegram's chat action shows for at most 5 s
    send_attempts: int = 4  # per delivery, for transient failures
    backoff: Backoff = field(default_factory=Backoff)
    retry_interval_s: float = 60.0  # how often undelivered results are looked for
    retry_rounds: int = 6  # deliveries of one result (each with its attempts) before giving up


@dataclass(frozen=True)
class FollowContext:
    """What every follower of one adapter shares."""

    service: Service
    budget: EditBudget
    clock: Clock
    watch: QueueWatch
    tuning: FollowerTuning


class JobFollower:
    """Shows one job's state (latest wins, never an unchanged edit), then delivers its end."""

    def __init__(
        self, job_id: str, surface: Surface, context: FollowContext, shown: str | None
    ) -> None:
        self.job_id = job_id
        self._surface = surface
        self._context = context
        self._wanted: str | None = shown
        self._shown = shown
        self._priority = RUNNING
        self._changed = asyncio.Event()
        self._status_gone = False
        self._helpers = TaskSet()
        self._queue_task: asyncio.Task[None] | None = None
        self._alive_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Follow to the end and deliver; returns early (job kept) if the service stops."""
        if await self._follow():
            await self.deliver(await self._context.service.job(self.job_id))

    # ---- following ---------------------------------------------------------------------------

    async def _follow(self) -> bool:
        """True once the job ended; False when the subscription closed (service stopping)."""
        self._helpers.spawn(self._edit_loop(), name=f"edit-{self.job_id}")
        try:
            async for event in self._context.service.subscribe(self.job_id):
                if isinstance(event, TERMINAL_EVENTS):
                    return True
                self._on_event(event)
            return False
        finally:
            await self._helpers.cancel_all()

    def _on_event(self, event: JobEvent) -> None:
        if isinstance(event, Queued):
            if self._queue_task is None:
                self._queue_task = self._helpers.spawn(self._follow_queue(), f"q-{self.job_id}")
            return
        if self._queue_task is not None:
            self._queue_task.cancel()
        if isinstance(event, Started | Progress):
            if self._alive_task is None:
                self._alive_task = self._helpers.spawn(self._keep_alive(), f"a-{self.job_id}")
            self._want(render_event(event, self._surface.lang), RUNNING)

    async def _follow_queue(self) -> None:
        """While waiting: pull the position when it may have changed meaningfully."""
        service, watch = self._context.service, self._context.watch
        while (waiting := service.waiting(self.job_id)) is not None:
            self._want(
                render_event(waiting, self._surface.lang), waiting_priority(waiting.position)
            )
            await watch.wait(waiting.position)

    async def _keep_alive(self) -> None:
        while True:
            try:
                await self._surface.keep_alive()
            except Exception as exc:  # cosmetic: never worth more than a log line
                log.info("job %s: keep-alive failed: %s", self.job_id, exc)
            await self._context.clock.sleep(self._context.tuning.keep_alive_s)

    def _want(self, text: str, priority: float) -> None:
        self._wanted, self._priority = text, priority
        self._changed.set()

    async def _edit_loop(self) -> None:
        """Apply the latest wanted text whenever the budget grants an edit."""
        while not self._status_gone:
            await self._changed.wait()
            self._changed.clear()
            if self._wanted is None or self._wanted == self._shown:
                continue
            await self._context.budget.acquire(self._surface.lane, self._priority)
            text = self._wanted  # the latest, not the one that asked
            if text == self._shown:
                continue
            await self._show(text)

    async def _show(self, text: str) -> None:
        try:
            await self._surface.show(text, cancellable=True)
        except Exception as exc:
            failure = _classify(self._surface, exc)
            if failure is Failure.GONE:
                self._status_gone = True
                log.info("job %s: the status is gone; the result will be posted anew", self.job_id)
            else:  # progress is best effort; the next state will try again
                log.info("job %s: status edit failed (%s): %s", self.job_id, failure, exc)
            return
        self._shown = text

    # ---- delivering --------------------------------------------------------------------------

    async def deliver(self, job: Job) -> None:
        """Send ``job``'s end; raises ``DeliveryFailed`` when only retrying later can help."""
        service = self._context.service
        interrupted = await service.deliveries.begin_delivery(job.id)
        if interrupted > MAX_RESENDS:
            error = RuntimeError(f"{interrupted} uploads interrupted by crashes")
            await self._give_up(job, Failure.UNCERTAIN, error)
            return
        if interrupted:
            log.warning("job %s: a crash interrupted its upload; sending it once more", job.id)
        try:
            await self._send_with_retries(job)
        except DeliveryFailed:
            await service.deliveries.delivery_failed(job.id)
            raise

    async def _send_with_retries(self, job: Job) -> None:
        anew = self._status_gone
        tuning, clock = self._context.tuning, self._context.clock
        for attempt in range(tuning.send_attempts):
            try:
                result_message = await self._send(job, anew=anew)
            except Exception as exc:
                failure = _classify(self._surface, exc)
                if failure is Failure.GONE and not anew:
                    log.info("job %s: status gone (%s); posting anew", job.id, exc)
                    anew = True
                    continue
                if failure is Failure.TRANSIENT and attempt + 1 < tuning.send_attempts:
                    delay = tuning.backoff.delay_s(attempt)
                    log.info("job %s: send failed (%s); again in %.1f s", job.id, exc, delay)
                    await clock.sleep(delay)
                    continue
                if failure is Failure.TRANSIENT:
                    raise DeliveryFailed(f"job {job.id}: {exc}") from exc
                await self._give_up(job, failure, exc)
                return
            if result_message is not None:  # its buttons work on this message only
                await self._context.service.deliveries.attach_result(job.id, result_message)
            await self._context.service.deliveries.mark_delivered(job.id)
            log.info("job %s delivered (%s)", job.id, job.status.value)
            if job.shows_image and not anew:
                await self._remove_status()
            return

    async def _remove_status(self) -> None:
        try:
            await self._surface.remove_status()
        except Exception as exc:  # cosmetic: the result is there
            log.info("job %s: removing the status failed: %s", self.job_id, exc)

    async def _send(self, job: Job, *, anew: bool) -> str | None:
        """Send the end; the id of the message now showing the image, if there is one."""
        if job.shows_image:  # not withheld by the content policy
            return await self._surface.send_result(job, anew=anew)
        await self._surface.send_final(render_final(job, self._surface.lang), anew=anew)
        return None

    async def _give_up(self, job: Job, failure: Failure, exc: Exception) -> None:
        """Settle a delivery that must not be retried; the job stays in /history."""
        if failure is Failure.UNCERTAIN:
            log.warning("job %s: upload unanswered (%s); not sending it twice", job.id, exc)
            with contextlib.suppress(Exception):
                hint = translate("delivery.history_hint", self._surface.lang)
                await self._surface.show(hint, cancellable=False)
        elif failure is Failure.REJECTED:
            log.error("job %s: the platform refused the result: %s", job.id, exc)
        else:
            log.warning("job %s: cannot reach the chat (%s): %s", job.id, failure, exc)
        await self._context.service.deliveries.mark_delivered(job.id)


def _classify(surface: Surface, error: Exception) -> Failure:
    if isinstance(error, SurfaceGone):
        return Failure.GONE
    return surface.classify(error)
