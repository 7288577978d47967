"""Telegram commands that need no image: help, malformed /imagine, /status access, 429, webhook.

Real PTB ``Application`` against the fake Bot API and the real ``Service`` (with no engine, or
the gated ``StepEngine`` where a job must stay queued or running).
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.config import Config, Secret
from backend.domain import Platform, Requester
from backend.service import Service
from bots.i18n import translate
from tests.backend.engines import StepEngine
from tests.fakes.telegram_server import Call, FakeTelegram
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


def _config(tmp_path: Path, api: FakeTelegram, **telegram: object) -> Config:
    base = Config()
    base = dataclasses.replace(
        base,
        storage=dataclasses.replace(base.storage, data_dir=tmp_path / "data"),
        limits=dataclasses.replace(
            base.limits, default_side=64, min_side=64, max_side=256, default_steps=3
        ),
    )
    return telegram_config(base, api, **telegram)


@pytest.fixture
def config(tmp_path: Path, api: FakeTelegram) -> Config:
    return _config(tmp_path, api)


def _reply_to(chat_id: int, text: str) -> Callable[[Call], bool]:
    return lambda call: call.chat_id == chat_id and call.text == text


async def test_start_registers_localized_commands_and_help_answers(
    config: Config, api: FakeTelegram
) -> None:
    async with Service.open(config, lambda: []) as service, bot(config, service):
        api.user_sends("/help", user=ALICE)
        await api.wait_for("sendMessage", _reply_to(ALICE.id, translate("help.text", "en")))
        api.user_sends("/start", user=BO)
        await api.wait_for("sendMessage", _reply_to(BO.id, translate("help.text", "zh")))
    commands = {
        c.params.get("language_code"): c.params["commands"] for c in api.calls_of("setMyCommands")
    }
    assert set(commands) == {None, "zh"}
    assert [c["command"] for c in commands[None]] == [
        "imagine",
        "settings",
        "status",
        "history",
        "cancel",
        "help",
        "start",
    ]
    assert commands["zh"][0] == {"command": "imagine", "description": "根据文字生成图片"}
    assert [c.method for c in api.calls[:1]] == ["getMe"]
    assert api.calls_of("deleteWebhook"), "polling must clear any webhook first"


MALFORMED: list[tuple[str, str, dict[str, object]]] = [
    ("/imagine", "parse.usage", {}),
    ("/imagine   ", "parse.usage", {}),
    ("/imagine --seed 3", "parse.usage", {}),
    ("/imagine a cat --foo 1", "parse.unknown_option", {"option": "--foo"}),
    ("/imagine a cat --seed", "parse.missing_value", {"option": "--seed"}),
    ("/imagine a cat --seed abc", "parse.bad_value", {"option": "--seed", "value": "abc"}),
    ("/imagine a cat ——steps 两", "parse.bad_value", {"option": "--steps", "value": "两"}),
    ("/imagine a cat --ar 16x9", "parse.bad_value", {"option": "--ar", "value": "16x9"}),
    ("/imagine a cat --size big", "parse.bad_value", {"option": "--size", "value": "big"}),
    ("/imagine a cat --guidance lots", "parse.bad_value", {"option": "--guidance"}),
    ("/imagine a cat --seed 1 --seed 2", "parse.duplicate", {"option": "--seed"}),
    ("/imagine a cat --ar 1:1 --size 64x64", "parse.conflict", {"first": "--ar"}),
    # Well-formed but refused by the backend's validation: same single place of mapping.
    ("/imagine a cat --steps 999", "error.steps_range", {"value": 999, "min": 1, "max": 50}),
    ("/imagine a cat --ar 5:1", "error.aspect_unknown", {"value": "5:1"}),
    ("/imagine a cat --size 100x64", "error.size_invalid", {}),
]


async def test_every_malformed_imagine_gets_a_sentence_and_queues_nothing(
    config: Config, api: FakeTelegram
) -> None:
    async with Service.open(config, lambda: []) as service, bot(config, service):
        for text, key, params in MALFORMED:
            mark = len(api.calls)
            api.user_sends(text, user=ALICE)
            reply = await api.wait_for(
                "sendMessage",
                lambda c: c.chat_id == ALICE.id,
                since=mark,
            )
            if key.startswith("parse."):
                expected = translate(key, "en", **_full_params(key, params))
                assert reply.text == expected, text
            else:
                assert reply.text == translate(key, "en", **_backend_params(key, service, params))
        assert await service.history(Requester(Platform.TELEGRAM, str(ALICE.id))) == []
    # A refusal is one message: no status message was ever shown for a refused request.
    assert not [c for c in api.calls_of("sendMessage") if is_status(c)]


def _full_params(key: str, given: dict[str, object]) -> dict[str, object]:
    """The parse error's params as the parser fills them (examples and the list of options)."""
    from bots.parsing import EXAMPLES, KNOWN_OPTIONS

    params = dict(given)
    option = str(params.get("option", "")).lstrip("-—")
    if key == "parse.unknown_option":
        params["known"] = KNOWN_OPTIONS
    if key in ("parse.missing_value", "parse.bad_value"):
        params["example"] = EXAMPLES[option]
    if key == "parse.bad_value" and "value" not in params:
        params["value"] = "lots"
    if key == "parse.conflict":
        params["second"] = "--size"
    return params


def _backend_params(key: str, service: Service, given: dict[str, object]) -> dict[str, object]:
    del service
    defaults: dict[str, dict[str, object]] = {
        "error.aspect_unknown": {"allowed": ", ".join(Config().limits.aspect_ratios)},
        "error.size_invalid": {
            "width": 100,
            "height": 64,
            "min_side": 64,
            "max_side": 256,
            "multiple": 16,
        },
    }
    return {**defaults.get(key, {}), **given}


async def test_status_is_for_admins_only(config: Config, api: FakeTelegram) -> None:
    async with Service.open(config, lambda: []) as service, bot(config, service):
        api.user_sends("/status", user=ALICE)
        await api.wait_for("sendMessage", _reply_to(ALICE.id, translate("status.admin_only", "en")))
        api.user_sends("/status", user=BO)
        await api.wait_for("sendMessage", _reply_to(BO.id, "抱歉，/status 仅限管理员使用。"))
        api.user_sends("/status", user=ADMIN)
        status = await api.wait_for("sendMessage", lambda c: c.chat_id == ADMIN.id)
    assert status.text is not None
    assert status.text.splitlines()[0] == "majicbot status"
    assert "Queue: 0 waiting" in status.text


async def test_group_commands_addressed_to_this_bot_only(config: Config, api: FakeTelegram) -> None:
    async with Service.open(config, lambda: []) as service, bot(config, service):
        api.user_sends("/help@some_other_bot", user=ALICE, chat=GROUP)
        api.user_sends("/help@majic_test_bot", user=ALICE, chat=GROUP)
        reply = await api.wait_for("sendMessage", lambda c: c.chat_id == GROUP.id)
        mark = len(api.calls)
        api.user_sends("/imagine@majic_test_bot", user=ALICE, chat=GROUP)
        usage = await api.wait_for("sendMessage", lambda c: c.chat_id == GROUP.id, since=mark)
    assert reply.text == translate("help.text", "en")
    assert usage.text == translate("parse.usage", "en")
    assert len([c for c in api.calls_of("sendMessage") if c.chat_id == GROUP.id]) == 2


async def test_429_is_waited_out_and_retried(config: Config, api: FakeTelegram) -> None:
    api.fail("sendMessage", code=429, retry_after=1)
    async with Service.open(config, lambda: []) as service, bot(config, service):
        api.user_sends("/help", user=ALICE)
        delivered = await api.wait_for(
            "sendMessage", _reply_to(ALICE.id, translate("help.text", "en"))
        )
    sends = api.calls_of("sendMessage")
    assert [(c.ok, c.error_code) for c in sends] == [(False, 429), (True, None)]
    assert sends[0].params == delivered.params


async def test_cancel_without_a_job_and_history_without_images(
    config: Config, api: FakeTelegram
) -> None:
    async with Service.open(config, lambda: []) as service, bot(config, service):
        api.user_sends("/cancel", user=ALICE)
        await api.wait_for("sendMessage", _reply_to(ALICE.id, translate("cancel.nothing", "en")))
        api.user_sends("/history", user=BO)
        await api.wait_for("sendMessage", _reply_to(BO.id, translate("history.empty", "zh")))
        api.user_sends("/history all", user=ALICE)
        await api.wait_for("sendMessage", _reply_to(ALICE.id, translate("error.admin_only", "en")))
        api.user_sends("/history lots", user=ALICE)
        await api.wait_for("sendMessage", _reply_to(ALICE.id, translate("history.usage", "en")))
        api.user_sends("/cancel nosuchjob", user=ALICE)
        await api.wait_for(
            "sendMessage",
            _reply_to(ALICE.id, translate("error.job_not_found", "en", job_id="nosuchjob")),
        )


async def test_progress_edits_chat_action_and_cancel_button(
    config: Config, api: FakeTelegram
) -> None:
    gate = threading.Event()
    engine = StepEngine(step_gate=gate)
    try:
        async with Service.open(config, lambda: [engine]) as service, bot(config, service):
            api.user_sends("/imagine a slow red fox --steps 4", user=ALICE)
            status = await api.wait_for("sendMessage", status_in(ALICE.id))
            message_id = status.result["message_id"]
            progress = await api.wait_for(
                "editMessageText",
                lambda c: (
                    c.params["message_id"] == str(message_id)
                    and str(c.text).startswith("Step 1/4 · 25 %")
                ),
            )
            await api.wait_for("sendChatAction", lambda c: c.chat_id == ALICE.id)
            (cancel,) = progress.buttons
            assert cancel[0] == "Cancel"
            api.press_button(api.message(ALICE.id, message_id) or {}, cancel[1], user=ALICE)
            answer = await api.wait_for("answerCallbackQuery")
            final = await api.wait_for(
                "editMessageText", lambda c: c.text == translate("job.cancelled", "en")
            )
    finally:
        gate.set()
    assert answer.params["text"] == translate("cb.cancelling", "en")
    assert final.params.get("reply_markup") is None
    edits = [
        c for c in api.calls_of("editMessageText") if c.params["message_id"] == str(message_id)
    ]
    assert all(c.ok for c in edits), [c.description for c in edits if not c.ok]
    texts = [c.text for c in edits]
    assert len(texts) == len(set(texts)), "an edit repeated the previous text"
    assert not api.calls_of("sendPhoto")


async def test_someone_elses_cancel_button_is_refused(config: Config, api: FakeTelegram) -> None:
    gate = threading.Event()
    try:
        async with (
            Service.open(config, lambda: [StepEngine(step_gate=gate)]) as service,
            bot(config, service),
        ):
            api.user_sends("/imagine a fox", user=ALICE)
            edit = await api.wait_for("editMessageText", lambda c: bool(c.buttons))
            message = api.message(ALICE.id, int(edit.params["message_id"])) or {}
            api.press_button(message, edit.buttons[0][1], user=BO)
            answer = await api.wait_for("answerCallbackQuery")
            job_id = edit.buttons[0][1].split(":")[1]
            assert (await service.job(job_id)).status.value in ("queued", "running")
    finally:
        gate.set()
    expected = translate("error.not_your_job", "zh", job_id=job_id)
    assert (answer.params["text"], answer.params["show_alert"]) == (expected, "true")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_webhook_mode(tmp_path: Path, api: FakeTelegram) -> None:
    port = _free_port()
    config = _config(
        tmp_path,
        api,
        mode="webhook",
        webhook_url=f"http://127.0.0.1:{port}/tg-hook",
        webhook_listen="127.0.0.1",
        webhook_port=port,
        webhook_secret=Secret("s3cret"),
    )
    async with Service.open(config, lambda: []) as service, bot(config, service):
        (registered,) = api.calls_of("setWebhook")
        assert registered.params["url"] == f"http://127.0.0.1:{port}/tg-hook"
        assert registered.params["secret_token"] == "s3cret"
        api.user_sends("/help", user=ALICE)
        await api.wait_for("sendMessage", _reply_to(ALICE.id, translate("help.text", "en")))
    assert [c.result for c in api.calls_of("webhook")] == [200]
    assert not api.calls_of("getUpdates")
