"""The Discord adapter driven through simcord, backed by the real Service and the tiny FLUX."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import simcord

from backend.config import Config
from backend.domain import Cancelled, JobStatus, Platform, Requester, Succeeded
from backend.errors import AccessDenied, InvalidRequest, NothingToCancel
from bots.discord.client import COMMAND_HASHES_FILE, MajicClient
from bots.discord.errors import unwrap
from bots.parsing import ParseError
from tests.discord.harness import (
    EngineGate,
    World,
    fast_client,
    idle,
    open_service,
    response_of,
    simulated_discord,
    until_terminal,
)

RESULT_BUTTONS = ["🎲 Reroll", "Variations", "Delete"]


def buttons(message: simcord.ResponseMessage | Any) -> list[tuple[str, str]]:
    """(label, custom_id) of every button of a message, in order."""
    components: list[Any] = message.components
    if components and not isinstance(components[0], dict):  # a discord.Message
        components = [row.to_dict() for row in components]
    return [(b["label"], b["custom_id"]) for row in components for b in row["components"]]


def job_id_of(message: simcord.ResponseMessage) -> str:
    return buttons(message)[0][1].rsplit(":", 1)[1]


def fields(message: simcord.ResponseMessage) -> dict[str, str]:
    (embed,) = message.embeds
    return {str(field.name): str(field.value) for field in embed.fields}


def step_lines(contents: list[str | None]) -> list[list[str]]:
    """The "Step x/N · p %" part of each progress edit (the ETA after it varies)."""
    return [c.split(" · ")[:2] for c in contents if c and c.startswith("Step")]


async def test_imagine_answers_with_warmup_then_steps_then_the_image_with_buttons(
    tiny_config: Config,
) -> None:
    engines = EngineGate(tiny_config, opened=False)
    async with (
        open_service(tiny_config, engines) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        result = await world.alice.slash(world.channel, "imagine", prompt="a red fox --seed 7")
        assert response_of(result).content == "Warming up the model: 0 %"
        engines.open()
        await idle(world.client)

        message = response_of(result)
        job_id = job_id_of(message)
        requests = [(r.method, r.path.split("/")[1]) for r in world.env.http_requests]
        callback = requests.index(("POST", "interactions"))
        assert callback < requests.index(("PATCH", "webhooks"))
        # Stored first, then answered publicly with the job's state and its Cancel button.
        first = world.env.http_requests[callback].json
        assert isinstance(first, dict)
        assert first["type"] == 4
        assert first["data"]["content"] == "Warming up the model: 0 %"
        assert first["data"]["components"][0]["components"][0]["custom_id"] == f"mj:cancel:{job_id}"
        assert not first["data"].get("flags")  # public
        contents: list[str | None] = ["Warming up the model: 0 %"]
        contents += [patch.get("content") for patch in world.patches_of_original()]
        # Edits are budgeted (the latest state wins), so intermediate states may be skipped.
        assert set(map(tuple, step_lines(contents))) <= {
            ("Step 1/2", "50 %"),
            ("Step 2/2", "finishing…"),
        }
        assert contents[-1] is None  # the final edit: embed and image, no text
        assert all(a != b for a, b in itertools.pairwise(contents))
        assert buttons(message) == [
            (label, f"mj:{action}:{job_id}")
            for label, action in zip(RESULT_BUTTONS, ["reroll", "vary", "delete"], strict=True)
        ]
        seconds = fields(message)["Seconds"]
        assert fields(message) == {
            "Seed": "7",
            "Steps": "2",
            "Size": "64×64",
            "Guidance": "3.5",
            "Seconds": seconds,
            "Job": job_id,
            "Asked by": world.alice.mention,
        }
        assert float(seconds) > 0
        assert message.embeds[0].description == "a red fox"
        assert message.embeds[0].image.url == f"attachment://{job_id}.png"
        assert [a.filename for a in message.attachments] == [f"{job_id}.png"]
        assert await service.deliveries.undelivered(Platform.DISCORD) == []


async def imagine_done(world: World, prompt: str) -> simcord.ResponseMessage:
    """Alice's /imagine, followed to its delivered image."""
    result = await world.alice.slash(world.channel, "imagine", prompt=prompt)
    await idle(world.client)
    return response_of(result)


async def test_reroll_gives_a_new_seed_and_variations_seed_plus_one(tiny_config: Config) -> None:
    async with (
        open_service(tiny_config, EngineGate(tiny_config)) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        first = await imagine_done(world, "a lighthouse --seed 41")
        job_id = job_id_of(first)

        vary = await world.bob.click(first, custom_id=f"mj:vary:{job_id}")
        await idle(world.client)
        reroll = await world.alice.click(first, custom_id=f"mj:reroll:{job_id}")
        await idle(world.client)

        varied, rerolled = response_of(vary), response_of(reroll)
        assert varied.id != first.id and rerolled.id != first.id
        assert fields(varied)["Seed"] == "42"
        assert fields(varied)["Asked by"] == world.bob.mention
        assert fields(rerolled)["Seed"] != "41"
        assert varied.embeds[0].description == rerolled.embeds[0].description == "a lighthouse"
        for message in (varied, rerolled):
            assert [label for label, _ in buttons(message)] == RESULT_BUTTONS
            child = await service.job(job_id_of(message))
            assert (child.status, child.parent_job_id) == (JobStatus.SUCCEEDED, job_id)


async def test_delete_is_for_the_owner_and_admins_only(tiny_config: Config) -> None:
    async with (
        open_service(tiny_config, EngineGate(tiny_config)) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        mine = await imagine_done(world, "a teapot")
        second = await imagine_done(world, "a kettle")

        refused = await world.bob.click(mine, custom_id=f"mj:delete:{job_id_of(mine)}")
        assert (refused.ephemeral, response_of(refused).content) == (
            True,
            f"Job #{job_id_of(mine)} is not yours.",
        )
        assert {mine.id, second.id} <= {m.id for m in world.channel.history()}

        deleted = await world.alice.click(mine, custom_id=f"mj:delete:{job_id_of(mine)}")
        by_admin = await world.admin.click(second, custom_id=f"mj:delete:{job_id_of(second)}")

        for result in (deleted, by_admin):
            assert (result.ephemeral, response_of(result).content) == (True, "Deleted.")
        remaining = {m.id for m in world.channel.history()}
        assert not remaining & {mine.id, second.id}
        assert [type(e) for e in world.env.errors] == []


async def test_cancel_button_while_warming_up(tiny_config: Config) -> None:
    engines = EngineGate(tiny_config, opened=False)
    async with (
        open_service(tiny_config, engines) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        result = await world.alice.slash(world.channel, "imagine", prompt="a slow snail")
        waiting = response_of(result)
        job_id = job_id_of(waiting)
        assert buttons(waiting) == [("Cancel", f"mj:cancel:{job_id}")]

        refused = await world.bob.click(waiting, custom_id=f"mj:cancel:{job_id}")
        assert response_of(refused).content == f"Job #{job_id} is not yours."
        cancelling = await world.alice.click(waiting, custom_id=f"mj:cancel:{job_id}")
        await idle(world.client)

        assert (cancelling.ephemeral, response_of(cancelling).content) == (True, "Cancelling…")
        final = response_of(result)
        assert (final.content, final.components, final.embeds) == ("Cancelled.", [], [])
        assert (await service.job(job_id)).status is JobStatus.CANCELLED
        assert await service.deliveries.undelivered(Platform.DISCORD) == []


async def test_cancel_command_cancels_the_latest_queued_job(tiny_config: Config) -> None:
    engines = EngineGate(tiny_config, opened=False)
    async with (
        open_service(tiny_config, engines) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        nothing = await world.alice.slash(world.channel, "cancel")
        assert response_of(nothing).content == "You have no queued or running job."
        assert [type(unwrap(e)) for e in world.env.errors] == [NothingToCancel]
        result = await world.alice.slash(world.channel, "imagine", prompt="a snail")
        job_id = job_id_of(response_of(result))

        done = await world.alice.slash(world.channel, "cancel")
        await idle(world.client)

        assert (done.ephemeral, response_of(done).content) == (True, f"Cancelling #{job_id}.")
        assert response_of(result).content == "Cancelled."
        assert isinstance(await until_terminal(service, job_id), Cancelled)


async def test_status_is_for_admins_only(tiny_config: Config) -> None:
    engines = EngineGate(tiny_config, opened=False)
    async with (
        open_service(tiny_config, engines) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        with pytest.raises(simcord.SetupError, match="default-member-permissions"):
            await world.alice.slash(world.channel, "status")  # Discord does not offer it
        guild_admin = await world.admin.slash(world.channel, "status")  # Manage Server only

        assert (guild_admin.ephemeral, response_of(guild_admin).content) == (
            True,
            "Sorry, /status is only for the bot's admins.",
        )
        assert [type(unwrap(e)) for e in world.env.errors] == [AccessDenied]
        # A configured admin's /status (rendered) is covered by the Telegram adapter's tests:
        # simcord's user ids are allocated at run time, after the config is frozen.


async def test_out_of_range_options_are_refused_by_discord_or_explained(
    tiny_config: Config,
) -> None:
    async with (
        open_service(tiny_config, EngineGate(tiny_config)) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        with pytest.raises(simcord.OptionError):
            await world.alice.slash(world.channel, "imagine", prompt="x", steps=51)
        with pytest.raises(simcord.OptionError):
            await world.alice.slash(world.channel, "imagine", prompt="x", aspect="5:4")
        with pytest.raises(simcord.OptionError):
            await world.alice.slash(world.channel, "imagine", prompt="x", guidance=0.5)
        with pytest.raises(simcord.OptionError):
            await world.alice.slash(world.channel, "history", count=26)

        flags = await world.alice.slash(world.channel, "imagine", prompt="x --steps 999")
        twice = await world.alice.slash(world.channel, "imagine", prompt="x --seed 1", seed=2)

        assert response_of(flags).content == ("Steps must be between 1 and 50 (you asked for 999).")
        assert response_of(twice).content == "The option --seed is given twice; keep one."
        errors = [type(unwrap(e)) for e in world.env.errors]
        assert errors == [InvalidRequest, ParseError]
        alice = Requester(Platform.DISCORD, str(world.alice.id))
        assert await service.history(alice, limit=5) == []  # nothing was submitted


async def test_history_lists_own_jobs_and_sends_an_image_again(tiny_config: Config) -> None:
    async with (
        open_service(tiny_config, EngineGate(tiny_config)) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        image = await imagine_done(world, "a blue whale --seed 3")
        job_id = job_id_of(image)

        listed = await world.alice.slash(world.channel, "history")
        others = await world.bob.slash(world.channel, "history")
        again = await world.alice.click(response_of(listed), custom_id=f"mj:get:{job_id}")

        lines = response_of(listed).content.splitlines()
        assert listed.ephemeral and lines[0] == "Your last job:"
        assert lines[1].startswith(f"#{job_id} · done · seed 3 · ")
        assert lines[1].endswith(" · a blue whale")
        assert buttons(response_of(listed)) == [(f"#{job_id}", f"mj:get:{job_id}")]
        assert response_of(others).content.startswith("No images yet.")
        copy = response_of(again)  # the follow-up replaced the ephemeral "thinking…"
        assert again.ephemeral and again.followups == []
        assert [a.filename for a in copy.attachments] == [f"{job_id}.png"]
        assert fields(copy)["Seed"] == "3"
        assert (await service.job(job_id)).status is JobStatus.SUCCEEDED


async def test_expired_token_posts_the_image_in_the_channel(tiny_config: Config) -> None:
    engines = EngineGate(tiny_config, opened=False)
    async with (
        open_service(tiny_config, engines) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        result = await world.alice.slash(world.channel, "imagine", prompt="a comet")
        job_id = job_id_of(response_of(result))
        await world.env.advance_time(16 * 60)  # the interaction token lives 15 minutes
        engines.open()
        await idle(world.client)

        posted = world.channel.last_message
        assert posted is not None and posted.id != response_of(result).id
        assert posted.content == f"{world.alice.mention} your image is ready."
        assert [a.filename for a in posted.attachments] == [f"{job_id}.png"]
        assert [b[1] for b in buttons(posted)] == [
            f"mj:{action}:{job_id}" for action in ("reroll", "vary", "delete")
        ]
        assert response_of(result).content.startswith("Warming up the model")
        assert await service.deliveries.undelivered(Platform.DISCORD) == []


async def test_restart_between_completion_and_delivery(tiny_config: Config) -> None:
    """The job finishes while the bot is down; the next start delivers it, its buttons work."""
    engines = EngineGate(tiny_config, opened=False)
    async with open_service(tiny_config, engines) as service_before:
        env = simcord.Env(fast_client(tiny_config, service_before))
        await env.start()
        try:
            channel = env.create_guild().create_text_channel("art")
            alice = env.guild.add_member(env.create_user("alice"))
            assert isinstance(env.bot, MajicClient)
            async with env.bot.jobs.followers.running():
                result = await alice.slash(channel, "imagine", prompt="a phoenix --seed 5")
            job_id = job_id_of(response_of(result))
            engines.open()
            assert isinstance(await until_terminal(service_before, job_id), Succeeded)
        except BaseException:
            await env.shutdown()
            raise
    assert response_of(result).content.startswith("Warming up the model")

    async with open_service(tiny_config, EngineGate(tiny_config)) as service:
        assert [job.id for job in await service.deliveries.undelivered(Platform.DISCORD)] == [
            job_id
        ]
        client = fast_client(tiny_config, service)
        try:
            await env.restart_bot(client)
            async with client.jobs.followers.running():
                await idle(client)
                delivered = response_of(result)
                reroll = await alice.click(delivered, custom_id=f"mj:vary:{job_id}")
                await idle(client)
        finally:
            await env.shutdown()
        assert env.errors == []

    assert fields(delivered)["Seed"] == "5" and fields(delivered)["Job"] == job_id
    assert [a.filename for a in delivered.attachments] == [f"{job_id}.png"]
    assert fields(response_of(reroll))["Seed"] == "6"
    syncs = [r for r in env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert len(syncs) == 1  # the restart found the same command hash and did not sync again
    assert (tiny_config.storage.data_dir / COMMAND_HASHES_FILE).is_file()


def test_chinese_command_names_and_descriptions_are_registered() -> None:
    """Localizations reach the sync payload (the translator runs on every sync)."""
    import asyncio

    from bots.discord.sync import command_payload
    from bots.discord.translator import CommandTranslator

    async def payload() -> list[dict[str, Any]]:
        client = MajicClient(Config(), service=None)  # type: ignore[arg-type]
        await client.tree.set_translator(CommandTranslator())
        return await command_payload(client.tree, None)

    commands = {c["name"]: c for c in asyncio.run(payload())}
    assert sorted(commands) == [
        "ban",
        "cancel",
        "history",
        "imagine",
        "policy",
        "settings",
        "status",
        "unban",
    ]
    assert str(commands["policy"]["default_member_permissions"]) == "32"  # Manage Server
    imagine = commands["imagine"]
    assert imagine["name_localizations"] == {"zh-CN": "画图"}
    assert imagine["description_localizations"] == {"zh-CN": "根据文字生成图片"}
    options = {o["name"]: o for o in imagine["options"]}
    assert options["steps"]["name_localizations"] == {"zh-CN": "步数"}
    assert (options["steps"]["min_value"], options["steps"]["max_value"]) == (1, 50)
    assert [c["value"] for c in options["aspect"]["choices"]] == list(Config().limits.aspect_ratios)
    assert options["prompt"]["max_length"] <= 6000
