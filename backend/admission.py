"""Admission: whether a request becomes a job, and writing it to SQLite before anyone is told.

In order: access (bans in config and in the store, allowlists), the idempotency key (a request
already accepted returns its job, whatever the limits say now), the user's defaults, validation,
then the limits for non-admins — per-user cap on queued + running jobs, hourly quota (every job
accepted in the last hour counts, cancelled ones too), global queue cap. While the store or the
image folder is failing (``backend.health``), or the INSERT itself fails, the request is refused
with ``keys.STORAGE_UNAVAILABLE``: a job that could not be recorded is never announced. Submits
in flight hold a reservation so that concurrent ones cannot all slip under a cap while their
INSERTs wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sqlite3
import string
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, replace

from backend import keys
from backend.access import Access
from backend.config import Config
from backend.content.controls import ContentControls
from backend.domain import (
    SEED_MAX,
    Component,
    GenerationParams,
    ImagineRequest,
    Job,
    JobStatus,
    Options,
    ReplyTarget,
    Requester,
)
from backend.errors import AccessDenied, LimitReached
from backend.health import Health
from backend.pool import WorkerPool
from backend.positions import Board
from backend.scheduler import UserKey
from backend.store import DuplicateIdempotencyKey, DuplicateJobId, Store
from backend.users import Users
from backend.validation import random_seed, resolve_params

log = logging.getLogger("majicbot.admission")

JOB_ID_ALPHABET = string.ascii_letters + string.digits
JOB_ID_LENGTH = 9  # 62**9 ≈ 1.3e16: collisions are retried, and practically never happen
HOUR_S = 3600.0


def new_job_id() -> str:
    """A short, URL-safe, unguessable job id (base62)."""
    return "".join(secrets.choice(JOB_ID_ALPHABET) for _ in range(JOB_ID_LENGTH))


def user_key(requester: Requester) -> UserKey:
    return (requester.platform.value, requester.user_id)


def reroll_request(
    job: Job, requester: Requester, reply_to: ReplyTarget, *, variation: bool
) -> ImagineRequest:
    """``job``'s prompt and settings for ``requester``: a new random seed, or seed + 1."""
    p = job.params
    seed = (p.seed + 1) % (SEED_MAX + 1) if variation else random_seed()
    options = Options(seed, p.steps, p.width, p.height, None, p.guidance)
    return ImagineRequest(p.prompt, requester, reply_to, options, parent_job_id=job.id)


@dataclass(frozen=True)
class Admitted:
    """An accepted job; ``seq`` is None when the idempotency key named an existing one."""

    job: Job
    seq: int | None


class Admission:
    """Checks and commits new jobs; keeps the hourly windows and in-flight reservations."""

    def __init__(
        self,
        config: Config,
        store: Store,
        users: Users,
        access: Access,
        board: Board,
        pool: WorkerPool,
        health: Health,
        content: ContentControls | None = None,
    ) -> None:
        self._config = config
        self._health = health
        self._store = store
        self._users = users
        self._access = access
        self._board = board
        self._pool = pool
        self._recent: dict[UserKey, deque[float]] = {}
        self._reserved: Counter[UserKey] = Counter()
        self._content = content  # issue 16: prompt rules

    async def load(self) -> None:
        """Refill the hourly windows from SQLite (once, when the service opens)."""
        since = time.time() - HOUR_S
        for platform, user_id, created_at in await self._store.stats.recent_submissions(since):
            self._recent.setdefault((platform.value, user_id), deque()).append(created_at)

    async def admit(self, request: ImagineRequest) -> Admitted:
        """Check ``request`` and commit it as a queued job (or find the job it already made)."""
        requester = request.requester
        self._access.check(requester)
        if request.idempotency_key is not None:
            existing = await self._store.job_by_key(request.idempotency_key)
            if existing is not None:
                return Admitted(self._same_requester(existing, requester), None)
        if self._content is not None:  # issue 16: refused prompts never become jobs
            self._content.check_prompt(request)
            request = await self._inherit_spoiler(request)
        defaults = self._users.defaults(requester.platform, requester.user_id)
        request = replace(request, options=request.options.over(defaults))
        params = resolve_params(request, self._config.limits)
        now = time.time()
        user = user_key(requester)
        if not self._access.is_admin(requester):
            self._check_limits(requester, now)
        if self._health.is_failing(Component.DISK):
            await self._probe_disk()
        self._reserved[user] += 1
        try:
            return await self._insert(request, params, now)
        finally:
            self._reserved[user] -= 1
            if not self._reserved[user]:
                del self._reserved[user]

    async def _inherit_spoiler(self, request: ImagineRequest) -> ImagineRequest:
        """A reroll or variation of a spoilered image is spoilered too (issue 16)."""
        if request.parent_job_id is None or request.options.spoiler is not None:
            return request
        parent = await self._store.get_job(request.parent_job_id)
        if parent is None or not parent.spoiler:
            return request
        return replace(request, options=replace(request.options, spoiler=True))

    async def _probe_disk(self) -> None:
        """While PNG writes fail: accept only if the image folder takes a file again."""
        folder = self._config.outputs_dir

        def probe() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder, prefix=".probe-") as fh:
                fh.write(b"\0" * 65536)
                fh.flush()
                os.fsync(fh.fileno())

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            log.warning("refusing a job: the image folder %s still fails: %s", folder, exc)
            raise LimitReached(keys.STORAGE_UNAVAILABLE) from None
        self._health.recovered_all(Component.DISK)

    def _same_requester(self, job: Job, requester: Requester) -> Job:
        if user_key(job.requester) != user_key(requester):
            raise AccessDenied("error.not_your_job", job_id=job.id)
        log.info("job %s: submitted again with the same idempotency key", job.id)
        return job

    def _check_limits(self, requester: Requester, now: float) -> None:
        limits = self._config.limits
        user = user_key(requester)
        running = sum(1 for _, a in self._pool.active() if user_key(a.job.requester) == user)
        if self._board.count_for(user) + running + self._reserved[user] >= limits.per_user_queue:
            raise LimitReached("error.user_queue_full", limit=limits.per_user_queue)
        recent = self._recent.get(user, deque())
        while recent and recent[0] <= now - HOUR_S:
            recent.popleft()
        override = self._users.record(requester.platform, requester.user_id).hourly_quota
        quota = override or limits.per_user_hourly
        if len(recent) + self._reserved[user] >= quota:
            retry_after = round(recent[0] + HOUR_S - now) if recent else 0
            raise LimitReached("error.hourly_quota", limit=quota, retry_after_s=retry_after)
        if len(self._board) + self._reserved.total() >= limits.queue_max:
            raise LimitReached("error.queue_full", limit=limits.queue_max)

    async def _insert(
        self, request: ImagineRequest, params: GenerationParams, now: float
    ) -> Admitted:
        for _ in range(5):
            job = Job(
                id=new_job_id(),
                params=params,
                requester=request.requester,
                reply_to=request.reply_to,
                status=JobStatus.QUEUED,
                created_at=now,
                parent_job_id=request.parent_job_id,
                idempotency_key=request.idempotency_key,
                spoiler=bool(request.options.spoiler),  # issue 16
            )
            try:
                seq = await self._store.insert_job(job)
            except DuplicateJobId:
                log.warning("job id %s already taken; drawing another", job.id)
                continue
            except DuplicateIdempotencyKey:  # the same request, submitted twice at once
                existing = await self._store.job_by_key(request.idempotency_key or "")
                assert existing is not None
                return Admitted(self._same_requester(existing, request.requester), None)
            except sqlite3.Error as exc:
                self._health.failing(Component.STORE, "", f"storing a new job: {exc}")
                raise LimitReached(keys.STORAGE_UNAVAILABLE) from None
            self._health.recovered(Component.STORE, "")
            self._recent.setdefault(user_key(request.requester), deque()).append(now)
            return Admitted(job, seq)
        raise RuntimeError("could not draw a free job id")  # 5 collisions in 62**9: a bug
