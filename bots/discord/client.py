"""The discord.py client of majicbot: minimum intents, the command tree, the persistent buttons."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from backend.config import Config
from backend.errors import AccessDenied, UserError
from backend.service import Service
from bots.discord.access import requester_of
from bots.discord.actions import handle_button
from bots.discord.commands import register_commands
from bots.discord.context import BotContext
from bots.discord.errors import report_error
from bots.discord.jobs import DiscordJobs
from bots.discord.sync import sync_if_changed
from bots.discord.translator import CommandTranslator, language_of
from bots.discord.views import CUSTOM_ID_PATTERN, JobButton
from bots.follow import Clock, FollowerTuning

log = logging.getLogger("majicbot.discord")

COMMAND_HASHES_FILE = "discord_commands.json"


def minimum_intents() -> discord.Intents:
    """Only ``guilds`` (channel and guild cache); interactions need no intent, none privileged."""
    return discord.Intents(guilds=True)


class MajicTree(app_commands.CommandTree["MajicClient"]):
    """Command tree with the access check and the one error handler of every command."""

    def __init__(self, client: MajicClient, config: Config, service: Service) -> None:
        super().__init__(client)
        self._config = config
        self._service = service

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        try:
            self._service.check_access(requester_of(interaction, self._config.discord))
        except UserError as error:
            await report_error(interaction, error, self._language(interaction))
            return False
        return True

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError, /
    ) -> None:
        await report_error(interaction, error, self._language(interaction))

    def _language(self, interaction: discord.Interaction[Any]) -> str:
        return language_of(interaction, self._config.discord.default_language)


class MajicClient(discord.Client):
    """A ``discord.Client`` wired to the backend; ``majic`` is what every handler reaches for."""

    def __init__(
        self,
        config: Config,
        service: Service,
        *,
        clock: Clock | None = None,
        tuning: FollowerTuning | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            intents=minimum_intents(),
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False),
            **options,
        )
        self.config = config
        self.tree = MajicTree(self, config, service)
        jobs = DiscordJobs(self, config, service, clock=clock, tuning=tuning)
        self.majic = BotContext(config, service, jobs, handle_button)
        register_commands(self.tree, config)

    @property
    def jobs(self) -> DiscordJobs:
        return self.majic.jobs

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Answer a click whose custom id is not on its message (a modified client forged it).

        discord.py drops such a click silently (the user would see "interaction failed");
        nothing is done, but the user gets the sentence every refused button gets.
        """
        if interaction.type is not discord.InteractionType.component:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        match = CUSTOM_ID_PATTERN.fullmatch(custom_id)
        if match is None or custom_id in _custom_ids(interaction.message):
            return
        refusal = AccessDenied("error.wrong_message", job_id=match["job_id"])
        lang = language_of(interaction, self.config.discord.default_language)
        await report_error(interaction, refusal, lang)

    async def setup_hook(self) -> None:
        """Register the persistent buttons and sync the commands if they changed."""
        self.add_dynamic_items(JobButton)
        await self.tree.set_translator(CommandTranslator())
        assert self.application_id is not None  # set by login()
        state_path = self.config.storage.data_dir / COMMAND_HASHES_FILE
        try:
            await sync_if_changed(
                self.tree, self.application_id, self.config.discord.test_guilds, state_path
            )
        except discord.HTTPException:
            # Keep serving with the commands Discord already has; the next start retries.
            log.exception("syncing application commands failed")


def _custom_ids(message: discord.Message | None) -> set[str]:
    """The custom ids of the buttons on ``message`` (top-level rows, as ours are)."""
    found: set[str] = set()
    for row in message.components if message is not None else ():
        for child in getattr(row, "children", ()):
            if isinstance(custom_id := getattr(child, "custom_id", None), str):
                found.add(custom_id)
    return found
