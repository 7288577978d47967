"""Content controls on Discord through simcord: the real adapter and Service, the ``StepEngine``
and the tiny safety classifiers (issue 16)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import discord
import simcord

from backend.config import Config
from backend.errors import InvalidRequest, PromptRefused
from backend.service import Service
from bots.discord.errors import unwrap
from bots.i18n import translate
from tests.backend.engines import StepEngine
from tests.content.fixtures import with_content
from tests.discord.harness import World, idle, response_of, simulated_discord

REFUSED = translate("error.prompt_refused", "en")
BLOCKED = [
    "a nude woman on the beach",
    "a n.u.d.e woman on the beach",
    "a n u d e woman on the beach",
    "a ｎｕｄｅ woman on the beach",
    "a nudе woman on the beach",  # Cyrillic е
    "a nud3 woman on the beach --seed 4",
]


def _config(tiny_config: Config, classifier: Path) -> Config:
    return with_content(tiny_config, image_check=True, classifier_path=str(classifier))


def _jobs(config: Config) -> int:
    with sqlite3.connect(config.db_path) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def _job_id(message: simcord.ResponseMessage | Any) -> str:
    (embed,) = message.embeds
    return next(str(f.value) for f in embed.fields if f.name == "Job")


async def _imagine(world: World, channel: simcord.ChannelHandle, **options: Any) -> Any:
    result = await world.alice.slash(channel, "imagine", **options)
    await idle(world.client)
    return response_of(result)


def _mark_age_restricted(world: World, channel: simcord.ChannelHandle) -> None:
    """What a CHANNEL_UPDATE with ``nsfw: true`` does to the client's cache."""
    cached = world.client.get_channel(channel.id)
    assert isinstance(cached, discord.TextChannel)
    cached.nsfw = True


async def test_a_blocked_prompt_and_its_disguises_are_refused_ephemerally(
    tiny_config: Config, nsfw_classifier_dir: Path
) -> None:
    config = _config(tiny_config, nsfw_classifier_dir)
    async with (
        Service.open(config, lambda: [StepEngine()]) as service,
        simulated_discord(config, service) as world,
    ):
        for prompt in BLOCKED:
            result = await world.alice.slash(world.channel, "imagine", prompt=prompt)
            assert (result.ephemeral, response_of(result).content) == (True, REFUSED), prompt
        assert world.channel.history() == []
        assert [type(unwrap(e)) for e in world.env.errors] == [PromptRefused] * len(BLOCKED)
    assert _jobs(config) == 0


async def test_flagged_images_follow_the_channel_policy_and_nsfw_flag(
    tiny_config: Config, nsfw_classifier_dir: Path
) -> None:
    config = _config(tiny_config, nsfw_classifier_dir)
    async with (
        Service.open(config, lambda: [StepEngine()]) as service,
        simulated_discord(config, service) as world,
    ):
        # An ordinary channel blocks by default: one sentence instead of the image.
        withheld = await _imagine(world, world.channel, prompt="a red fox")
        job_id = withheld.content.split("#", 1)[1].split(" ", 1)[0].rstrip(":")
        assert withheld.content == translate("content.withheld", "en", job_id=job_id)
        assert (await service.job(job_id)).result_path is not None  # kept for admins
        assert (withheld.attachments, withheld.embeds) == ([], [])

        # allow needs an age-restricted channel; spoiler works anywhere.
        refused = await world.admin.slash(world.channel, "policy", setting="allow")
        assert (refused.ephemeral, response_of(refused).content) == (
            True,
            translate("error.policy_needs_nsfw", "en"),
        )
        assert [type(unwrap(e)) for e in world.env.errors] == [InvalidRequest]
        done = await world.admin.slash(world.channel, "policy", setting="spoiler")
        assert done.ephemeral
        spoiled = await _imagine(world, world.channel, prompt="a red fox")
        job_id = _job_id(spoiled)
        assert [a.filename for a in spoiled.attachments] == [f"SPOILER_{job_id}.png"]
        assert spoiled.embeds[0].image.url is None  # an embed cannot blur its image

        # An age-restricted channel allows by default (content.nsfw_channel_policy).
        after_dark = world.env.guild.create_text_channel("after-dark")
        _mark_age_restricted(world, after_dark)
        shown = await _imagine(world, after_dark, prompt="a red fox")
        job_id = _job_id(shown)
        assert [a.filename for a in shown.attachments] == [f"{job_id}.png"]
        assert shown.embeds[0].image.url == f"attachment://{job_id}.png"
        # ... unless the user asks for a spoiler, or an admin blocks it there.
        hidden = await _imagine(world, after_dark, prompt="a red fox", spoiler=True)
        assert [a.filename for a in hidden.attachments] == [f"SPOILER_{_job_id(hidden)}.png"]
        await world.admin.slash(after_dark, "policy", setting="block")
        blocked = await _imagine(world, after_dark, prompt="a red fox --seed 3")
        assert blocked.attachments == [] and blocked.content.startswith("Your image #")
