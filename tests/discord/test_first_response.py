"""Real transport: a first response Discord refuses as too late, and command scopes no longer used.

A 429 whose ``retry_after`` outlasts the interaction window makes discord.py's retry arrive too
late (404 10062): the job stands, and the user is told in the channel, mentioned. With
``test_guilds`` set, the global scope is emptied so that no guild shows a command twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from backend.config import Config, Secret
from backend.service import Service
from bots.discord.app import run_discord
from tests.backend.engines import StepEngine
from tests.fakes.discord_server import (
    ALICE_ID,
    APP_ID,
    CHANNEL_ID,
    GUILD_ID,
    FakeDiscord,
    pointed_at,
)

WINDOW_S = 0.5  # the fake's interaction window, shorter than Discord's 3 s to keep this quick


def _config(tmp_path: Path) -> Config:
    base = Config()
    limits = dataclasses.replace(
        base.limits, default_side=64, min_side=64, max_side=256, default_steps=2
    )
    discord = dataclasses.replace(
        base.discord, enabled=True, token=Secret("fake-token"), test_guilds=(GUILD_ID,)
    )
    data = dataclasses.replace(base.storage, data_dir=tmp_path / "data")
    service = dataclasses.replace(base.service, stop_grace_s=0.0)
    return dataclasses.replace(base, limits=limits, discord=discord, storage=data, service=service)


async def test_a_first_response_rate_limited_past_the_window_is_told_in_the_channel(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    fake = FakeDiscord(initial_response_s=WINDOW_S)
    async with (
        fake.serving(),
        Service.open(config, lambda: [StepEngine()]) as service,
        asyncio.timeout(30),
    ):
        with pointed_at(fake):
            async with run_discord(config, service):
                await fake.identified.wait()
                global_sync = await fake.wait_for("PUT", f"/applications/{APP_ID}/commands")
                await fake.wait_for("PUT", f"/applications/{APP_ID}/guilds/{GUILD_ID}/commands")
                fake.rate_limit("POST", "/interactions/*", retry_after_s=WINDOW_S + 0.2)
                await fake.interact(fake.slash("imagine", {"prompt": "a patient fox"}))
                told = await fake.wait_for(
                    "POST", f"/channels/{CHANNEL_ID}/messages", lambda c: not c.files
                )
                image = await fake.wait_for(
                    "POST", f"/channels/{CHANNEL_ID}/messages", lambda c: bool(c.files)
                )
    late = fake.calls_to("POST", "/interactions/*")
    assert [(c.status, c.code) for c in late] == [(429, 0), (404, 10062)]
    assert told.content is not None and told.content.startswith(f"<@{ALICE_ID}>")
    assert image.embeds[0]["description"] == "a patient fox"
    assert global_sync.body == []  # test guilds: the global scope is emptied
