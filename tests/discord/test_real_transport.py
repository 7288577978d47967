"""discord.py over a real websocket and real HTTP against the local fake Discord: one /imagine."""

from __future__ import annotations

import asyncio
import dataclasses

from backend.config import Config, Secret
from bots.discord.app import run_discord
from tests.discord.harness import WAIT_S, EngineGate, open_service
from tests.fakes.discord_server import FakeDiscord, pointed_at, slash_interaction

GUILD_ID, CHANNEL_ID = "500000000000000001", "500000000000000002"
SIZE_LIMIT = 2500  # bytes: smaller than the tiny PNG, so the bot must send a JPEG


def discord_enabled(config: Config) -> Config:
    discord_config = dataclasses.replace(
        config.discord, enabled=True, token=Secret("fake-token"), test_guilds=(GUILD_ID,)
    )
    return dataclasses.replace(config, discord=discord_config)


async def test_one_imagine_end_to_end_over_a_real_gateway(tiny_config: Config) -> None:
    config = discord_enabled(tiny_config)
    fake = FakeDiscord()
    async with (
        fake.serving(),
        open_service(config, EngineGate(config)) as service,
        asyncio.timeout(WAIT_S),
    ):
        with pointed_at(fake):
            async with run_discord(config, service):
                await fake.identified.wait()
                sync = await fake.wait_for_call("PUT", f"/guilds/{GUILD_ID}/commands")
                options = [{"name": "prompt", "type": 3, "value": "一只猫 --seed 3"}]
                interaction = slash_interaction(
                    "imagine",
                    options,
                    guild_id=GUILD_ID,
                    channel_id=CHANNEL_ID,
                    locale="zh-CN",
                    attachment_size_limit=SIZE_LIMIT,
                )
                await fake.dispatch("INTERACTION_CREATE", interaction)
                final = await fake.wait_for_call("PATCH", "/messages/@original", with_file=True)

    callback = next(c for c in fake.calls if c.path.startswith("/interactions/"))
    edits = [c for c in fake.calls if c.path.endswith("/messages/@original")]
    # Stored first, then one public answer with the job's state and Cancel; edits follow.
    assert callback.body["type"] == 4
    assert callback.body["data"]["content"].startswith(ZH_PROGRESS)
    assert callback.body["data"]["components"][0]["components"][0]["label"] == "取消"
    assert fake.calls.index(callback) < fake.calls.index(edits[0])
    assert {c["name"] for c in sync.body} == {
        "imagine",
        "settings",
        "status",
        "history",
        "cancel",
        "ban",
        "unban",
        "policy",
    }
    assert final.body["content"] == (
        "PNG 超过了 Discord 在这里允许的大小，所以发送的是高质量的 JPEG。"
    )
    assert final.files[0].endswith(".jpg") and final.file_sizes[0] <= SIZE_LIMIT
    (embed,) = final.body["embeds"]
    assert embed["fields"][0] == {"name": "种子", "value": "3", "inline": True}
    assert embed["description"] == "一只猫"
    labels = [b["label"] for b in final.body["components"][0]["components"]]
    assert labels == ["🎲 重新生成", "变体", "删除"]


ZH_PROGRESS = ("模型预热中", "已排队", "开始生成", "第 ")
