"""Restart recovery: the last run's queued and running jobs, back into the queue (or failed).

``queued`` jobs re-enter in their original order. A job found ``running`` was interrupted by a
crash: the first time it goes back to the front of the queue with ``attempts + 1``, the second
time it fails with ``error.interrupted_twice``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from backend.domain import Job, JobStatus
from backend.positions import Board
from backend.results import describe
from backend.store import Store

log = logging.getLogger("majicbot.service")


async def recover(store: Store, board: Board) -> None:
    """Re-queue the last run's queued jobs; a running one was interrupted (see the docstring)."""
    interrupted: list[tuple[int, Job]] = []
    for seq, job in await store.jobs_in([JobStatus.RUNNING, JobStatus.QUEUED]):
        if job.status is JobStatus.QUEUED:
            board.add(job, seq)
        elif job.attempts >= 1:
            detail = f"interrupted twice while running (attempts={job.attempts})"
            await store.mark_failed(job.id, "error.interrupted_twice", detail, time.time())
            log.warning("job %s failed: interrupted twice %s", job.id, describe(job))
        else:
            interrupted.append((seq, job))
    for seq, job in reversed(interrupted):  # each goes to the front: oldest ends up first
        await store.requeue(job.id, job.attempts + 1)
        requeued = replace(job, status=JobStatus.QUEUED, attempts=job.attempts + 1)
        board.add(requeued, seq, first=True)
        log.warning("job %s re-queued after an interruption %s", job.id, describe(job))
