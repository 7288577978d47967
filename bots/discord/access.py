"""Who is asking and may they use the bot here — the rules themselves live in the backend."""

from __future__ import annotations

from typing import Any

import discord

from backend.config import DiscordConfig
from backend.domain import Platform, Requester


def requester_of(interaction: discord.Interaction[Any], config: DiscordConfig) -> Requester:
    """The backend's view of the user behind ``interaction`` (language = raw Discord locale)."""
    user = interaction.user
    return Requester(
        platform=Platform.DISCORD,
        user_id=str(user.id),
        display_name=user.display_name,
        chat_id=str(interaction.channel_id) if interaction.channel_id else None,
        guild_id=str(interaction.guild_id) if interaction.guild_id else None,
        language=str(interaction.locale),
        guild_admin=has_admin_role_or_permission(interaction, config),
        nsfw_channel=is_nsfw_channel(interaction),
    )


def is_nsfw_channel(interaction: discord.Interaction[Any]) -> bool:
    """The channel is marked age-restricted (content controls may allow flagged images there)."""
    channel = interaction.channel
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def has_admin_role_or_permission(
    interaction: discord.Interaction[Any], config: DiscordConfig
) -> bool:
    """Guild admin rights (``Requester.guild_admin``): a configured admin role, or Manage
    Server, in this interaction's guild. They let the user manage this guild's jobs only;
    configured admin user ids are the backend's business (``Service.is_admin``).
    """
    user = interaction.user
    if not isinstance(user, discord.Member):
        return False
    if any(str(role.id) in config.admin_roles for role in user.roles):
        return True
    return interaction.permissions.manage_guild
