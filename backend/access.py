"""Who may do what: the one definition of admin, bans, allowlists and managing a job.

- **Admins** are the configured admin ids of the requester's platform (``telegram.admins``,
  ``discord.admins``); the CLI platform is the machine's owner and always an admin. Admins pass
  every check, bypass every cap, see ``/status``, ban and unban, and manage every job.
- **Guild admins** (``Requester.guild_admin``: Manage Server or a configured admin role, as the
  Discord adapter sees it in ``requester.guild_id``) may manage (cancel, delete) the jobs of that
  guild only. They bypass no allowlist, cap or ban, never see ``/status`` and never ban.
- **Everyone else** may manage their own jobs (same platform and user id).

Buttons (``check_action``) are bound to the message they are on, because callback data and custom
ids can be forged while the message a press arrives from cannot: Cancel must be on the job's
status message, every result button on a message recorded as showing that job's result ("#id"
buttons of /history excepted: they act only on one's own jobs). Then: anyone in that chat may
Reroll, take Variations or fetch the Original PNG of an image posted there (a new job is the
presser's own, under their caps); Cancel and Delete need ``can_manage``. Without a message (a
command, the CLI) only the owner or a global admin may act on a job by id — Cancel
and Delete keep ``can_manage``. Refusals are ``AccessDenied`` with a sentence and change nothing.

Access (``check``): Telegram refuses ``banned_users``; when ``allowed_users`` or ``allowed_chats``
is non-empty, a request passes if its user is in ``allowed_users`` *or* its chat is in
``allowed_chats``. Discord refuses ``banned_users``; DMs need ``allow_dms``; in a guild,
``allowed_guilds`` (when non-empty) must list it. Users banned in the store (``/ban``) are refused
on every platform. The CLI platform is always allowed.
"""

from __future__ import annotations

from backend import keys
from backend.config import Config
from backend.domain import Job, JobAction, MessageRef, Platform, Requester
from backend.errors import AccessDenied
from backend.users import Users


def is_admin(requester: Requester, config: Config) -> bool:
    """A configured admin of the requester's platform (or the CLI)."""
    if requester.platform is Platform.TELEGRAM:
        return requester.user_id in config.telegram.admins
    if requester.platform is Platform.DISCORD:
        return requester.user_id in config.discord.admins
    return requester.platform is Platform.CLI


def owns(job: Job, requester: Requester) -> bool:
    """``requester`` asked for ``job`` (same platform, same user)."""
    mine = job.requester
    return (mine.platform, mine.user_id) == (requester.platform, requester.user_id)


def can_manage(job: Job, requester: Requester, config: Config) -> bool:
    """Owner, admin, or a guild admin of the guild the job was asked in."""
    if owns(job, requester) or is_admin(requester, config):
        return True
    guild = requester.guild_id
    return (
        requester.guild_admin
        and guild is not None
        and job.requester.platform is requester.platform
        and job.requester.guild_id == guild
    )


ANYONE_IN_THE_CHAT = frozenset({JobAction.REROLL, JobAction.VARIATION, JobAction.ORIGINAL})


def on_its_message(
    job: Job, action: JobAction, where: MessageRef, results: frozenset[MessageRef]
) -> bool:
    """The button was pressed on a message of ``job``: status for Cancel, else a result."""
    if action is JobAction.GET:
        return True  # /history's message lists several jobs; GET is owner-only instead
    if action is JobAction.CANCEL:
        status = job.reply_to.message_id
        return status is not None and where == MessageRef(job.reply_to.chat_id, status)
    return where in results


def may_act(
    job: Job, requester: Requester, action: JobAction, config: Config, *, pressed: bool
) -> bool:
    """``requester`` may do ``action`` to ``job`` (pressed: on one of its messages)."""
    if action in (JobAction.CANCEL, JobAction.DELETE):
        return can_manage(job, requester, config)
    if pressed and action in ANYONE_IN_THE_CHAT and job.requester.platform is requester.platform:
        return True
    return owns(job, requester) or is_admin(requester, config)


def check_access(requester: Requester, config: Config, *, banned_in_store: bool = False) -> None:
    """Raise ``AccessDenied`` unless ``requester`` may use the bot. Admins always may."""
    if is_admin(requester, config):
        return
    if requester.platform is Platform.TELEGRAM:
        _check_telegram(requester, config, banned_in_store)
    elif requester.platform is Platform.DISCORD:
        _check_discord(requester, config, banned_in_store)


def _check_telegram(requester: Requester, config: Config, banned: bool) -> None:
    tg = config.telegram
    if banned or requester.user_id in tg.banned_users:
        raise AccessDenied("error.banned")
    if not (tg.allowed_users or tg.allowed_chats):
        return
    if requester.user_id in tg.allowed_users:
        return
    if requester.chat_id is not None and requester.chat_id in tg.allowed_chats:
        return
    raise AccessDenied("error.not_allowed", where="chat" if tg.allowed_chats else "user")


def _check_discord(requester: Requester, config: Config, banned: bool) -> None:
    dc = config.discord
    if banned or requester.user_id in dc.banned_users:
        raise AccessDenied("error.banned")
    if requester.guild_id is None:
        if not dc.allow_dms:
            raise AccessDenied("error.not_allowed", where="dm")
        return
    if dc.allowed_guilds and requester.guild_id not in dc.allowed_guilds:
        raise AccessDenied("error.not_allowed", where="guild")


class Access:
    """The rules above bound to the config and the users table (stored bans)."""

    def __init__(self, config: Config, users: Users) -> None:
        self._config = config
        self._users = users

    def is_admin(self, requester: Requester) -> bool:
        """A global admin (configured ids of its platform, or the CLI)."""
        return is_admin(requester, self._config)

    def check(self, requester: Requester) -> None:
        """Raise ``AccessDenied`` (banned, stored ban included; not allowlisted)."""
        banned = self._users.record(requester.platform, requester.user_id).banned
        check_access(requester, self._config, banned_in_store=banned)

    def check_admin(self, requester: Requester, key: str = "error.admin_only") -> None:
        """Raise ``AccessDenied(key)`` unless ``requester`` is a global admin."""
        if not self.is_admin(requester):
            raise AccessDenied(key)

    def check_action(
        self,
        job: Job,
        requester: Requester,
        action: JobAction,
        where: MessageRef | None,
        results: frozenset[MessageRef],
    ) -> None:
        """Raise ``AccessDenied`` unless ``requester`` may do ``action`` to ``job`` from ``where``
        (the message a button was pressed on; None for a command). ``results``: the messages
        recorded as showing the job's result.
        """
        self.check(requester)
        if where is not None and not on_its_message(job, action, where, results):
            raise AccessDenied(keys.WRONG_MESSAGE, job_id=job.id)
        if not may_act(job, requester, action, self._config, pressed=where is not None):
            raise AccessDenied("error.not_your_job", job_id=job.id)

    def check_can_manage(self, job: Job, requester: Requester) -> None:
        """Raise ``AccessDenied`` unless ``requester`` may use the bot and manage ``job``."""
        self.check(requester)
        if not can_manage(job, requester, self._config):
            raise AccessDenied("error.not_your_job", job_id=job.id)
