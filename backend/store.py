"""The job store: one SQLite file (aiosqlite, WAL) holding every job, its history, and users.

This module declares the schema (``MIGRATIONS``) and the job columns, and holds the job table's
core reads and writes; users, content controls, delivery bookkeeping, forgetting and statistics
are parts in ``backend.store_parts`` sharing the connection (``store.users``, ...).

Every write is one autocommitted statement, so a method that returns has made its change durable
against a crash of this process (WAL with ``synchronous=NORMAL``: a power loss may drop the last
transactions, a SIGKILL does not). Status transitions are recorded by triggers in
``job_transitions``. The schema version lives in ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes
version ``i`` to ``i + 1`` and runs once, in order, when an older file is opened.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from backend.domain import (
    Delivery,
    GenerationParams,
    Job,
    JobStatus,
    Platform,
    ReplyTarget,
    Requester,
    Timings,
)
from backend.errors import StartupError
from backend.files import private_dir, private_file
from backend.store_parts import (
    ContentStore,
    DeliveryStore,
    RetentionStore,
    StatsStore,
    StorePart,
    UserStore,
)

log = logging.getLogger("majicbot.store")

MIGRATIONS: tuple[str, ...] = (
    # 0 → 1: jobs, their status transitions, users.
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        display_name TEXT NOT NULL,
        chat_id TEXT,
        guild_id TEXT,
        language TEXT NOT NULL,
        reply_chat_id TEXT NOT NULL,
        reply_message_id TEXT,
        reply_token TEXT,
        prompt TEXT NOT NULL,
        seed INTEGER NOT NULL,
        steps INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        guidance REAL NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        result_path TEXT,
        error_key TEXT,
        error_detail TEXT,
        wait_s REAL,
        text_encode_s REAL,
        denoise_s REAL,
        decode_s REAL,
        worker TEXT,
        prompt_truncated INTEGER NOT NULL DEFAULT 0,
        delivered_at REAL,
        parent_job_id TEXT
    );
    CREATE INDEX jobs_status ON jobs (status, seq);
    CREATE INDEX jobs_user ON jobs (platform, user_id, created_at);
    CREATE INDEX jobs_chat ON jobs (platform, chat_id, created_at);
    CREATE INDEX jobs_finished ON jobs (finished_at);
    CREATE TABLE job_transitions (
        job_id TEXT NOT NULL,
        status TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX job_transitions_job ON job_transitions (job_id);
    CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs BEGIN
        INSERT INTO job_transitions VALUES (NEW.id, NEW.status, NEW.created_at);
    END;
    CREATE TRIGGER jobs_status_changed AFTER UPDATE OF status ON jobs
    WHEN NEW.status IS NOT OLD.status BEGIN
        INSERT INTO job_transitions
        VALUES (NEW.id, NEW.status, (julianday('now') - 2440587.5) * 86400.0);
    END;
    CREATE TABLE users (
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        banned INTEGER NOT NULL DEFAULT 0,
        hourly_quota INTEGER,
        defaults TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (platform, user_id)
    );
    """,
    # 1 → 2: the platform event that asked for a job, so that a re-delivered one is not run twice.
    """
    ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
    CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key);
    """,
    # 2 → 3: uploads of the result begun and not known to have failed (delivery at least once,
    # an upload a crash interrupted resent at most once).
    """
    ALTER TABLE jobs ADD COLUMN delivery_starts INTEGER NOT NULL DEFAULT 0;
    """,
    # 3 → 4 (issue 16, content controls): the user's --spoiler, whether the channel was marked
    # age-restricted, the safety check's verdict and the delivery it chose; per-chat policies.
    """
    ALTER TABLE jobs ADD COLUMN spoiler INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN nsfw_channel INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN flagged INTEGER;
    ALTER TABLE jobs ADD COLUMN safety_score REAL;
    ALTER TABLE jobs ADD COLUMN delivery TEXT NOT NULL DEFAULT 'show';
    CREATE TABLE IF NOT EXISTS chat_policies (
        platform TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        policy TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at REAL NOT NULL,
        PRIMARY KEY (platform, chat_id)
    );
    """,
    # 4 → 5: the messages a job's result was posted as (a result button must be on one of them).
    """
    CREATE TABLE job_messages (
        job_id TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        PRIMARY KEY (job_id, chat_id, message_id)
    );
    CREATE INDEX jobs_created ON jobs (created_at);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def _timing(name: str) -> Callable[[Job], float | None]:
    return lambda job: getattr(job.timings, name) if job.timings else None


# The one declaration of the job columns a ``Job`` is written to (``_row_job`` reads them back).
_JOB_COLUMNS: dict[str, Callable[[Job], Any]] = {
    "id": lambda j: j.id,
    "platform": lambda j: j.requester.platform.value,
    "user_id": lambda j: j.requester.user_id,
    "display_name": lambda j: j.requester.display_name,
    "chat_id": lambda j: j.requester.chat_id,
    "guild_id": lambda j: j.requester.guild_id,
    "language": lambda j: j.requester.language,
    "reply_chat_id": lambda j: j.reply_to.chat_id,
    "reply_message_id": lambda j: j.reply_to.message_id,
    "reply_token": lambda j: j.reply_to.token,
    "prompt": lambda j: j.params.prompt,
    "seed": lambda j: j.params.seed,
    "steps": lambda j: j.params.steps,
    "width": lambda j: j.params.width,
    "height": lambda j: j.params.height,
    "guidance": lambda j: j.params.guidance,
    "status": lambda j: j.status.value,
    "attempts": lambda j: j.attempts,
    "created_at": lambda j: j.created_at,
    "started_at": lambda j: j.started_at,
    "finished_at": lambda j: j.finished_at,
    "result_path": lambda j: str(j.result_path) if j.result_path else None,
    "error_key": lambda j: j.error_key,
    "error_detail": lambda j: j.error_detail,
    **{name: _timing(name) for name in ("wait_s", "text_encode_s", "denoise_s", "decode_s")},
    "worker": lambda j: j.worker,
    "prompt_truncated": lambda j: int(j.prompt_truncated),
    "delivered_at": lambda j: j.delivered_at,
    "parent_job_id": lambda j: j.parent_job_id,
    "idempotency_key": lambda j: j.idempotency_key,
    "spoiler": lambda j: int(j.spoiler),
    "nsfw_channel": lambda j: int(j.requester.nsfw_channel),
    "flagged": lambda j: None if j.flagged is None else int(j.flagged),
    "safety_score": lambda j: j.safety_score,
    "delivery": lambda j: j.delivery.value,
}
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})"
)
_SELECT_JOB = f"SELECT seq, {', '.join(_JOB_COLUMNS)} FROM jobs"


class DuplicateJobId(Exception):
    """An insert hit an existing id (the caller draws a new one)."""


class DuplicateIdempotencyKey(Exception):
    """An insert hit an existing idempotency key (the caller returns that job)."""


class Store(StorePart):
    """Async access to the SQLite file. Open it with ``Store.open(path)``.

    The job table's core reads and writes are its own; the other parts share its connection:
    ``users`` (bans, quotas, defaults), ``content`` (verdicts, chat policies), ``deliveries``
    (status message, uploads, result messages), ``retention`` (forgetting), ``stats``.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        super().__init__(db)
        self.users = UserStore(db)
        self.content = ContentStore(db)
        self.deliveries = DeliveryStore(db)
        self.retention = RetentionStore(db)
        self.stats = StatsStore(db)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[Store]:
        """Open (creating it and its folder if needed), migrate, and close on exit.

        A file that cannot be written (read-only mount or file, not a database) is refused here,
        at start, with a ``StartupError`` sentence, not discovered job by job. The folder is made
        0700 and the file (with its WAL and shared-memory files, which SQLite creates with the
        database file's mode) 0600: prompts are private.
        """
        private_dir(path.parent)
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            private_file(name, create=name == path)
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise _unusable(path, exc) from None
        try:
            try:
                await _prepare(db)
            except sqlite3.Error as exc:
                raise _unusable(path, exc) from None
            yield cls(db)
        finally:
            await db.close()

    # ---- jobs ---------------------------------------------------------------------------------

    async def insert_job(self, job: Job) -> int:
        """Commit a new job; returns its sequence number (the order of acceptance).

        Raises ``DuplicateIdempotencyKey`` or ``DuplicateJobId`` when either is taken.
        """
        try:
            cursor = await self._db.execute(
                _INSERT_JOB, [get(job) for get in _JOB_COLUMNS.values()]
            )
        except sqlite3.IntegrityError as exc:
            if job.idempotency_key and await self.job_by_key(job.idempotency_key) is not None:
                raise DuplicateIdempotencyKey(job.idempotency_key) from exc
            raise DuplicateJobId(job.id) from exc
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._fetch(f"{_SELECT_JOB} WHERE id = ?", (job_id,))
        return _row_job(rows[0]) if rows else None

    async def job_by_key(self, idempotency_key: str) -> Job | None:
        """The job submitted with ``idempotency_key``, if any."""
        rows = await self._fetch(f"{_SELECT_JOB} WHERE idempotency_key = ?", (idempotency_key,))
        return _row_job(rows[0]) if rows else None

    async def jobs_in(
        self, statuses: Iterable[JobStatus], platform: Platform | None = None
    ) -> list[tuple[int, Job]]:
        """(seq, job) with one of ``statuses``, in the order they were accepted."""
        wanted = [s.value for s in statuses]
        sql = f"{_SELECT_JOB} WHERE status IN ({', '.join('?' * len(wanted))})"
        args: list[Any] = list(wanted)
        if platform is not None:
            sql += " AND platform = ?"
            args.append(platform.value)
        rows = await self._fetch(sql + " ORDER BY seq", args)
        return [(row["seq"], _row_job(row)) for row in rows]

    async def undelivered(self, platform: Platform) -> list[Job]:
        """Succeeded or failed jobs of ``platform`` not yet marked delivered, oldest first."""
        rows = await self._fetch(
            f"{_SELECT_JOB} WHERE status IN ('succeeded', 'failed') AND delivered_at IS NULL "
            "AND platform = ? ORDER BY seq",
            (platform.value,),
        )
        return [_row_job(row) for row in rows]

    async def history(
        self,
        platform: Platform | None = None,
        user_id: str | None = None,
        chat_id: str | None = None,
        limit: int = 10,
    ) -> list[Job]:
        """Newest first; each given filter narrows the list."""
        clauses, args = [], []
        for column, value in (
            ("platform", platform.value if platform else None),
            ("user_id", user_id),
            ("chat_id", chat_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._fetch(f"{_SELECT_JOB}{where} ORDER BY seq DESC LIMIT ?", [*args, limit])
        return [_row_job(row) for row in rows]

    async def transitions(self, job_id: str) -> list[tuple[JobStatus, float]]:
        """Every status the job went through, with its unix time, oldest first."""
        rows = await self._fetch(
            "SELECT status, at FROM job_transitions WHERE job_id = ? ORDER BY rowid", (job_id,)
        )
        return [(JobStatus(row["status"]), row["at"]) for row in rows]

    async def mark_running(self, job_id: str, worker: str, started_at: float) -> None:
        await self._update(
            job_id, status=JobStatus.RUNNING.value, worker=worker, started_at=started_at
        )

    async def mark_succeeded(
        self,
        job_id: str,
        result_path: Path,
        timings: Timings,
        finished_at: float,
        prompt_truncated: bool,
    ) -> None:
        await self._update(
            job_id,
            status=JobStatus.SUCCEEDED.value,
            result_path=str(result_path),
            finished_at=finished_at,
            prompt_truncated=int(prompt_truncated),
            wait_s=timings.wait_s,
            text_encode_s=timings.text_encode_s,
            denoise_s=timings.denoise_s,
            decode_s=timings.decode_s,
        )

    async def mark_failed(self, job_id: str, key: str, detail: str, finished_at: float) -> None:
        await self._update(
            job_id,
            status=JobStatus.FAILED.value,
            error_key=key,
            error_detail=detail,
            finished_at=finished_at,
        )

    async def mark_cancelled(self, job_id: str, finished_at: float) -> None:
        await self._update(job_id, status=JobStatus.CANCELLED.value, finished_at=finished_at)

    async def requeue(self, job_id: str, attempts: int) -> None:
        """Back to queued (after an interruption or a graceful stop)."""
        await self._update(
            job_id, status=JobStatus.QUEUED.value, attempts=attempts, started_at=None, worker=None
        )


BUSY_TIMEOUT_MS = 5000  # how long a write waits for another connection's lock


async def _prepare(db: aiosqlite.Connection) -> None:
    db.row_factory = sqlite3.Row
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")
    await db.execute("PRAGMA secure_delete=ON")  # forgotten prompts are overwritten
    await _migrate(db)
    await db.execute("BEGIN IMMEDIATE")  # a write lock: fails now on a read-only file or mount
    await db.execute("ROLLBACK")


def _unusable(path: Path, exc: sqlite3.Error) -> StartupError:
    return StartupError(
        f"the job database {path} cannot be opened for writing ({exc}): check that it is a "
        f"majicbot database on a writable file system, writable by this user (a read-only "
        f"mount or file is refused), or point storage.data_dir elsewhere"
    )


async def _migrate(db: aiosqlite.Connection) -> None:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the job database has schema version {version}, newer than this majicbot "
            f"({SCHEMA_VERSION}); upgrade majicbot"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        # executescript commits first; the version bump rides in the same script.
        await db.executescript(
            f"BEGIN; {MIGRATIONS[target - 1]}; PRAGMA user_version = {target}; COMMIT;"
        )
        log.info("job database migrated to schema version %d", target)


def _row_job(row: sqlite3.Row) -> Job:
    timings = None
    if row["denoise_s"] is not None:
        timings = Timings(
            wait_s=row["wait_s"],
            text_encode_s=row["text_encode_s"],
            denoise_s=row["denoise_s"],
            decode_s=row["decode_s"],
        )
    return Job(
        id=row["id"],
        params=GenerationParams(
            prompt=row["prompt"],
            seed=row["seed"],
            steps=row["steps"],
            width=row["width"],
            height=row["height"],
            guidance=row["guidance"],
        ),
        requester=Requester(
            platform=Platform(row["platform"]),
            user_id=row["user_id"],
            display_name=row["display_name"],
            chat_id=row["chat_id"],
            guild_id=row["guild_id"],
            language=row["language"],
            nsfw_channel=bool(row["nsfw_channel"]),
        ),
        reply_to=ReplyTarget(
            chat_id=row["reply_chat_id"],
            message_id=row["reply_message_id"],
            token=row["reply_token"],
        ),
        status=JobStatus(row["status"]),
        created_at=row["created_at"],
        attempts=row["attempts"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result_path=Path(row["result_path"]) if row["result_path"] else None,
        error_key=row["error_key"],
        error_detail=row["error_detail"],
        timings=timings,
        worker=row["worker"],
        prompt_truncated=bool(row["prompt_truncated"]),
        delivered_at=row["delivered_at"],
        parent_job_id=row["parent_job_id"],
        idempotency_key=row["idempotency_key"],
        spoiler=bool(row["spoiler"]),
        flagged=None if row["flagged"] is None else bool(row["flagged"]),
        safety_score=row["safety_score"],
        delivery=Delivery(row["delivery"]),
    )
