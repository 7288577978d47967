"""What every Discord handler needs, reachable from any interaction via ``interaction.client``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from backend.config import Config
from backend.domain import Requester
from bots.discord.access import requester_of
from bots.discord.translator import language_of

if TYPE_CHECKING:
    from backend.service import Service
    from bots.discord.jobs import DiscordJobs

# (interaction, action, job id) -> None; implemented in bots.discord.actions.
ButtonHandler = Callable[[discord.Interaction[Any], str, str], Awaitable[None]]


@dataclass(frozen=True)
class BotContext:
    """The adapter's wiring, built once by :class:`bots.discord.client.MajicClient`."""

    config: Config
    service: Service
    jobs: DiscordJobs
    on_button: ButtonHandler

    @property
    def default_language(self) -> str:
        return self.config.discord.default_language

    def requester(self, interaction: discord.Interaction[Any]) -> Requester:
        """Who is behind ``interaction``, as the backend sees them."""
        return requester_of(interaction, self.config.discord)

    def language(self, interaction: discord.Interaction[Any]) -> str:
        """The user's language ("en"/"zh") from their Discord client locale."""
        return language_of(interaction, self.default_language)


def context_of(interaction: discord.Interaction[Any]) -> BotContext:
    """The :class:`BotContext` of the client that received ``interaction``."""
    context = getattr(interaction.client, "majic", None)
    if not isinstance(context, BotContext):
        raise TypeError("interaction.client is not a MajicClient")  # programming error
    return context
