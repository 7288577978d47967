"""The job store: one SQLite file (aiosqlite, WAL) holding every job, its history, and users.

Every write is one autocommitted statement, so a method that returns has made its change durable
against a crash of this process (WAL with ``synchronous=NORMAL``: a power loss may drop the last
transactions, a SIGKILL does not). Status transitions are recorded by triggers in
``job_transitions``. The schema version lives in ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes
version ``i`` to ``i + 1`` and runs once, in order, when an older file is opened.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from backend.domain import (
    ChatPolicy,
    Delivery,
    GenerationParams,
    Job,
    JobStatus,
    MessageRef,
    Platform,
    ReplyTarget,
    Requester,
    Timings,
)
from backend.errors import StartupError
from backend.files import private_dir, private_file

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


@dataclass(frozen=True)
class UserRecord:
    """Per-user settings kept by the store."""

    platform: Platform
    user_id: str
    banned: bool = False
    hourly_quota: int | None = None  # None = the configured default
    defaults: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Stats:
    """Finished jobs over a window."""

    succeeded: int
    failed: int
    mean_s_per_image: float | None


class Store:
    """Async access to the SQLite file. Open it with ``Store.open(path)``."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

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

    async def set_reply_message(self, job_id: str, message_id: str) -> bool:
        """Record the adapter's status message of a job; False if there is no such job."""
        cursor = await self._db.execute(
            "UPDATE jobs SET reply_message_id = ? WHERE id = ?", (message_id, job_id)
        )
        return cursor.rowcount > 0

    async def begin_delivery(self, job_id: str) -> int:
        """Count an upload of the job's result as begun; the uploads begun before it (not known
        to have failed: a crash interrupted them). Raises ``KeyError`` if there is no such job."""
        rows = await self._fetch(
            "UPDATE jobs SET delivery_starts = delivery_starts + 1 WHERE id = ? "
            "RETURNING delivery_starts",
            (job_id,),
        )
        if not rows:
            raise KeyError(job_id)
        return int(rows[0][0]) - 1

    async def delivery_failed(self, job_id: str) -> None:
        """The upload begun last is known not to have arrived: it does not count."""
        await self._db.execute(
            "UPDATE jobs SET delivery_starts = MAX(0, delivery_starts - 1) WHERE id = ?", (job_id,)
        )

    async def mark_delivered(self, job_id: str, at: float) -> bool:
        """False if there is no such job. A delivered job needs no Discord token any more."""
        cursor = await self._db.execute(
            "UPDATE jobs SET delivered_at = ?, "
            "reply_token = CASE platform WHEN 'discord' THEN NULL ELSE reply_token END "
            "WHERE id = ?",
            (at, job_id),
        )
        return cursor.rowcount > 0

    # ---- where results were posted, and forgetting ----------------------------------------------

    async def add_result_message(self, job_id: str, where: MessageRef) -> bool:
        """Record a message showing ``job_id``'s result; False if there is no such job."""
        if await self.get_job(job_id) is None:
            return False
        await self._db.execute(
            "INSERT OR IGNORE INTO job_messages (job_id, chat_id, message_id) VALUES (?, ?, ?)",
            (job_id, where.chat_id, where.message_id),
        )
        return True

    async def result_messages(self, job_id: str) -> frozenset[MessageRef]:
        """Every message recorded as showing ``job_id``'s result."""
        rows = await self._fetch(
            "SELECT chat_id, message_id FROM job_messages WHERE job_id = ?", (job_id,)
        )
        return frozenset(MessageRef(r["chat_id"], r["message_id"]) for r in rows)

    async def forget(self, job_id: str) -> Path | None:
        """Drop the prompt, the name, the token and the image path of a job; returns the path.

        What stays (ids, times, status, size, seed) is what quotas, fairness and the statistics
        need. Forgetting twice is harmless.
        """
        rows = await self._fetch("SELECT result_path FROM jobs WHERE id = ?", (job_id,))
        await self._db.execute(
            "UPDATE jobs SET prompt = '', display_name = '', reply_token = NULL, "
            "result_path = NULL WHERE id = ?",
            (job_id,),
        )
        path = rows[0]["result_path"] if rows else None
        return Path(path) if path else None

    async def scrub(self) -> None:
        """Move the WAL into the file and empty it: old copies of forgotten rows go with it.

        Best effort: while another statement of this connection is still open SQLite refuses
        ("table is locked"); the next scrub, the automatic checkpoints and closing do it then.
        """
        try:
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            log.debug("checkpoint postponed: %s", exc)

    async def remembered_before(self, before: float) -> list[str]:
        """Finished jobs accepted before ``before`` that still hold a prompt or an image."""
        rows = await self._fetch(
            "SELECT id FROM jobs WHERE created_at < ? "
            "AND status IN ('succeeded', 'failed', 'cancelled') "
            "AND (prompt != '' OR display_name != '' OR result_path IS NOT NULL) ORDER BY seq",
            (before,),
        )
        return [row["id"] for row in rows]

    async def drop_tokens(self, platform: Platform, before: float) -> int:
        """Forget the adapter tokens of ``platform``'s jobs accepted before ``before``."""
        cursor = await self._db.execute(
            "UPDATE jobs SET reply_token = NULL "
            "WHERE platform = ? AND created_at < ? AND reply_token IS NOT NULL",
            (platform.value, before),
        )
        return cursor.rowcount

    # ---- counts and stats ---------------------------------------------------------------------

    async def recent_submissions(self, since: float) -> list[tuple[Platform, str, float]]:
        """(platform, user id, created_at) of jobs accepted since ``since``, oldest first."""
        rows = await self._fetch(
            "SELECT platform, user_id, created_at FROM jobs WHERE created_at >= ? ORDER BY seq",
            (since,),
        )
        return [(Platform(r["platform"]), r["user_id"], r["created_at"]) for r in rows]

    async def stats(self, since: float) -> Stats:
        """Jobs finished since ``since``: succeeded, failed, mean generation seconds per image."""
        rows = await self._fetch(
            "SELECT "
            "  COUNT(*) FILTER (WHERE status = 'succeeded') AS ok, "
            "  COUNT(*) FILTER (WHERE status = 'failed') AS bad, "
            "  AVG(text_encode_s + denoise_s + decode_s) FILTER (WHERE status = 'succeeded') "
            "    AS mean_s "
            "FROM jobs WHERE finished_at >= ?",
            (since,),
        )
        row = rows[0]
        return Stats(row["ok"], row["bad"], row["mean_s"])

    # ---- users --------------------------------------------------------------------------------

    async def users(self) -> list[UserRecord]:
        rows = await self._fetch("SELECT * FROM users")
        return [_row_user(row) for row in rows]

    async def put_user(self, user: UserRecord) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO users (platform, user_id, banned, hourly_quota, defaults) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                user.platform.value,
                user.user_id,
                int(user.banned),
                user.hourly_quota,
                json.dumps(dict(user.defaults)),
            ),
        )

    # ---- content controls (issue 16) ----------------------------------------------------------

    async def set_verdict(
        self, job_id: str, flagged: bool | None, score: float | None, delivery: Delivery
    ) -> None:
        """Record the safety check's verdict and the delivery it chose (before it is delivered)."""
        flag = None if flagged is None else int(flagged)
        await self._update(job_id, flagged=flag, safety_score=score, delivery=delivery.value)

    async def content_counts(self, since: float) -> tuple[int, int]:
        """(images flagged, images withheld) among jobs finished since ``since``."""
        rows = await self._fetch(
            "SELECT COUNT(*) FILTER (WHERE flagged = 1) AS flagged, "
            "  COUNT(*) FILTER (WHERE delivery = 'withheld') AS withheld "
            "FROM jobs WHERE finished_at >= ?",
            (since,),
        )
        return rows[0]["flagged"], rows[0]["withheld"]

    async def chat_policies(self) -> list[tuple[Platform, str, ChatPolicy]]:
        """Every policy an admin set for a chat: (platform, chat id, policy)."""
        rows = await self._fetch("SELECT platform, chat_id, policy FROM chat_policies")
        return [(Platform(r["platform"]), r["chat_id"], ChatPolicy(r["policy"])) for r in rows]

    async def put_chat_policy(
        self, platform: Platform, chat_id: str, policy: ChatPolicy | None, set_by: str, at: float
    ) -> None:
        """Set a chat's policy; None forgets it (the configured default applies again)."""
        if policy is None:
            await self._db.execute(
                "DELETE FROM chat_policies WHERE platform = ? AND chat_id = ?",
                (platform.value, chat_id),
            )
            return
        await self._db.execute(
            "INSERT OR REPLACE INTO chat_policies (platform, chat_id, policy, set_by, set_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (platform.value, chat_id, policy.value, set_by, at),
        )

    # ---- helpers ------------------------------------------------------------------------------

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

    async def _update(self, job_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        await self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id)
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


def _row_user(row: sqlite3.Row) -> UserRecord:
    defaults = json.loads(row["defaults"])
    return UserRecord(
        platform=Platform(row["platform"]),
        user_id=row["user_id"],
        banned=bool(row["banned"]),
        hourly_quota=row["hourly_quota"],
        defaults=tuple(sorted((str(k), str(v)) for k, v in defaults.items())),
    )
