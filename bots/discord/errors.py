"""The one place where exceptions become the sentence a Discord user sees.

Both the command tree's ``on_error`` and the persistent buttons call :func:`report_error`; users
get a translated sentence (ephemeral where Discord allows it, at most 2,000 characters, with no
mention allowed to ping), never a traceback. Expected errors are logged in one line — user
errors, and what discord.py raises for a payload that does not fit the command tree (unknown or
stale command, wrong option type) — anything else with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from backend import keys
from backend.errors import EngineError, UserError
from bots.i18n import translate
from bots.render import shorten

log = logging.getLogger("majicbot.discord")

MESSAGE_LIMIT = 2000  # characters of message content
# What discord.py raises when a payload does not fit the tree: the sender's problem, not ours.
STALE = (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)
MISFIT = (*STALE, app_commands.TransformerError, app_commands.CheckFailure)


def unwrap(error: BaseException) -> BaseException:
    """The exception the command raised, without discord.py's wrappers."""
    while isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    return error


def error_sentence(error: BaseException, lang: str) -> str:
    """The translated sentence for ``error`` in ``lang``."""
    error = unwrap(error)
    if isinstance(error, UserError | EngineError):
        return translate(error.key, lang, **error.params)
    if isinstance(error, STALE):
        return translate(keys.DISCORD_STALE_COMMAND, lang)
    if isinstance(error, app_commands.TransformerError | app_commands.CheckFailure):
        return translate("error.invalid", lang)
    return translate("error.generic", lang)


def _log(interaction: discord.Interaction[Any], error: BaseException) -> None:
    where = f"user {interaction.user.id} in channel {interaction.channel_id}"
    if isinstance(error, UserError):
        log.info("refused (%s) for %s: %s", error.key, where, error.detail)
    elif isinstance(error, MISFIT):
        log.info("refused (%s) for %s: %.200s", type(error).__name__, where, error)
    else:
        log.error("unexpected error for %s", where, exc_info=error)


async def report_error(
    interaction: discord.Interaction[Any], error: BaseException, lang: str
) -> None:
    """Tell the user what went wrong, in the way that fits the interaction's state."""
    error = unwrap(error)
    _log(interaction, error)
    sentence = shorten(error_sentence(error, lang), MESSAGE_LIMIT)
    quiet = discord.AllowedMentions.none()
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(
                sentence, ephemeral=True, allowed_mentions=quiet
            )
        elif interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # The public "thinking…" placeholder: replace it rather than leave it spinning.
            await interaction.edit_original_response(
                content=sentence, embed=None, view=None, allowed_mentions=quiet
            )
        else:
            await interaction.followup.send(sentence, ephemeral=True, allowed_mentions=quiet)
    except discord.HTTPException:
        log.warning("could not tell user %s about %r", interaction.user.id, error, exc_info=True)
