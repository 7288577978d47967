"""``/policy`` in Telegram (issue 16): what this chat does with images the safety check flags.

    /policy                      shows this chat's policy (everyone may ask)
    /policy allow|spoiler|block  sets it (the bot's admins)
    /policy default              forgets it: the configured default applies again

Errors (not an admin, an unknown word) reach the user through the handlers' ``on_error``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes, filters

from backend import keys
from backend.domain import ChatPolicy
from backend.errors import InvalidRequest
from bots.render import render_policy

if TYPE_CHECKING:
    from bots.telegram.handlers import TelegramHandlers

RESET_WORDS = ("default", "reset", "默认", "重置")


def parse_policy_word(args: list[str]) -> tuple[bool, ChatPolicy | None]:
    """(change it?, the new policy: None for "default"); ``policy.usage`` for anything else."""
    if not args:
        return False, None
    word = " ".join(args).strip().lower()
    if word in RESET_WORDS:
        return True, None
    try:
        return True, ChatPolicy(word)
    except ValueError:
        raise InvalidRequest(keys.POLICY_USAGE) from None


def register_policy(
    application: Application[Any, Any, Any, Any, Any, Any], handlers: TelegramHandlers
) -> None:
    """Add ``/policy`` to ``application``, answering through ``handlers``' service."""

    async def policy(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/policy [allow|spoiler|block|default]: this chat's policy for flagged images."""
        message = update.effective_message
        assert message is not None
        requester, lang = handlers.requester(update), handlers.language(update)
        handlers.service.check_access(requester)
        change, wanted = parse_policy_word(context.args or [])
        if change:
            view = await handlers.service.content.set_policy(requester, wanted)
        else:
            view = handlers.service.content.policy_of(requester)
        await message.reply_text(render_policy(view.stored, view.effective, lang, changed=change))

    application.add_handler(CommandHandler("policy", policy, filters.UpdateType.MESSAGE))
