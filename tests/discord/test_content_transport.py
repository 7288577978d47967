"""Content controls with discord.py over a real websocket and real HTTP (the local fake Discord):
a refused prompt answers ephemerally with no job; a flagged image is withheld in an ordinary
channel and shown in one the interaction reports as age-restricted (``channel.nsfw``)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from backend.config import Config
from bots.discord.app import run_discord
from bots.i18n import translate
from tests.content.fixtures import with_content
from tests.discord.harness import WAIT_S, EngineGate, open_service
from tests.discord.test_real_transport import CHANNEL_ID, GUILD_ID, discord_enabled
from tests.fakes.discord_server import Call, FakeDiscord, pointed_at, slash_interaction

NSFW_CHANNEL_ID = "500000000000000003"
EPHEMERAL = 64


def _interaction(number: int, prompt: str, *, channel_id: str, nsfw: bool) -> dict[str, Any]:
    options = [{"name": "prompt", "type": 3, "value": prompt}]
    payload = slash_interaction("imagine", options, guild_id=GUILD_ID, channel_id=channel_id)
    payload["id"] = str(900000000000000100 + number)
    payload["token"] = f"token-{payload['id']}"
    payload["channel"]["nsfw"] = nsfw
    return payload


def _final(fake: FakeDiscord, token: str, where: Any) -> Any:
    return fake.wait_for("PATCH", f"*{token}/messages/@original", where, ok=None)


async def test_refusals_and_the_nsfw_flag_over_a_real_gateway(
    tiny_config: Config, nsfw_classifier_dir: Path
) -> None:
    config = with_content(
        discord_enabled(tiny_config), image_check=True, classifier_path=str(nsfw_classifier_dir)
    )
    fake = FakeDiscord()
    async with (
        fake.serving(),
        open_service(config, EngineGate(config)) as service,
        asyncio.timeout(WAIT_S),
    ):
        with pointed_at(fake):
            async with run_discord(config, service):
                await fake.identified.wait()
                await fake.wait_for_call("PUT", f"/guilds/{GUILD_ID}/commands")
                refused = _interaction(1, "a n.u.d.e model", channel_id=CHANNEL_ID, nsfw=False)
                await fake.dispatch("INTERACTION_CREATE", refused)
                answer = await fake.wait_for_call("POST", f"/interactions/{refused['id']}/")
                plain = _interaction(2, "a red fox", channel_id=CHANNEL_ID, nsfw=False)
                await fake.dispatch("INTERACTION_CREATE", plain)
                withheld: Call = await _final(
                    fake, plain["token"], lambda c: "not sent" in (c.body.get("content") or "")
                )
                adult = _interaction(3, "a red fox", channel_id=NSFW_CHANNEL_ID, nsfw=True)
                await fake.dispatch("INTERACTION_CREATE", adult)
                shown: Call = await _final(fake, adult["token"], lambda c: bool(c.files))

    assert answer.body["type"] == 4
    assert answer.body["data"]["flags"] == EPHEMERAL
    assert answer.body["data"]["content"] == translate("error.prompt_refused", "en")
    with sqlite3.connect(config.db_path) as db:
        prompts = [row[0] for row in db.execute("SELECT prompt FROM jobs ORDER BY seq")]
    assert prompts == ["a red fox", "a red fox"]  # the refused prompt made no job
    assert withheld.files == [] and withheld.body["content"].startswith("Your image #")
    (name,) = shown.files
    assert not name.startswith("SPOILER_") and name.endswith(".png")
