"""``/policy`` on Discord (issue 16): what this channel does with images the safety check flags.

Hidden from members without Manage Server (``default_member_permissions``); the backend still
checks every call (global admins, or guild admins of this guild). ``allow`` is refused in a
channel that is not age-restricted. Ephemeral.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice

from backend.domain import ChatPolicy
from bots.discord.context import context_of
from bots.discord.translator import text
from bots.render import render_policy

DEFAULT = "default"
CHOICES = [Choice(name=value, value=value) for value in (*ChatPolicy, DEFAULT)]


async def policy(interaction: discord.Interaction[Any], setting: str | None) -> None:
    """Show, set or reset this channel's policy for flagged images; ephemeral."""
    context = context_of(interaction)
    requester, lang = context.requester(interaction), context.language(interaction)
    service = context.service
    service.check_access(requester)
    if setting is None:
        view = service.content.policy_of(requester)
    else:
        wanted = None if setting == DEFAULT else ChatPolicy(setting)
        view = await service.content.set_policy(requester, wanted)
    sentence = render_policy(view.stored, view.effective, lang, changed=setting is not None)
    await interaction.response.send_message(sentence, ephemeral=True)


def policy_command() -> app_commands.Command[Any, Any, None]:
    """The ``/policy`` command, for the tree."""

    @app_commands.command(name=text("discord.name.policy"), description=text("cmd.policy"))
    @app_commands.rename(setting=text("discord.opt.setting"))
    @app_commands.describe(setting=text("discord.optdesc.setting"))
    @app_commands.choices(setting=CHOICES)
    @app_commands.default_permissions(manage_guild=True)
    async def policy_cmd(interaction: discord.Interaction[Any], setting: str | None = None) -> None:
        await policy(interaction, setting)

    return policy_cmd
