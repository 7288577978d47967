"""Forgetting: Delete, the retention period (``storage.keep_days``) and expired Discord tokens.

A forgotten job keeps its row — ids, times, status, size and seed, what quotas, fairness and the
statistics need — and loses its prompt, the requester's display name, its adapter token and its
image file. ``Retention.run`` (a task the service owns) forgets finished jobs older than
``keep_days`` and drops Discord interaction tokens once Discord has expired them (15 min), once at
start and then every ``PURGE_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from backend.config import Config
from backend.domain import Platform
from backend.files import unlink_all
from backend.store import Store

log = logging.getLogger("majicbot.retention")

DAY_S = 86400.0
PURGE_INTERVAL_S = 3600.0
DISCORD_TOKEN_TTL_S = 15 * 60.0  # Discord's interaction tokens die after 15 minutes


class Retention:
    """Forgets prompts, names, tokens and images, on request and when they are old."""

    def __init__(self, config: Config, store: Store) -> None:
        self._config = config
        self._store = store

    async def forget(self, job_id: str) -> None:
        """Drop ``job_id``'s prompt, name and token, then delete its image file."""
        path = await self._store.retention.forget(job_id)
        await self._store.retention.scrub()
        if path is not None:
            await unlink_all([path])
        log.info("job %s forgotten (prompt and image deleted)", job_id)

    async def purge(self, now: float | None = None) -> int:
        """One pass: expired Discord tokens, then jobs past ``keep_days``; the jobs forgotten."""
        now = time.time() if now is None else now
        await self._store.retention.drop_tokens(Platform.DISCORD, now - DISCORD_TOKEN_TTL_S)
        keep_days = self._config.storage.keep_days
        if not keep_days:
            return 0
        old = await self._store.retention.remembered_before(now - keep_days * DAY_S)
        paths = [path for job_id in old if (path := await self._store.retention.forget(job_id))]
        if old:
            await self._store.retention.scrub()
        await unlink_all(paths)
        if old:
            log.info("retention: forgot %d job(s) older than %d days", len(old), keep_days)
        return len(old)

    async def run(self, interval_s: float = PURGE_INTERVAL_S) -> None:
        """Purge now and then every ``interval_s`` until cancelled; a failed pass is logged."""
        while True:
            try:
                await self.purge()
            except Exception:  # the next pass tries again; never take the service down
                log.exception("retention: purge failed")
            await asyncio.sleep(interval_s)
