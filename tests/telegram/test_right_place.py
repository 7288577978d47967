"""Issue 13's Telegram behaviours: answers land in the chat where asked, and keep their word.

A group's /history lists only that chat's jobs and its "#id" buttons post there; a reply
``/imagine`` to the bot's photo reuses the job's prompt (not the caption's details line); a
cancel during the decode is answered "already finishing"; a second Delete "already deleted".
Real PTB against the fake Bot API; the ``StepEngine`` draws flat images at once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import pytest

from backend.config import Config
from backend.service import Service
from bots.i18n import translate
from tests.backend.engines import StepEngine
from tests.fakes.telegram_server import Call, FakeTelegram
from tests.telegram.harness import ALICE, GROUP, bot, status_in, telegram_config


@pytest.fixture
def config(tmp_path: Path, api: FakeTelegram) -> Config:
    base = Config()
    base = dataclasses.replace(
        base,
        storage=dataclasses.replace(base.storage, data_dir=tmp_path / "data"),
        limits=dataclasses.replace(
            base.limits, default_side=64, min_side=64, max_side=256, default_steps=2
        ),
    )
    return telegram_config(base, api)


async def _photo(api: FakeTelegram, chat_id: int, prompt_start: str) -> Call:
    """The job's photo, once its delivery is recorded (its status message is then deleted):
    a result button works only on a message the service has recorded as showing the job."""
    photo = await api.wait_for(
        "sendPhoto",
        lambda c: c.chat_id == chat_id and str(c.params.get("caption")).startswith(prompt_start),
    )
    since = api.calls.index(photo)
    await api.wait_for("deleteMessage", lambda c: c.chat_id == chat_id, since=since)
    return photo


def _no_errors(caplog: pytest.LogCaptureFixture) -> None:
    # aiohttp.server is the fake's own HTTP server (a long poll cut short at stop), not the bot.
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in records if r.name != "aiohttp.server"] == []


async def test_group_history_lists_that_chat_only_and_its_buttons_post_there(
    config: Config, api: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
        api.user_sends("/imagine a private fox", user=ALICE)
        await _photo(api, ALICE.id, "a private fox")
        api.user_sends("/imagine a group fox", user=ALICE, chat=GROUP)
        await _photo(api, GROUP.id, "a group fox")
        asked = api.user_sends("/history", user=ALICE, chat=GROUP)
        listing = await api.wait_for("sendMessage", lambda c: "Your last job" in str(c.text))
        assert listing.chat_id == GROUP.id
        assert "a group fox" in str(listing.text) and "private" not in str(listing.text)
        ((_label, data),) = listing.buttons
        api.press_button(
            api.message(GROUP.id, listing.result["message_id"]) or {}, data, user=ALICE
        )
        again = await api.wait_for("sendPhoto", lambda c: c.at > listing.at)
        await api.wait_for("answerCallbackQuery")
    assert asked["chat"]["id"] == again.chat_id == GROUP.id
    assert len(api.photos_sent_to(ALICE.id)) == 1  # nothing more went to the private chat
    assert api.rejected(status=None) == []
    _no_errors(caplog)


async def test_reply_to_the_bots_photo_reuses_the_jobs_prompt(
    config: Config, api: FakeTelegram
) -> None:
    async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
        api.user_sends("/imagine a red fox --seed 42", user=ALICE)
        first = await _photo(api, ALICE.id, "a red fox")
        photo = api.message(ALICE.id, first.result["message_id"])
        assert photo is not None and "Seed 42" in photo["caption"]
        api.user_sends("/imagine --steps 1", user=ALICE, reply_to=photo)
        second = await api.wait_for("sendPhoto", lambda c: c.at > first.at)
    assert str(second.params["caption"]).split("\n") == [
        "a red fox",
        str(second.params["caption"]).split("\n")[1],
    ]
    assert " 1 step · " in str(second.params["caption"])  # and singular


async def test_cancel_during_decode_is_answered_already_finishing(
    config: Config, api: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    engine = StepEngine(step_gate=gate)  # holds after step 1: with --steps 1 that is the decode
    try:
        async with Service.open(config, lambda: [engine]) as service, bot(config, service):
            api.user_sends("/imagine a last-step fox --steps 1", user=ALICE)
            status = await api.wait_for("sendMessage", status_in(ALICE.id))
            finishing = translate("job.finishing", "en", step=1, total=1)
            await api.wait_for("editMessageText", lambda c: c.text == finishing)
            api.user_sends("/cancel", user=ALICE)
            refusal = await api.wait_for("sendMessage", lambda c: "finishing" in str(c.text))
            gate.set()
            photo = await _photo(api, ALICE.id, "a last-step fox")
    finally:
        gate.set()
    job_id = str(photo.params["caption"]).rsplit("#", 1)[1]
    assert refusal.text == translate("cancel.already_finishing", "en", job_id=job_id)
    assert status.chat_id == ALICE.id
    _no_errors(caplog)


async def test_second_delete_answers_already_deleted(
    config: Config, api: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
        api.user_sends("/imagine a fox to delete", user=ALICE)
        sent = await _photo(api, ALICE.id, "a fox to delete")
        photo = dict(api.message(ALICE.id, sent.result["message_id"]) or {})
        delete = next(data for label, data in sent.buttons if label == "Delete")
        first = api.press_button(photo, delete, user=ALICE)
        await api.wait_for("answerCallbackQuery", lambda c: c.params["callback_query_id"] == first)
        second = api.press_button(photo, delete, user=ALICE)
        again = await api.wait_for(
            "answerCallbackQuery", lambda c: c.params["callback_query_id"] == second
        )
    assert again.params["text"] == translate("cb.already_deleted", "en")
    assert not again.params.get("show_alert")
    _no_errors(caplog)
