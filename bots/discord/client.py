"""The discord.py client of majicbot: minimum intents, the command tree, the persistent buttons.

Every interaction is answered exactly once, hostile ones included:

- slash commands: :class:`MajicTree` checks access, then the raw options against the command
  (:mod:`bots.discord.options`), before discord.py reads them; whatever discord.py raises on
  what is left (an unknown or stale command name…) reaches ``on_error``, and anything else
  it raises on a payload it did not expect is caught around the call. All of these answer with an
  ephemeral sentence through :func:`bots.discord.errors.report_error`;
- autocomplete requests (no option of ours has any) get an empty list;
- buttons whose ``custom_id`` we did not make (and modal submits: we send no modals) get
  "This button no longer works." from :meth:`MajicClient.on_interaction`;
- an ``INTERACTION_CREATE`` so malformed that discord.py cannot build an ``Interaction`` from it
  (no Discord client can send one) is dropped with one WARNING line: there is nothing to answer.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from backend import keys
from backend.config import Config
from backend.errors import InvalidRequest, UserError
from backend.service import Service
from bots.discord.access import requester_of
from bots.discord.actions import handle_button
from bots.discord.commands import register_commands
from bots.discord.context import BotContext
from bots.discord.errors import report_error
from bots.discord.jobs import DiscordJobs
from bots.discord.options import check_options
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
        if interaction.type is discord.InteractionType.autocomplete:
            await interaction.response.autocomplete([])  # no option of ours autocompletes
            return False
        try:
            self._service.check_access(requester_of(interaction, self._config.discord))
            data: Any = interaction.data
            command, options = self._get_app_command_options(data)  # stale: CommandNotFound
            check_options(command, options)
        except UserError as error:
            await report_error(interaction, error, self._language(interaction))
            return False
        return True

    async def _call(self, interaction: discord.Interaction[Any]) -> None:
        # discord.py lets only AppCommandError reach on_error; a payload it did not expect can
        # raise anything (KeyError, TypeError…) from its own parsing, and the user still waits.
        try:
            await super()._call(interaction)
        except app_commands.AppCommandError:
            raise
        except Exception as error:
            log.warning("malformed command payload: %r", error)
            refusal = InvalidRequest(keys.DISCORD_STALE_COMMAND)
            await report_error(interaction, refusal, self._language(interaction))

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
            allowed_mentions=discord.AllowedMentions.none(),  # pings are opted into per message
            **options,
        )
        self.config = config
        self._default_lang = config.discord.default_language
        self.tree = MajicTree(self, config, service)
        jobs = DiscordJobs(self, config, service, clock=clock, tuning=tuning)
        self.majic = BotContext(config, service, jobs, handle_button)
        register_commands(self.tree, config)

    @property
    def jobs(self) -> DiscordJobs:
        return self.majic.jobs

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Answer what nothing else will: buttons we did not make, modal submits."""
        if interaction.type is discord.InteractionType.component:
            if _reaches_a_job_button(interaction):
                return  # handle_button answers it
        elif interaction.type is not discord.InteractionType.modal_submit:
            return  # commands and autocomplete: the tree answers them
        refusal = InvalidRequest(keys.BUTTON_EXPIRED)
        await report_error(interaction, refusal, language_of(interaction, self._default_lang))

    async def setup_hook(self) -> None:
        """Register the persistent buttons and sync the commands if they changed."""
        self.add_dynamic_items(JobButton)
        _guard_interaction_parser(self._connection)
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


def _reaches_a_job_button(interaction: discord.Interaction[Any]) -> bool:
    """Whether discord.py hands this click to a :class:`JobButton`: an id of ours, on a button
    that the clicked message really carries (discord.py drops the click otherwise)."""
    data: Any = interaction.data or {}
    custom_id, message = data.get("custom_id"), interaction.message
    if not isinstance(custom_id, str) or not CUSTOM_ID_PATTERN.fullmatch(custom_id):
        return False
    if message is None or data.get("component_type") != discord.ComponentType.button.value:
        return False
    view_class = discord.ui.LayoutView if message.flags.components_v2 else discord.ui.View
    view = view_class.from_message(message, timeout=None)
    return any(getattr(item, "custom_id", None) == custom_id for item in view.walk_children())


def _guard_interaction_parser(state: Any) -> None:
    """Drop an ``INTERACTION_CREATE`` discord.py cannot parse, with one WARNING line.

    discord.py parses gateway events inside its receive loop: an exception there (a payload
    without ``data``, a ``custom_id`` that is not a string…) would end the connection. No
    Discord client can send such a payload, and without an ``Interaction`` it cannot be
    answered. ``state.parsers`` is the dict the websocket dispatches from (discord.py 2.7).
    """
    parse = state.parsers["INTERACTION_CREATE"]

    def guarded(data: Any) -> None:
        try:
            parse(data)
        except Exception as error:
            log.warning("dropped a malformed interaction (%r): %.200r", error, data)

    state.parsers["INTERACTION_CREATE"] = guarded
