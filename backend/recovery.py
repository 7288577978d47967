"""Restart recovery: the last run's queued and running jobs, back into the queue (or failed).

``queued`` jobs re-enter in their original order. A job found ``running`` was interrupted by a
crash: it goes back to the front of the queue with ``attempts + 1``. Only jobs that were running
are charged (queued ones are not), and one crash is not taken as the job's fault: a job fails
with ``error.interrupted_repeatedly`` only once ``MAX_INTERRUPTED_RUNS`` of its runs were
interrupted (a job that crashes the process itself must not crash it forever). A graceful stop
re-queues without charging (``Results.interrupted``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from backend import keys
from backend.domain import Job, JobStatus
from backend.positions import Board
from backend.results import MAX_INTERRUPTED_RUNS, describe
from backend.store import Store

log = logging.getLogger("majicbot.service")


async def recover(store: Store, board: Board) -> None:
    """Re-queue the last run's queued jobs; a running one was interrupted (see the docstring)."""
    interrupted: list[tuple[int, Job]] = []
    for seq, job in await store.jobs_in([JobStatus.RUNNING, JobStatus.QUEUED]):
        if job.status is JobStatus.QUEUED:
            board.add(job, seq)
        elif job.attempts + 1 >= MAX_INTERRUPTED_RUNS:
            detail = f"interrupted {job.attempts + 1} times while running"
            await store.mark_failed(job.id, keys.INTERRUPTED_REPEATEDLY, detail, time.time())
            log.warning("job %s failed: %s %s", job.id, detail, describe(job))
        else:
            interrupted.append((seq, job))
    for seq, job in reversed(interrupted):  # each goes to the front: oldest ends up first
        await store.requeue(job.id, job.attempts + 1)
        requeued = replace(job, status=JobStatus.QUEUED, attempts=job.attempts + 1)
        board.add(requeued, seq, first=True)
        log.warning("job %s re-queued after an interruption %s", job.id, describe(job))
