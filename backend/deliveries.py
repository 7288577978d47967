"""The delivery ledger: what adapters record about delivering a job's result.

Re-attach after a restart (``active_jobs``), deliver what is left (``undelivered``), remember
where the status and the result were posted (``attach_status``, ``attach_result``: result
buttons work on those messages only), and count uploads (``begin_delivery`` before one,
``mark_delivered`` / ``delivery_failed`` after it) so that an upload a crash interrupted is sent
again at most once. Reached as ``Service.deliveries``.
"""

from __future__ import annotations

import time

from backend.domain import Job, JobStatus, MessageRef, Platform
from backend.errors import JobNotFound
from backend.store import Store


class Deliveries:
    """Delivery state of jobs, in the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def active_jobs(self, platform: Platform) -> list[Job]:
        """Queued and running jobs of ``platform``, oldest first."""
        rows = await self._store.jobs_in([JobStatus.QUEUED, JobStatus.RUNNING], platform)
        return [job for _, job in rows]

    async def undelivered(self, platform: Platform) -> list[Job]:
        """Succeeded or failed jobs of ``platform`` whose result was not delivered yet."""
        return await self._store.undelivered(platform)

    async def attach_status(self, job_id: str, message_id: str) -> None:
        """Record the adapter's status message of ``job_id``; raises ``JobNotFound``."""
        if not await self._store.deliveries.set_reply_message(job_id, message_id):
            raise JobNotFound(job_id=job_id)

    async def attach_result(self, job_id: str, message_id: str, chat_id: str | None = None) -> None:
        """Record a message showing the result of ``job_id``; raises ``JobNotFound``."""
        job = await self._store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id=job_id)
        where = MessageRef(chat_id or job.reply_to.chat_id, message_id)
        if not await self._store.deliveries.add_posted(job_id, where):
            raise JobNotFound(job_id=job_id)

    async def begin_delivery(self, job_id: str) -> int:
        """Count an upload as begun; the uploads a crash interrupted before (``JobNotFound``)."""
        try:
            return await self._store.deliveries.begin(job_id)
        except KeyError:
            raise JobNotFound(job_id=job_id) from None

    async def delivery_failed(self, job_id: str) -> None:
        """The upload begun last did not arrive (it does not count against the resend)."""
        await self._store.deliveries.failed(job_id)

    async def mark_delivered(self, job_id: str) -> None:
        """Record that the adapter delivered ``job_id``'s result; raises ``JobNotFound``."""
        if not await self._store.deliveries.mark_delivered(job_id, time.time()):
            raise JobNotFound(job_id=job_id)
