"""Per-user settings and moderation: one's ``/imagine`` defaults, bans and hourly quotas."""

from __future__ import annotations

import logging
from dataclasses import replace

from backend.access import Access
from backend.config import Config
from backend.defaults import check_defaults, effective_settings
from backend.domain import Options, Requester, UserSettings
from backend.errors import InvalidRequest
from backend.users import Users

log = logging.getLogger("majicbot.service")


class Accounts:
    """What users set for themselves, and what admins set for users."""

    def __init__(self, config: Config, users: Users, access: Access) -> None:
        self._config = config
        self._users = users
        self._access = access

    def settings(self, requester: Requester) -> UserSettings:
        """The requester's own defaults and the values a bare ``/imagine`` will use."""
        self._access.check(requester)
        defaults = self._users.defaults(requester.platform, requester.user_id)
        return effective_settings(defaults, self._config.limits)

    async def set_defaults(self, requester: Requester, defaults: Options) -> UserSettings:
        """Merge ``defaults`` (the options given; a seed is ignored) into the requester's.

        Validated exactly like a request's options (raises ``InvalidRequest`` with the same keys);
        a new size (aspect or width/height) replaces the old one.
        """
        self._access.check(requester)
        who = (requester.platform, requester.user_id)
        merged = check_defaults(defaults, self._config.limits).over(self._users.defaults(*who))
        await self._users.set_defaults(*who, merged)
        return self.settings(requester)

    async def reset_defaults(self, requester: Requester) -> UserSettings:
        """Forget the requester's defaults: ``/imagine`` uses the configured ones again."""
        self._access.check(requester)
        await self._users.set_defaults(requester.platform, requester.user_id, Options())
        return self.settings(requester)

    async def set_banned(self, requester: Requester, user_id: str, *, banned: bool) -> None:
        """Ban (or unban) ``user_id`` of the requester's platform; global admins only.

        ``AccessDenied("error.admin_only")`` for anyone else, ``InvalidRequest(
        "error.cannot_ban_admin")`` for an admin (who passes every check). Queued jobs stay.
        """
        self._access.check_admin(requester)
        if banned and self._access.is_admin(replace(requester, user_id=user_id)):
            raise InvalidRequest("error.cannot_ban_admin", user_id=user_id)
        await self._users.set_banned(requester.platform, user_id, banned=banned)
        action = "banned" if banned else "unbanned"
        log.info("%s:%s %s by %s", requester.platform.value, user_id, action, requester.user_id)

    async def set_hourly_quota(self, requester: Requester, user_id: str, quota: int | None) -> None:
        """Set (None: reset to the configured one) the hourly quota of ``user_id``; admins only."""
        self._access.check_admin(requester)
        await self._users.set_hourly_quota(requester.platform, user_id, quota)
