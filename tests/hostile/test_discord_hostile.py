"""Hostile input through the real discord.py over a real websocket and HTTP (the local fake).

1,000 generated slash commands (``tests.hostile.inputs``, seeded; wrong option types, options
without values, unknown options, 7,000-character prompts, unknown and stale command names), plus
button clicks with any ``custom_id``, autocomplete requests and modal submits: each interaction
gets exactly one initial response, within the 3 s window; the fake refuses a second one (40060),
a late one (10062) and any message over 2,000 characters. Payloads so malformed that discord.py
cannot build an ``Interaction`` are dropped with a WARNING (there is nothing to answer) and the
connection stays up. No ERROR is logged; afterwards a normal ``/imagine`` still gets its image.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from pathlib import Path
from typing import Any

import pytest

from backend.config import Config, Secret
from backend.service import Service
from bots.discord.app import run_discord
from tests.backend.engines import StepEngine
from tests.fakes.discord_server import CHANNEL_ID, GUILD_ID, FakeDiscord, pointed_at
from tests.hostile.inputs import SEED, custom_id, discord_command, junk

COMMANDS = 1000
CLICKS = 150
OTHERS = 50  # autocomplete requests and modal submits
BATCH = 40  # interactions in flight at once (each must be answered within 3 s)
USER_IDS = [f"6100000000000000{i:02d}" for i in range(8)]
NORMAL_ID = "610000000000000099"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    base = Config()
    limits = dataclasses.replace(
        base.limits, default_side=64, min_side=64, max_side=256, default_steps=2, per_user_hourly=2
    )
    discord = dataclasses.replace(
        base.discord, enabled=True, token=Secret("fake-token"), test_guilds=(GUILD_ID,)
    )
    data = dataclasses.replace(base.storage, data_dir=tmp_path / "data")
    service = dataclasses.replace(base.service, stop_grace_s=0.0)
    return dataclasses.replace(base, limits=limits, discord=discord, storage=data, service=service)


def _bot_message(fake: FakeDiscord) -> dict[str, Any]:
    """A message of the bot's to click on: the newest in the channel, or a made-up one."""
    found = fake.channel_messages(CHANNEL_ID)
    if found:
        return found[-1]
    return {"id": fake.snowflake(), "channel_id": CHANNEL_ID, "author": {"id": "1",
            "username": "majicbot", "discriminator": "0", "avatar": None, "bot": True},
            "content": "", "timestamp": "2026-01-01T00:00:00+00:00", "edited_timestamp": None,
            "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
            "attachments": [], "embeds": [], "pinned": False, "type": 0,
            "components": []}  # fmt: skip


def _malformed(fake: FakeDiscord) -> list[dict[str, Any]]:
    """INTERACTION_CREATE payloads no Discord client can produce (discord.py cannot parse them)."""
    good = fake.slash("imagine", {"prompt": "a cat"})
    click = fake.click("mj:reroll:x", message=_bot_message(fake))
    broken: list[dict[str, Any]] = []
    for change in (
        {"data": None},
        {"type": 3, "data": {"component_type": 2}},  # a click without custom_id
        {"type": 3, "data": {"custom_id": 5, "component_type": 2}},
        {"member": None, "user": None},
        {"channel_id": "not-a-snowflake"},
        {"type": 5, "data": {"custom_id": "m"}},  # a modal submit without components
    ):
        template = click if change.get("type") == 3 else good
        payload = {**template, **change, "id": fake.snowflake()}
        payload["token"] = f"token-{payload['id']}"
        broken.append(payload)
    return broken


async def test_discord_answers_every_hostile_interaction_once(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="majicbot")
    rng = random.Random(SEED)
    fake = FakeDiscord()
    answered: list[str] = []
    dropped: list[str] = []
    started = time.monotonic()
    async with (
        fake.serving(),
        Service.open(config, lambda: [StepEngine()]) as service,
        asyncio.timeout(120),
    ):
        with pointed_at(fake):
            async with run_discord(config, service):
                await fake.identified.wait()
                await fake.wait_for_call("PUT", f"/guilds/{GUILD_ID}/commands")

                async def send(payloads: list[dict[str, Any]]) -> None:
                    for payload in payloads:
                        await fake.dispatch("INTERACTION_CREATE", payload)
                    ids = [str(p["id"]) for p in payloads]
                    answered.extend(ids)
                    async with asyncio.timeout(10):
                        await fake.wait_until(
                            lambda: all(fake.interactions[i].acknowledged for i in ids) or None
                        )

                def member() -> dict[str, Any]:
                    return fake.member(rng.choice(USER_IDS), "user")

                batch: list[dict[str, Any]] = []
                for index in range(COMMANDS + CLICKS + OTHERS):
                    if index < COMMANDS:
                        name, options = discord_command(rng)
                        payload = fake.slash(name, options, member=member())
                    elif index < COMMANDS + CLICKS:
                        job_ids = [j.id for j in await service.history(_any_user(service))]
                        payload = fake.click(
                            custom_id(rng, job_ids), message=_bot_message(fake), member=member()
                        )
                    elif rng.random() < 0.5:
                        payload = fake.slash("imagine", [{"name": "prompt", "type": 3,
                                             "value": junk(rng, 50), "focused": True}])  # fmt: skip
                        payload["type"] = 4  # autocomplete
                    else:
                        payload = fake.click(junk(rng, 100), message=_bot_message(fake))
                        payload["type"] = 5  # modal submit
                        payload["data"] = {"custom_id": junk(rng, 100), "components": []}
                    batch.append(payload)
                    if len(batch) == BATCH:
                        await send(batch)
                        batch = []
                await send(batch)
                for payload in _malformed(fake):
                    await fake.dispatch("INTERACTION_CREATE", payload)
                    dropped.append(str(payload["id"]))
                normal = fake.slash(
                    "imagine",
                    {"prompt": "a normal red fox --seed 1"},
                    member=fake.member(NORMAL_ID, "norma"),
                )
                await send([normal])
                image = await fake.wait_for(
                    "PATCH", "*/messages/@original", lambda c: bool(c.files) and _of(c, normal)
                )
    elapsed = time.monotonic() - started
    callbacks: dict[str, int] = {}
    for call in fake.calls_to("POST", "/interactions/*"):
        interaction_id = call.path.split("/")[2]
        callbacks[interaction_id] = callbacks.get(interaction_id, 0) + 1
    assert {i: callbacks.get(i, 0) for i in answered if callbacks.get(i, 0) != 1} == {}
    assert {i: callbacks[i] for i in dropped if callbacks.get(i, 0) > 1} == {}
    salvaged = [i for i in dropped if i in callbacks]  # discord.py could read them after all
    assert [(c.method, c.path, c.code) for c in fake.rejected()] == []
    loud = [c for c in fake.calls if c.allowed_mentions not in (None, {"parse": []})]
    assert [c.content for c in loud if c.content and "<@" not in c.content[:25]] == []
    (embed,) = image.embeds
    assert embed["description"] == "a normal red fox"
    errors = [r.getMessage()[:200] for r in caplog.records if _is_error_of_the_bot(r)]
    assert errors == []
    warnings = [r for r in caplog.records if "dropped a malformed interaction" in r.getMessage()]
    assert len(warnings) + len(salvaged) == len(dropped)
    print(
        f"\ndiscord: {COMMANDS} commands, {CLICKS} clicks, {OTHERS} autocomplete/modal, "
        f"{len(dropped)} malformed ({len(salvaged)} answered, the rest dropped with a warning); "
        f"{len(answered)} answered once in {elapsed:.1f} s"
    )


def _of(call: Any, payload: dict[str, Any]) -> bool:
    return str(payload["token"]) in call.path


def _any_user(service: Service) -> Any:
    from backend.domain import Platform, Requester

    return Requester(Platform.DISCORD, USER_IDS[0])


def _is_error_of_the_bot(record: logging.LogRecord) -> bool:
    """An ERROR record, not from the fake's own HTTP server (a poll cut short at stop)."""
    return record.levelno >= logging.ERROR and record.name != "aiohttp.server"
