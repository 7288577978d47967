"""The users table, cached in memory: stored bans, hourly quota overrides, per-user defaults.

Read once when the service opens and written through on every change, so access checks and
admission never wait on SQLite. Defaults are decoded (and validated) once per change.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from backend.config import LimitsConfig
from backend.defaults import decode_defaults, encode_defaults
from backend.domain import Options, Platform
from backend.store import Store
from backend.store_parts import UserRecord

log = logging.getLogger("majicbot.users")

UserKey = tuple[str, str]  # (platform, user id), as the scheduler keys users


class Users:
    """Per-user records by (platform, user id); a user never seen has the default record."""

    def __init__(self, store: Store, limits: LimitsConfig) -> None:
        self._store = store
        self._limits = limits
        self._records: dict[UserKey, UserRecord] = {}
        self._defaults: dict[UserKey, Options] = {}

    async def load(self) -> None:
        """Read every stored record (once, when the service opens)."""
        for record in await self._store.users.all():
            self._remember(record)

    def record(self, platform: Platform, user_id: str) -> UserRecord:
        return self._records.get((platform.value, user_id)) or UserRecord(platform, user_id)

    def defaults(self, platform: Platform, user_id: str) -> Options:
        """The user's ``/settings`` defaults (validated against today's limits)."""
        return self._defaults.get((platform.value, user_id), Options())

    async def set_defaults(self, platform: Platform, user_id: str, defaults: Options) -> None:
        record = replace(self.record(platform, user_id), defaults=encode_defaults(defaults))
        await self._put(record)
        log.info("defaults of %s:%s set to %s", platform.value, user_id, dict(record.defaults))

    async def set_banned(self, platform: Platform, user_id: str, *, banned: bool) -> None:
        await self._put(replace(self.record(platform, user_id), banned=banned))

    async def set_hourly_quota(self, platform: Platform, user_id: str, quota: int | None) -> None:
        await self._put(replace(self.record(platform, user_id), hourly_quota=quota))

    async def _put(self, record: UserRecord) -> None:
        await self._store.users.put(record)
        self._remember(record)

    def _remember(self, record: UserRecord) -> None:
        key = (record.platform.value, record.user_id)
        self._records[key] = record
        who = f"{record.platform.value}:{record.user_id}"
        self._defaults[key] = decode_defaults(record.defaults, self._limits, who)
