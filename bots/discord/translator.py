"""Localized command names and descriptions (English and Simplified Chinese) for Discord.

Command definitions use :func:`text` (a ``locale_str`` carrying its ``bots.i18n`` key); the
:class:`CommandTranslator` fills in the Chinese strings when the tree is synced.
"""

from __future__ import annotations

import discord
from discord import app_commands

from bots.i18n import pick_language, translate

# Discord locales we translate to, and the bots.i18n language each maps to.
_LOCALES: dict[discord.Locale, str] = {discord.Locale.chinese: "zh"}


def text(key: str) -> app_commands.locale_str:
    """The English sentence of ``key`` as a ``locale_str`` the translator can localize."""
    return app_commands.locale_str(translate(key, "en"), key=key)


def language_of(interaction: discord.Interaction, default: str) -> str:
    """The bots.i18n language ("en"/"zh") for the user's Discord client locale."""
    return pick_language(str(interaction.locale), default)


class CommandTranslator(app_commands.Translator):
    """Translates command/option names and descriptions marked with :func:`text`."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        key = string.extras.get("key")
        lang = _LOCALES.get(locale)
        if not isinstance(key, str) or lang is None:
            return None
        return translate(key, lang)
