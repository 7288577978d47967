"""Cancelling: a queued job at once, a running one at its next denoising step.

After the last step (the decode) no step is left to stop at: such a cancel is refused with
``cancel.already_finishing``. One that slips in between the engine's last check and its last
step's report is honoured by ``Results.succeeded``, which discards the image (``Cancelled``).

``cancel_latest`` is the one definition of "my newest job" for ``/cancel`` without an id: the
requester's most recently accepted job that is queued or running, on their platform.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from backend import keys
from backend.access import Access
from backend.domain import Cancelled, Job, JobStatus, Requester
from backend.errors import JobNotCancellable, JobNotFound, NothingToCancel, ServiceStopping
from backend.events import EventHub
from backend.pool import WorkerPool
from backend.positions import Board, user_key
from backend.results import describe
from backend.store import Store

log = logging.getLogger("majicbot.service")


class Cancels:
    """Cancels jobs for their owner, an admin, or a guild admin of the job's guild."""

    def __init__(
        self, store: Store, hub: EventHub, access: Access, board: Board, pool: WorkerPool
    ) -> None:
        self._store = store
        self._hub = hub
        self._access = access
        self._board = board
        self._pool = pool

    async def cancel(self, job_id: str, requester: Requester) -> Job:
        """Cancel a queued job now, or a running one at its next step (``Cancelled`` follows)."""
        queued = self._board.get(job_id)
        if queued is not None:
            self._access.check_can_manage(queued, requester)
            return await self._cancel_queued(queued)
        for worker, active in self._pool.active():
            if active.job.id == job_id:
                self._access.check_can_manage(active.job, requester)
                if active.step >= active.job.params.steps:  # decoding: no step checks the flag
                    raise JobNotCancellable(keys.ALREADY_FINISHING, job_id=job_id)
                active.cancel.set()
                log.info("job %s cancel requested while running %s", job_id, describe(active.job))
                return replace(
                    active.job,
                    status=JobStatus.RUNNING,
                    started_at=active.started_at,
                    worker=worker.name,
                )
        job = await self._store.get_job(job_id)
        if job is None:
            self._access.check(requester)
            raise JobNotFound(job_id=job_id)
        self._access.check_can_manage(job, requester)
        if not job.status.is_terminal:
            raise ServiceStopping()  # queued or running in the store but not live: stopping
        raise JobNotCancellable(job_id=job_id, status=job.status.value)

    async def cancel_latest(self, requester: Requester) -> Job:
        """Cancel the requester's newest queued or running job; ``NothingToCancel`` if none."""
        self._access.check(requester)
        me = (requester.platform.value, requester.user_id)
        mine = self._board.jobs_of(me)
        mine += [a.job for _, a in self._pool.active() if user_key(a.job) == me]
        if not mine:
            raise NothingToCancel()
        newest = max(mine, key=lambda job: job.created_at)
        return await self.cancel(newest.id, requester)

    async def _cancel_queued(self, job: Job) -> Job:
        self._board.remove(job.id)
        finished = time.time()
        await self._store.mark_cancelled(job.id, finished)
        log.info("job %s cancelled while queued %s", job.id, describe(job))
        self._hub.publish(Cancelled(job.id))
        return replace(job, status=JobStatus.CANCELLED, finished_at=finished)
