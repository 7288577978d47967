"""/settings and /ban, /unban end to end: real PTB against the fake Bot API, the real Service.

The defaults test runs the tiny FLUX (the caption and the PNG must show the default steps and
size); the rest needs no image.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from backend.config import Config, EngineSettings
from backend.domain import HistoryScope, Platform, Requester
from backend.engine.factory import make_engines
from backend.service import Service
from bots.i18n import translate
from tests.fakes.telegram_server import Call, FakeTelegram, TgChat, TgUser
from tests.telegram.harness import (
    ADMIN,
    ALICE,
    BO,
    GROUP,
    bot,
    is_status,
    status_in,
    telegram_config,
)

HINT_EN = "Change: /settings --steps 20 --ar 16:9 --guidance 4 · clear: /settings reset"
TIMEOUT_S = 60.0


def _reply(chat_id: int) -> Callable[[Call], bool]:
    """The bot's answer in ``chat_id`` (not the status message of an /imagine)."""
    return lambda call: call.chat_id == chat_id and not is_status(call)


async def _ask(
    api: FakeTelegram,
    text: str,
    user: TgUser,
    chat: TgChat | None = None,
    reply_to: dict[str, Any] | None = None,
) -> str:
    """Send ``text`` as ``user`` and return the bot's next reply in that chat."""
    mark = len(api.calls)
    message = api.user_sends(text, user=user, chat=chat, reply_to=reply_to)
    reply = await api.wait_for("sendMessage", _reply(message["chat"]["id"]), since=mark)
    assert reply.text is not None
    return reply.text


async def test_settings_become_the_defaults_of_imagine(
    tg_config: Config, api: FakeTelegram
) -> None:
    async with (
        Service.open(tg_config, lambda: make_engines(EngineSettings.of(tg_config))) as service,
        bot(tg_config, service),
    ):
        shown = await _ask(api, "/settings", ALICE)
        saved = await _ask(api, "/settings ——steps 3 --ar 16:9", ALICE)
        api.user_sends("/imagine a red fox --seed 7", user=ALICE)
        photo = await api.wait_for("sendPhoto", timeout_s=TIMEOUT_S)
        mark = len(api.calls)
        api.user_sends("/imagine a red fox --seed 7 --ar 1:1", user=ALICE)
        square = await api.wait_for("sendPhoto", since=mark, timeout_s=TIMEOUT_S)
        reset = await _ask(api, "/settings reset", ALICE)

    assert shown == (
        "Your defaults for /imagine:\n"
        "Steps: 2 (server default)\n"
        "Size: 64×64 (server default)\n"
        "Guidance: 3.5 (server default)\n" + HINT_EN
    )
    assert saved == (
        "Saved. Options you give to /imagine still win over these.\n"
        "Your defaults for /imagine:\n"
        "Steps: 3 (yours)\n"
        "Size: 16:9, 80×48 (yours)\n"
        "Guidance: 3.5 (server default)\n" + HINT_EN
    )
    assert photo.text is not None and square.text is not None
    assert photo.text.startswith("a red fox\nSeed 7 · 3 steps · 80×48 · ")
    assert Image.open(io.BytesIO(photo.file().data)).size == (80, 48)
    assert square.text.startswith("a red fox\nSeed 7 · 3 steps · 64×64 · ")  # --ar wins
    assert reset == (
        "Your defaults are cleared; /imagine uses the server's again.\n"
        "Your defaults for /imagine:\n"
        "Steps: 2 (server default)\n"
        "Size: 64×64 (server default)\n"
        "Guidance: 3.5 (server default)\n" + HINT_EN
    )


def _config(tmp_path: Path, api: FakeTelegram) -> Config:
    base = Config()
    base = dataclasses.replace(
        base,
        storage=dataclasses.replace(base.storage, data_dir=tmp_path / "data"),
        limits=dataclasses.replace(base.limits, default_side=64, min_side=64, max_side=256),
    )
    return telegram_config(base, api)


@pytest.fixture
def config(tmp_path: Path, api: FakeTelegram) -> Config:
    return _config(tmp_path, api)


async def test_settings_refuses_prompts_seeds_and_out_of_range_values(
    config: Config, api: FakeTelegram
) -> None:
    async with Service.open(config, lambda: []) as service, bot(config, service):
        replies = [
            await _ask(api, text, BO)
            for text in (
                "/settings a cat --steps 20",
                "/settings --seed 3",
                "/settings --steps 99",
                "/settings --ar 5:1",
                "/settings --steps",
            )
        ]
        settings = service.accounts.settings(Requester(Platform.TELEGRAM, str(BO.id)))
    assert replies == [
        "/settings 只接受选项，不接受提示词（“a cat”）。例如：/settings --steps 20 --ar 16:9，"
        "或 /settings reset。",
        "默认种子会让每张图片都一样，所以 /settings 不接受 --seed。请在 /imagine 里使用 --seed。",
        "步数必须在 1 到 50 之间（你输入的是 99）。",
        "不支持宽高比 5:1。可选：1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3。",
        "选项 --steps 需要一个值，例如：--steps 28",
    ]
    assert settings.defaults.is_empty


async def test_ban_and_unban_by_id_and_by_reply(config: Config, api: FakeTelegram) -> None:
    banned_zh = translate("error.banned", "zh")
    async with Service.open(config, lambda: []) as service, bot(config, service):
        refused = await _ask(api, f"/ban {BO.id}", ALICE)
        usage = await _ask(api, "/ban bob", ADMIN)
        admin_target = await _ask(api, f"/ban {ADMIN.id}", ADMIN)
        done = await _ask(api, f"/ban {BO.id}", ADMIN)
        bo_refused = await _ask(api, "/imagine a cat", BO)
        settings_refused = await _ask(api, "/settings --steps 4", BO)
        lifted = await _ask(api, f"/unban {BO.id}", ADMIN)
        mark = len(api.calls)
        api.user_sends("/imagine a cat", user=BO)
        await api.wait_for("sendMessage", status_in(BO.id), since=mark)

        said = api.user_sends("hello everyone", user=ALICE, chat=GROUP)
        by_reply = await _ask(api, "/ban", ADMIN, chat=GROUP, reply_to=said)
        alice_refused = await _ask(api, "/imagine a dog", ALICE, chat=GROUP)
        unban_usage = await _ask(api, "/unban", ADMIN)
        bo_jobs = await service.history(Requester(Platform.TELEGRAM, str(BO.id)))
        everyone = await service.history(
            Requester(Platform.TELEGRAM, str(ADMIN.id)), HistoryScope.ALL
        )  # Alice's own /history is refused now: she is banned
        alice_jobs = [job for job in everyone if job.requester.user_id == str(ALICE.id)]

    assert refused == "Only admins can do that."
    assert usage == "Usage: /ban <user id>, or reply /ban to one of their messages."
    assert admin_target == "User 1 is an admin; admins cannot be banned."
    assert done == "1002 is banned: their next /imagine will be refused."
    assert bo_refused == settings_refused == banned_zh
    assert lifted == "1002 may use the bot again."
    assert [job.params.prompt for job in bo_jobs] == ["a cat"]
    assert by_reply == "Alice (1001) is banned: their next /imagine will be refused."
    assert alice_refused == "Sorry, you are not allowed to use this bot."
    assert alice_jobs == []
    assert unban_usage == "Usage: /unban <user id>, or reply /unban to one of their messages."
