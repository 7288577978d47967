"""The worker sink: what happens to a job once a worker has it (``backend.worker.JobSink``).

Started and Progress are published at once (and kept as the job's current state for late
subscribers); a result is written as a PNG (in a thread), committed to SQLite, and only then
published as ``Succeeded``. Failures and cancellations are committed, then published.

Every write here goes through ``backend.health.retrying``: a PNG write is tried a few times, then
the job fails with ``keys.STORAGE``; a store write is retried until it goes through (the job stays
``running`` meanwhile, which is true), with the fault shown in ``/status``. A job the stall
watchdog gave up on (``stalled_out``) is re-queued for the next process once, failed after that.
A job whose worker process died (``lost``: a Ray actor) goes back to the front of the live queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from backend import keys
from backend.config import Config
from backend.content.controls import PLAIN, ContentControls
from backend.domain import (
    Cancelled,
    Component,
    Failed,
    Job,
    JobStatus,
    Progress,
    Started,
    Succeeded,
)
from backend.engine.protocol import GenerationResult
from backend.events import EventHub
from backend.health import PNG_RETRY, STORE_RETRY, Health, RetryPolicy, retrying
from backend.images import output_path, parameters_text, write_png
from backend.status import versions
from backend.store import Store
from backend.worker import ActiveJob, Worker

log = logging.getLogger("majicbot.service")

# A job whose runs were interrupted this many times (crashes, lost workers) fails with
# ``keys.INTERRUPTED_REPEATEDLY``: a job that kills its worker must not do so forever.
MAX_INTERRUPTED_RUNS = 3


def describe(job: Job) -> str:
    """Who asked, for log lines."""
    return f"user={job.requester.platform.value}:{job.requester.user_id}"


class Results:
    """Stores what workers report and publishes it as job events."""

    def __init__(
        self,
        config: Config,
        store: Store,
        hub: EventHub,
        on_engine_change: Callable[[], None],
        on_job_end: Callable[[], None],
        health: Health,
        put_back: Callable[[Job], None],
    ) -> None:
        self._config = config
        self._store = store
        self._hub = hub
        self._health = health
        self.store_retry: RetryPolicy = STORE_RETRY  # tests shorten these
        self.png_retry: RetryPolicy = PNG_RETRY
        self._on_engine_change = on_engine_change
        self._on_job_end = on_job_end  # estimates changed (new timings, a worker is free)
        self._put_back = put_back  # a job to the front of the live queue (its worker was lost)
        self._version = f"majicbot {dict(versions())['majicbot']}"  # read once: metadata is slow
        self.content: ContentControls | None = (
            None  # issue 16: the safety check, set by the service
        )

    async def started(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        # Publish before the first await: from ``take`` to here the job is neither queued nor
        # running for a new subscriber, and this keeps that gap inside one loop turn.
        self._publish_running(Started(job.id, worker.name))
        await self._commit(
            worker, "marking it running", job.id,
            lambda: self._store.mark_running(job.id, worker.name, active.started_at),
        )  # fmt: skip
        log.info("job %s started on %s %s", job.id, worker.name, describe(job))

    def progressed(self, worker: Worker, active: ActiveJob, step: int, total: int) -> None:
        self._publish_running(Progress(active.job.id, step, total, worker.remaining_s()))

    async def succeeded(self, worker: Worker, active: ActiveJob, result: GenerationResult) -> None:
        job = active.job
        if active.cancel.is_set() and not active.stopping:  # accepted after the last check
            await self.cancelled(worker, active)
            return
        path = output_path(self._config.outputs_dir, job.id, job.created_at)
        model = result.model or self._config.engine.model
        text = parameters_text(job.params, model, result.profile, self._version)
        try:
            await retrying(
                lambda: write_png(result.image, path, text, result.png),
                self._health, Component.DISK, worker.name, f"job {job.id}: writing {path}",
                self.png_retry,
            )  # fmt: skip
        except OSError as exc:
            log.error("job %s: writing %s failed: %s", job.id, path, exc)
            await self.failed(worker, active, keys.STORAGE, f"writing {path} failed: {exc}")
            return
        if self.content is not None:  # issue 16: the safety check, before it is deliverable
            verdict = await self.content.judge(job, result.image or result.picture)
            if verdict != PLAIN:  # the stored defaults already say "not checked, shown"
                await self._store.content.set_verdict(
                    job.id, verdict.flagged, verdict.score, verdict.delivery
                )
        timings = replace(result.timings, wait_s=max(0.0, active.started_at - job.created_at))
        finished_at = time.time()
        await self._commit(
            worker, "recording its result", job.id,
            lambda: self._store.mark_succeeded(
                job.id, path, timings, finished_at, result.prompt_truncated
            ),
        )  # fmt: skip
        self._health.recovered(Component.WORKER, worker.name)  # it serves again after a crash
        log.info(
            "job %s succeeded on %s in %.2f s %s",
            job.id,
            worker.name,
            timings.generate_s,
            describe(job),
        )
        self._end(Succeeded(job.id, path, timings))

    async def failed(self, worker: Worker, active: ActiveJob, key: str, detail: str) -> None:
        job = active.job
        finished_at = time.time()
        await self._commit(
            worker, "recording its failure", job.id,
            lambda: self._store.mark_failed(job.id, key, detail, finished_at),
        )  # fmt: skip
        log.warning(
            "job %s failed on %s: %s (%s) %s", job.id, worker.name, key, detail, describe(job)
        )
        self._end(Failed(job.id, key, detail))

    async def cancelled(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        finished_at = time.time()
        await self._commit(
            worker, "recording its cancellation", job.id,
            lambda: self._store.mark_cancelled(job.id, finished_at),
        )  # fmt: skip
        log.info("job %s cancelled while running on %s %s", job.id, worker.name, describe(job))
        self._end(Cancelled(job.id))

    async def interrupted(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        await self._commit(
            worker, "re-queueing it", job.id, lambda: self._store.requeue(job.id, job.attempts)
        )
        self._hub.forget_running(job.id)
        log.info("job %s back to the queue for the next start %s", job.id, describe(job))

    async def lost(self, worker: Worker, active: ActiveJob, ran: bool, detail: str) -> None:
        """The worker's process died (a Ray actor): the job runs again on the next idle worker,
        first in the queue. A run that had started counts as interrupted (``attempts + 1``), so
        a job that kills its worker each time fails after ``MAX_INTERRUPTED_RUNS`` like a job
        that crashes the whole process."""
        job = active.job
        attempts = job.attempts + 1 if ran else job.attempts
        if attempts >= MAX_INTERRUPTED_RUNS:
            detail = f"its worker was lost {attempts} times while running it: {detail}"
            await self.failed(worker, active, keys.INTERRUPTED_REPEATEDLY, detail)
            return
        await self._commit(
            worker, "re-queueing it", job.id, lambda: self._store.requeue(job.id, attempts)
        )
        self._hub.forget_running(job.id)
        self._put_back(replace(job, status=JobStatus.QUEUED, attempts=attempts, started_at=None))
        log.warning(
            "job %s: worker %s lost (%s); re-queued first %s", job.id, worker.name, detail,
            describe(job),
        )  # fmt: skip

    async def stalled_out(self, worker: Worker, active: ActiveJob, stalled_s: float) -> None:
        """The engine call never returned: re-queue the job for the next process once, or fail.

        The worker is stuck for good; the process is about to drain and exit for a restart.
        """
        job = active.job
        if job.attempts >= 1:
            detail = f"no denoising step for {stalled_s:.0f} s, again after a restart"
            await self.failed(worker, active, keys.STALLED, detail)
            return
        await self._commit(
            worker, "re-queueing it", job.id, lambda: self._store.requeue(job.id, job.attempts + 1)
        )
        self._hub.forget_running(job.id)
        log.warning("job %s stalled on %s: re-queued for the next start", job.id, worker.name)

    async def _commit(
        self, worker: Worker, what: str, job_id: str, write: Callable[[], Awaitable[None]]
    ) -> None:
        await retrying(
            write, self._health, Component.STORE, "", f"job {job_id}: {what}", self.store_retry
        )

    def engine_changed(self, worker: Worker) -> None:
        self._on_engine_change()

    def _publish_running(self, event: Started | Progress) -> None:
        self._hub.set_running_state(event)
        self._hub.publish(event)

    def _end(self, event: Succeeded | Failed | Cancelled) -> None:
        self._hub.publish(event)
        self._on_job_end()
