"""Forged callback data and private logs, through real PTB against the fake Bot API.

Every caption prints its job id, so anyone can put any job id in callback data. A button acts
only on the job shown by the message it is on (Telegram fills in that message; the data is the
user's): Bo's forged presses on his own photo naming Alice's job are refused with a sentence and
change nothing. In a group, anyone may Reroll an image posted there (the new job is theirs), but
only its owner may Delete it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from backend.config import Config, EngineSettings
from backend.domain import Platform, Requester
from backend.engine.factory import make_engines
from backend.service import Service
from bots.i18n import translate
from tests.fakes.telegram_server import Call, FakeTelegram, TgUser
from tests.log_scan import NAME_MARKER, PROMPT_MARKER
from tests.telegram.harness import ALICE, BO, GROUP, bot

TIMEOUT_S = 120.0
ZED = TgUser(1003, NAME_MARKER, NAME_MARKER.lower(), "en")


def job_id_of(photo: Call) -> str:
    return str(photo.text).rsplit("#", 1)[1]


def engines(config: Config) -> Any:
    return lambda: make_engines(EngineSettings.of(config))


async def press(api: FakeTelegram, message: dict[str, Any], data: str, user: TgUser) -> Call:
    """Press a button (any data) on ``message``; the answer to that press."""
    query_id = api.press_button(message, data, user=user)
    return await api.wait_for(
        "answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id
    )


async def delivered(api: FakeTelegram, chat_id: int) -> Call:
    """The photo of a job in ``chat_id``, once its delivery is recorded (status deleted)."""
    photo = await api.wait_for("sendPhoto", lambda c: c.chat_id == chat_id, timeout_s=TIMEOUT_S)
    await api.wait_for("deleteMessage", lambda c: c.chat_id == chat_id, since=0)
    return photo


async def test_forged_callback_data_is_refused_and_changes_nothing(
    tg_config: Config, api: FakeTelegram
) -> None:
    async with Service.open(tg_config, engines(tg_config)) as service, bot(tg_config, service):
        api.user_sends(f"/imagine my secret {PROMPT_MARKER} --seed 1", user=ALICE)
        alice_photo = await delivered(api, ALICE.id)
        api.user_sends("/imagine a lighthouse --seed 2", user=BO, chat=GROUP)
        bo_photo = await delivered(api, GROUP.id)
        alice_job, bo_job = job_id_of(alice_photo), job_id_of(bo_photo)
        mark = len(api.calls)
        answers = {
            action: await press(api, bo_photo.result, f"{action}:{alice_job}", BO)
            for action in ("d", "o", "r", "v", "c", "g")
        }
        sent_after_forgery = [c.method for c in api.calls[mark:] if c.method.startswith("send")]
        alice_after = await service.job(alice_job)

        # In the group, Alice may reroll Bo's image (her job), not delete it.
        rerolled = await press(api, bo_photo.result, f"r:{bo_job}", ALICE)
        second = await api.wait_for(
            "sendPhoto", lambda c: c.chat_id == GROUP.id, since=mark, timeout_s=TIMEOUT_S
        )
        not_hers = await press(api, bo_photo.result, f"d:{bo_job}", ALICE)
        alice_jobs = await service.history(Requester(Platform.TELEGRAM, str(ALICE.id)))
        bo_jobs = await service.history(Requester(Platform.TELEGRAM, str(BO.id)))

    wrong = translate("error.wrong_message", "zh", job_id=alice_job)
    assert {action: call.params.get("text") for action, call in answers.items()} == {
        "d": wrong,
        "o": wrong,
        "r": wrong,
        "v": wrong,
        "c": wrong,
        "g": translate("error.not_your_job", "zh", job_id=alice_job),  # /history's: own only
    }
    assert all(call.params.get("show_alert") in (True, "true") for call in answers.values())
    assert sent_after_forgery == []  # no document, no photo, no status message
    assert alice_after.params.prompt.startswith("my secret") and alice_after.result_path
    assert alice_after.result_path.exists()
    assert api.message(ALICE.id, alice_photo.result["message_id"]) is not None
    assert api.message(GROUP.id, bo_photo.result["message_id"]) is not None

    assert rerolled.params["text"] == translate("cb.queued", "en")
    assert not_hers.params["text"] == translate("error.not_your_job", "en", job_id=bo_job)
    assert [(j.parent_job_id, j.params.prompt) for j in alice_jobs] == [
        (bo_job, "a lighthouse"),
        (None, f"my secret {PROMPT_MARKER}"),
    ]
    assert job_id_of(second) == alice_jobs[0].id
    assert [j.id for j in bo_jobs] == [bo_job]


async def test_logs_carry_ids_not_prompts_or_names(
    tg_config: Config, api: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error once logged the whole update (prompt, names) at ERROR; Delete
    forgets the prompt and deletes the file."""
    caplog.set_level(logging.DEBUG, logger="majicbot")
    async with Service.open(tg_config, engines(tg_config)) as service, bot(tg_config, service):
        api.user_sends(f"/imagine {PROMPT_MARKER} a fox --seed 3", user=ZED)
        photo = await delivered(api, ZED.id)
        job_id = job_id_of(photo)
        api.fail("sendMessage", 400, "Bad Request: something unexpected", times=2)
        api.user_sends(f"/help {PROMPT_MARKER}", user=ZED)  # the reply fails: on_error logs
        await api.wait_for("sendMessage", ok=False, since=0)
        await api.wait_until(
            lambda: [r for r in caplog.records if r.levelno >= logging.ERROR] or None
        )
        before = await service.job(job_id)
        deleted = await press(api, photo.result, f"d:{job_id}", ZED)
        after = await service.job(job_id)

    # Delete (the owner's): the message, the prompt and the image file are gone.
    assert deleted.params["text"] == translate("cb.deleted", "en")
    assert api.message(ZED.id, photo.result["message_id"]) is None
    assert before.result_path is not None and not before.result_path.exists()
    assert (after.params.prompt, after.requester.display_name, after.result_path) == ("", "", None)

    records = [r for r in caplog.records if r.name.startswith("majicbot")]
    loud = [r for r in records if r.levelno >= logging.INFO]
    quiet = [r for r in records if r.levelno < logging.INFO]
    error = next(r for r in loud if r.levelno >= logging.ERROR)
    assert error.getMessage().startswith("error while handling update ") and str(ZED.id) in (
        error.getMessage()
    )
    assert any(job_id in r.getMessage() for r in loud)  # ids are there
    for record in loud:
        text = record.getMessage()
        assert PROMPT_MARKER not in text and NAME_MARKER.lower() not in text.lower(), text
    assert any(PROMPT_MARKER in r.getMessage() for r in quiet)  # prompts: at DEBUG only
