"""/settings, /ban and /unban through simcord, backed by the real Service and the tiny FLUX."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import discord
import pytest
import simcord

from backend.config import Config
from backend.domain import Options, Platform, Requester
from backend.errors import AccessDenied
from bots.discord.client import MajicClient
from bots.discord.errors import unwrap
from tests.discord.harness import EngineGate, idle, open_service, response_of, simulated_discord
from tests.discord.test_simcord import fields

HINT = "Change: /settings with steps, aspect or guidance · clear: /settings reset: True"
SERVER_DEFAULTS = (
    "Your defaults for /imagine:\n"
    "Steps: 2 (server default)\n"
    "Size: 64×64 (server default)\n"
    "Guidance: 3.5 (server default)\n" + HINT
)


async def test_settings_are_set_shown_used_and_reset(tiny_config: Config) -> None:
    async with (
        open_service(tiny_config, EngineGate(tiny_config)) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        shown = await world.alice.slash(world.channel, "settings")
        saved = await world.alice.slash(
            world.channel, "settings", steps=3, aspect="16:9", guidance=4.5
        )
        with pytest.raises(simcord.OptionError):
            await world.alice.slash(world.channel, "settings", steps=51)
        with pytest.raises(simcord.OptionError):
            await world.alice.slash(world.channel, "settings", aspect="5:4")
        result = await world.alice.slash(world.channel, "imagine", prompt="a fox --seed 7")
        await idle(world.client)
        reset = await world.alice.slash(world.channel, "settings", reset=True)
        bob = service.accounts.settings(Requester(Platform.DISCORD, str(world.bob.id)))

    assert (shown.ephemeral, response_of(shown).content) == (True, SERVER_DEFAULTS)
    assert (saved.ephemeral, response_of(saved).content) == (
        True,
        "Saved. Options you give to /imagine still win over these.\n"
        "Your defaults for /imagine:\n"
        "Steps: 3 (yours)\n"
        "Size: 16:9, 80×48 (yours)\n"
        "Guidance: 4.5 (yours)\n" + HINT,
    )
    image = fields(response_of(result))
    assert (image["Seed"], image["Steps"], image["Size"], image["Guidance"]) == (
        "7",
        "3",
        "80×48",
        "4.5",
    )
    assert (reset.ephemeral, response_of(reset).content) == (
        True,
        "Your defaults are cleared; /imagine uses the server's again.\n" + SERVER_DEFAULTS,
    )
    assert bob.defaults == Options()


CHIEF = "4242"  # a configured Discord admin id


async def test_ban_is_for_admins_and_refuses_the_banned_users_next_imagine(
    tiny_config: Config,
) -> None:
    config = dataclasses.replace(
        tiny_config, discord=dataclasses.replace(tiny_config.discord, admins=(CHIEF,))
    )
    chief = Requester(Platform.DISCORD, CHIEF)  # configured admin (not a simcord member)
    async with (
        open_service(config, EngineGate(config)) as service,
        simulated_discord(config, service) as world,
    ):
        with pytest.raises(simcord.SetupError, match="default-member-permissions"):
            await world.bob.slash(world.channel, "ban", user=world.alice)  # not offered to bob
        guild_admin = await world.admin.slash(world.channel, "ban", user=world.alice)
        await service.accounts.set_banned(chief, str(world.alice.id), banned=True)
        denied = await world.alice.slash(world.channel, "imagine", prompt="a cat")
        history = await world.alice.slash(world.channel, "history")
        await service.accounts.set_banned(chief, str(world.alice.id), banned=False)
        allowed = await world.alice.slash(world.channel, "imagine", prompt="a cat --seed 1")
        await idle(world.client)
        alice_jobs = await service.history(Requester(Platform.DISCORD, str(world.alice.id)))
        errors = [type(unwrap(e)) for e in world.env.errors]  # reading them acknowledges them

    # Manage Server makes a guild admin (Discord offers /ban), not a bot admin (the bot refuses).
    assert (guild_admin.ephemeral, response_of(guild_admin).content) == (
        True,
        "Only admins can do that.",
    )
    assert response_of(denied).content == "Sorry, you are not allowed to use this bot."
    assert response_of(history).content == "Sorry, you are not allowed to use this bot."
    assert fields(response_of(allowed))["Seed"] == "1"
    assert [job.params.prompt for job in alice_jobs] == ["a cat"]
    assert errors == [AccessDenied]  # the guild admin's /ban; the tree check answers the rest


def test_settings_ban_and_unban_are_registered_with_bounds_and_chinese_names() -> None:
    async def payload() -> list[dict[str, Any]]:
        from bots.discord.sync import command_payload
        from bots.discord.translator import CommandTranslator

        client = MajicClient(Config(), service=None)  # type: ignore[arg-type]
        await client.tree.set_translator(CommandTranslator())
        return await command_payload(client.tree, None)

    commands = {c["name"]: c for c in asyncio.run(payload())}
    settings = commands["settings"]
    options = {o["name"]: o for o in settings["options"]}
    assert settings["name_localizations"] == {"zh-CN": "设置"}
    assert [(o["name"], o["type"], o["required"]) for o in settings["options"]] == [
        ("steps", 4, False),
        ("aspect", 3, False),
        ("guidance", 10, False),
        ("reset", 5, False),
    ]
    assert (options["steps"]["min_value"], options["steps"]["max_value"]) == (1, 50)
    assert [c["value"] for c in options["aspect"]["choices"]] == list(Config().limits.aspect_ratios)
    assert options["reset"]["name_localizations"] == {"zh-CN": "重置"}
    for name, chinese in (("ban", "封禁"), ("unban", "解封")):
        assert commands[name]["name_localizations"] == {"zh-CN": chinese}
        (user,) = commands[name]["options"]
        assert (user["name"], user["type"], user["required"]) == ("user", 6, True)


def test_bounds_are_the_configured_limits_and_admin_commands_are_hidden_from_members() -> None:
    async def payload() -> list[dict[str, Any]]:
        from bots.discord.sync import command_payload

        client = MajicClient(Config(), service=None)  # type: ignore[arg-type]
        return await command_payload(client.tree, None)

    commands = {c["name"]: c for c in asyncio.run(payload())}
    prompt = commands["imagine"]["options"][0]
    assert (prompt["name"], prompt["max_length"]) == ("prompt", Config().limits.max_prompt_chars)
    manage_guild = discord.Permissions(manage_guild=True).value
    hidden = {name for name, c in commands.items() if c.get("default_member_permissions")}
    assert hidden == {"status", "ban", "unban", "policy"}
    assert {commands[name]["default_member_permissions"] for name in hidden} == {manage_guild}
