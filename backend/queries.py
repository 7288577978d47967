"""Reading jobs for users and adapters: one job, history, the status snapshot, delivery state.

Every query made for a user applies the access check (stored bans included); history is capped
at ``HISTORY_MAX`` jobs (a larger limit is clamped, not refused).
"""

from __future__ import annotations

import time

from backend.access import Access
from backend.content.controls import ContentControls
from backend.domain import (
    HISTORY_MAX,
    HistoryScope,
    Job,
    Requester,
    StatusSnapshot,
)
from backend.errors import JobNotFound
from backend.health import Health
from backend.pool import WorkerPool
from backend.positions import Board
from backend.status import process_rss_bytes, versions
from backend.store import Store

HOUR_S = 3600.0


class Queries:
    """Read-only views over the store and the live queue."""

    def __init__(
        self,
        store: Store,
        access: Access,
        board: Board,
        pool: WorkerPool,
        health: Health,
        content: ContentControls | None = None,
    ) -> None:
        self._store = store
        self._health = health
        self._access = access
        self._board = board
        self._pool = pool
        self._content = content  # issue 16: its part of /status
        self._started_monotonic = time.monotonic()

    async def job(self, job_id: str, requester: Requester | None = None) -> Job:
        """The stored job; raises ``JobNotFound``, and ``AccessDenied`` for a refused requester."""
        if requester is not None:
            self._access.check(requester)
        job = await self._store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id=job_id)
        return job

    async def history(self, requester: Requester, scope: HistoryScope, limit: int) -> list[Job]:
        """Newest first, at most ``HISTORY_MAX``: one's own jobs (all, or in this chat only), or
        (admins) a chat's or all."""
        self._access.check(requester)
        limit = max(1, min(limit, HISTORY_MAX))
        platform = requester.platform
        if scope is HistoryScope.USER:
            return await self._store.history(platform, user_id=requester.user_id, limit=limit)
        if scope is HistoryScope.USER_IN_CHAT:
            user, chat = requester.user_id, requester.chat_id
            return await self._store.history(platform, user_id=user, chat_id=chat, limit=limit)
        self._access.check_admin(requester)
        if scope is HistoryScope.CHAT:
            return await self._store.history(platform, chat_id=requester.chat_id, limit=limit)
        return await self._store.history(platform, limit=limit)

    async def status(self, requester: Requester, *, accepting: bool) -> StatusSnapshot:
        """Everything /status shows; ``AccessDenied("status.admin_only")`` for non-admins."""
        self._access.check_admin(requester, "status.admin_only")
        stats = await self._store.stats.finished(time.time() - HOUR_S)
        return StatusSnapshot(
            engines=self._pool.engine_states(),
            queue_length=len(self._board),
            running=self._pool.running(),
            done_last_hour=stats.succeeded,
            failed_last_hour=stats.failed,
            mean_s_per_image_last_hour=stats.mean_s_per_image,
            uptime_s=time.monotonic() - self._started_monotonic,
            process_rss_bytes=process_rss_bytes(),
            accepting=accepting,
            versions=versions(),
            faults=self._health.faults(),
            taken_at=time.time(),
            content=await self._content.status() if self._content is not None else None,
        )
