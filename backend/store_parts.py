"""The parts of the job store beside the job table's core: users, content controls, delivery
bookkeeping, forgetting, statistics.

Each part shares the one connection of its ``Store`` and is reached as one of its attributes
(``store.users``, ``store.content``, ``store.deliveries``, ``store.retention``, ``store.stats``).
The schema (``MIGRATIONS``) and the job columns are declared once, in ``backend.store``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from backend.domain import ChatPolicy, Delivery, MessageRef, Platform

log = logging.getLogger("majicbot.store")


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


class StorePart:
    """Statements over the store's one connection (every write autocommitted)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

    async def _update(self, job_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{column} = ?" for column in values)
        await self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id)
        )


class UserStore(StorePart):
    """Bans, quotas and defaults of users (the ``users`` table)."""

    async def all(self) -> list[UserRecord]:
        rows = await self._fetch("SELECT * FROM users")
        return [_row_user(row) for row in rows]

    async def put(self, user: UserRecord) -> None:
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


class ContentStore(StorePart):
    """Content controls (issue 16): safety verdicts of jobs and per-chat policies."""

    async def set_verdict(
        self, job_id: str, flagged: bool | None, score: float | None, delivery: Delivery
    ) -> None:
        """Record the safety check's verdict and the delivery it chose (before it is delivered)."""
        flag = None if flagged is None else int(flagged)
        await self._update(job_id, flagged=flag, safety_score=score, delivery=delivery.value)

    async def counts(self, since: float) -> tuple[int, int]:
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


class DeliveryStore(StorePart):
    """Delivery bookkeeping: the status message, uploads begun, delivery, result messages."""

    async def set_reply_message(self, job_id: str, message_id: str) -> bool:
        """Record the adapter's status message of a job; False if there is no such job."""
        cursor = await self._db.execute(
            "UPDATE jobs SET reply_message_id = ? WHERE id = ?", (message_id, job_id)
        )
        return cursor.rowcount > 0

    async def begin(self, job_id: str) -> int:
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

    async def failed(self, job_id: str) -> None:
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

    async def add_posted(self, job_id: str, where: MessageRef) -> bool:
        """Record a message showing ``job_id``'s result; False if there is no such job."""
        if not await self._fetch("SELECT 1 FROM jobs WHERE id = ?", (job_id,)):
            return False
        await self._db.execute(
            "INSERT OR IGNORE INTO job_messages (job_id, chat_id, message_id) VALUES (?, ?, ?)",
            (job_id, where.chat_id, where.message_id),
        )
        return True

    async def posted(self, job_id: str) -> frozenset[MessageRef]:
        """Every message recorded as showing ``job_id``'s result."""
        rows = await self._fetch(
            "SELECT chat_id, message_id FROM job_messages WHERE job_id = ?", (job_id,)
        )
        return frozenset(MessageRef(r["chat_id"], r["message_id"]) for r in rows)


class RetentionStore(StorePart):
    """Forgetting: prompts, names, tokens and image paths of old or deleted jobs."""

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


class StatsStore(StorePart):
    """Counts over time windows: submissions (quotas) and finished jobs (statistics)."""

    async def recent_submissions(self, since: float) -> list[tuple[Platform, str, float]]:
        """(platform, user id, created_at) of jobs accepted since ``since``, oldest first."""
        rows = await self._fetch(
            "SELECT platform, user_id, created_at FROM jobs WHERE created_at >= ? ORDER BY seq",
            (since,),
        )
        return [(Platform(r["platform"]), r["user_id"], r["created_at"]) for r in rows]

    async def finished(self, since: float) -> Stats:
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


def _row_user(row: sqlite3.Row) -> UserRecord:
    defaults = json.loads(row["defaults"])
    return UserRecord(
        platform=Platform(row["platform"]),
        user_id=row["user_id"],
        banned=bool(row["banned"]),
        hourly_quota=row["hourly_quota"],
        defaults=tuple(sorted((str(k), str(v)) for k, v in defaults.items())),
    )
