"""What simcord 3.x can inject, pinned down so the follower's tests can rely on it.

``env.inject_error(method, path_pattern, status=, code=, message=, times=)`` fails matching REST
calls of both discord.py transports (the HTTP client: channel sends; the webhook adapter:
``edit_original_response``, follow-ups) as genuine ``discord.HTTPException`` subclasses with the
Discord code. What it does *not* model (use ``tests/fakes/discord_server.py`` for these):
a 429 is raised at once as ``HTTPException`` (real discord.py waits ``retry_after`` and
retries); no delays; an interaction token past its 15 minutes answers 404 10015, where Discord
answers 401 50027.
"""

from __future__ import annotations

from typing import Any

import discord
import simcord
from discord import app_commands


class Probe(discord.Client):
    """One command, ``/probe``, that defers, then tries an edit and a channel send."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.errors: list[discord.HTTPException] = []

        @self.tree.command(name="probe", description="Try an edit and a channel send.")
        async def probe(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            for attempt in (
                interaction.edit_original_response(content="done"),
                interaction.channel.send("fallback"),  # type: ignore[union-attr]
            ):
                try:
                    await attempt
                except discord.HTTPException as exc:
                    self.errors.append(exc)

    async def setup_hook(self) -> None:
        await self.tree.sync()


async def probe_with(faults: list[dict[str, Any]]) -> list[tuple[type, int, int]]:
    """Run ``/probe`` with ``faults`` injected; (exception type, status, code) of each error."""
    bot = Probe()
    async with simcord.run(bot) as env:
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        for fault in faults:
            env.inject_error(**fault)
        await alice.slash(channel, "probe")
    return [(type(e), e.status, e.code) for e in bot.errors]


async def test_simcord_injects_expired_token_deleted_original_and_forbidden() -> None:
    edit = "/webhooks/*/messages/@original"
    expired = {"status": 401, "code": 50027, "message": "Invalid Webhook Token"}
    assert await probe_with([{"method": "PATCH", "path": edit, **expired}]) == [
        (discord.HTTPException, 401, 50027)
    ]
    gone = {"status": 404, "code": 10015, "message": "Unknown Webhook"}
    forbidden = {"status": 403, "code": 50013, "message": "Missing Permissions"}
    faults = [
        {"method": "PATCH", "path": edit, **gone},
        {"method": "POST", "path": "/channels/*/messages", **forbidden},
    ]
    assert await probe_with(faults) == [
        (discord.NotFound, 404, 10015),
        (discord.Forbidden, 403, 50013),
    ]


async def test_simcord_raises_a_429_instead_of_waiting_it_out() -> None:
    fault = {"method": "PATCH", "path": "/webhooks/*", "status": 429, "code": 0}
    assert await probe_with([fault]) == [(discord.HTTPException, 429, 0)]
