"""The one place where exceptions become the sentence a Discord user sees.

Both the command tree's ``on_error`` and the persistent buttons call :func:`report_error`; users
get a translated sentence (ephemeral where Discord allows it), never a traceback. Expected user
errors are logged in one line, anything else with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from backend.errors import EngineError, UserError
from bots.i18n import translate

log = logging.getLogger("majicbot.discord")


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
    if isinstance(error, app_commands.TransformerError | app_commands.CheckFailure):
        return translate("error.invalid", lang)
    return translate("error.generic", lang)


def _log(interaction: discord.Interaction[Any], error: BaseException) -> None:
    where = f"user {interaction.user.id} in channel {interaction.channel_id}"
    if isinstance(error, UserError):
        log.info("refused (%s) for %s: %s", error.key, where, error.detail)
    else:
        log.error("unexpected error for %s", where, exc_info=error)


async def report_error(
    interaction: discord.Interaction[Any], error: BaseException, lang: str
) -> None:
    """Tell the user what went wrong, in the way that fits the interaction's state."""
    error = unwrap(error)
    _log(interaction, error)
    sentence = error_sentence(error, lang)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(sentence, ephemeral=True)
        elif interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # The public "thinking…" placeholder: replace it rather than leave it spinning.
            await interaction.edit_original_response(content=sentence, embed=None, view=None)
        else:
            await interaction.followup.send(sentence, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell user %s about %r", interaction.user.id, error, exc_info=True)
