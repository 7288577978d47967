"""The worker sink: what happens to a job once a worker has it (``backend.worker.JobSink``).

Started and Progress are published at once (and kept as the job's current state for late
subscribers); a result is written as a PNG (in a thread), committed to SQLite, and only then
published as ``Succeeded``. Failures and cancellations are committed, then published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from backend.config import Config
from backend.domain import Cancelled, Failed, Job, Progress, Started, Succeeded
from backend.engine.protocol import GenerationResult
from backend.events import EventHub
from backend.images import output_path, parameters_text, write_png
from backend.status import versions
from backend.store import Store
from backend.worker import ActiveJob, Worker

log = logging.getLogger("majicbot.service")


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
    ) -> None:
        self._config = config
        self._store = store
        self._hub = hub
        self._on_engine_change = on_engine_change
        self._on_job_end = on_job_end  # estimates changed (new timings, a worker is free)
        self._version = f"majicbot {dict(versions())['majicbot']}"  # read once: metadata is slow

    async def started(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        # Publish before the first await: from ``take`` to here the job is neither queued nor
        # running for a new subscriber, and this keeps that gap inside one loop turn.
        self._publish_running(Started(job.id, worker.name))
        await self._store.mark_running(job.id, worker.name, active.started_at)
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
            await write_png(result.image, path, text)
        except OSError as exc:
            log.error("job %s: writing %s failed: %s", job.id, path, exc)
            await self.failed(worker, active, "error.engine", f"writing the image failed: {exc}")
            return
        timings = replace(result.timings, wait_s=max(0.0, active.started_at - job.created_at))
        await self._store.mark_succeeded(
            job.id, path, timings, time.time(), result.prompt_truncated
        )
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
        await self._store.mark_failed(job.id, key, detail, time.time())
        log.warning(
            "job %s failed on %s: %s (%s) %s", job.id, worker.name, key, detail, describe(job)
        )
        self._end(Failed(job.id, key, detail))

    async def cancelled(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        await self._store.mark_cancelled(job.id, time.time())
        log.info("job %s cancelled while running on %s %s", job.id, worker.name, describe(job))
        self._end(Cancelled(job.id))

    async def interrupted(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        await self._store.requeue(job.id, job.attempts)
        self._hub.forget_running(job.id)
        log.info("job %s back to the queue for the next start %s", job.id, describe(job))

    def engine_changed(self, worker: Worker) -> None:
        self._on_engine_change()

    def _publish_running(self, event: Started | Progress) -> None:
        self._hub.set_running_state(event)
        self._hub.publish(event)

    def _end(self, event: Succeeded | Failed | Cancelled) -> None:
        self._hub.publish(event)
        self._on_job_end()
