"""/imagine end to end: real PTB against the fake Bot API, the real Service and the tiny FLUX.

The job flow (status message, edits, photo with caption and buttons, Reroll / Variations /
Original PNG / Delete), group commands, /history, and delivery across failures and restarts.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from backend.config import Config, EngineSettings
from backend.domain import TERMINAL_EVENTS, HistoryScope, Job, Platform, Requester
from backend.engine.factory import make_engines
from backend.service import Service
from bots.i18n import translate
from bots.render import render_caption
from tests.backend.engines import StepEngine
from tests.fakes.telegram_server import Call, FakeTelegram, TgUser
from tests.telegram.harness import ALICE, BO, GROUP, bot, status_in

TIMEOUT_S = 60.0


def _requester(user: TgUser) -> Requester:
    return Requester(Platform.TELEGRAM, str(user.id))


def _text(chat_id: int, text: str) -> Callable[[Call], bool]:
    return lambda call: call.chat_id == chat_id and call.text == text


def _job_id(photo: Call) -> str:
    return photo.buttons[0][1].split(":", 1)[1]


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def _finished(service: Service, job_id: str) -> Job:
    async for event in service.subscribe(job_id):
        if isinstance(event, TERMINAL_EVENTS):
            break
    return await service.job(job_id)


async def test_imagine_photo_buttons_reroll_variation_original_delete(
    tg_config: Config, api: FakeTelegram
) -> None:
    async with (
        Service.open(tg_config, lambda: make_engines(EngineSettings.of(tg_config))) as service,
        bot(tg_config, service),
    ):
        command = api.user_sends("/imagine a red fox in the snow --seed 7 --size 96x64", user=ALICE)
        status = await api.wait_for("sendMessage", status_in(ALICE.id))
        photo = await api.wait_for("sendPhoto", timeout_s=TIMEOUT_S)
        status_id = status.result["message_id"]
        # The status message goes once the result is delivered (and recorded as delivered).
        await api.wait_for("deleteMessage", lambda c: c.params["message_id"] == str(status_id))
        job_id = _job_id(photo)
        job = await service.job(job_id)

        # The photo: a real image of the requested size, replying to the command.
        image = _image(photo.file().data)
        assert (image.format, image.size) == ("PNG", (96, 64))
        assert photo.chat_id == ALICE.id
        assert photo.params["reply_parameters"]["message_id"] == command["message_id"]
        assert photo.text == render_caption(job, "en")
        assert photo.text.startswith("a red fox in the snow\nSeed 7 · 2 steps · 96×64 · ")
        assert photo.text.endswith(f" s · #{job_id}")
        assert photo.buttons == [
            ("🎲 Reroll", f"r:{job_id}"),
            ("Variations", f"v:{job_id}"),
            ("Original PNG", f"o:{job_id}"),
            ("Delete", f"d:{job_id}"),
        ]
        # The status message showed the queue with a Cancel button, then went away.
        status_id = status.result["message_id"]
        edits = [
            c for c in api.calls_of("editMessageText") if c.params["message_id"] == str(status_id)
        ]
        assert edits and all(c.ok for c in edits)
        assert edits[0].buttons == [("Cancel", f"c:{job_id}")]
        assert api.message(ALICE.id, status_id) is None
        assert job.delivered_at is not None

        # Reroll: same prompt and size, a new seed, a new photo.
        mark = len(api.calls)
        api.press_button(photo.result, f"r:{job_id}", user=ALICE)
        answer = await api.wait_for("answerCallbackQuery", since=mark)
        assert answer.params["text"] == translate("cb.queued", "en")
        rerolled = await api.wait_for("sendPhoto", since=mark, timeout_s=TIMEOUT_S)
        child = await service.job(_job_id(rerolled))
        assert (child.parent_job_id, child.params.prompt) == (job_id, job.params.prompt)
        assert (child.params.width, child.params.height, child.params.steps) == (96, 64, 2)
        assert rerolled.params["reply_parameters"]["message_id"] == photo.result["message_id"]

        # Variations: seed + 1.
        mark = len(api.calls)
        api.press_button(photo.result, f"v:{job_id}", user=ALICE)
        varied = await api.wait_for("sendPhoto", since=mark, timeout_s=TIMEOUT_S)
        assert (await service.job(_job_id(varied))).params.seed == 8

        # Original PNG: the file itself, byte for byte, as a document.
        mark = len(api.calls)
        api.press_button(photo.result, f"o:{job_id}", user=ALICE)
        document = await api.wait_for("sendDocument", since=mark)
        answer = await api.wait_for("answerCallbackQuery", since=mark)
        assert job.result_path is not None
        assert document.file().data == job.result_path.read_bytes()
        assert document.file().filename == f"majicbot-{job_id}.png"
        assert answer.params["text"] == translate("cb.sending", "en")

        # Delete: refused for someone else, done for the owner.
        mark = len(api.calls)
        api.press_button(photo.result, f"d:{job_id}", user=BO)
        refused = await api.wait_for("answerCallbackQuery", since=mark)
        assert refused.params["text"] == translate("error.not_your_job", "zh", job_id=job_id)
        assert api.message(ALICE.id, photo.result["message_id"]) is not None
        mark = len(api.calls)
        api.press_button(photo.result, f"d:{job_id}", user=ALICE)
        await api.wait_for("answerCallbackQuery", _text_param(translate("cb.deleted", "en")))
        assert api.message(ALICE.id, photo.result["message_id"]) is None

    answered = [c.params["callback_query_id"] for c in api.calls_of("answerCallbackQuery")]
    assert sorted(answered) == sorted(api.pressed)  # every press answered, exactly once


def _text_param(text: str) -> Callable[[Call], bool]:
    return lambda call: call.params.get("text") == text


async def test_group_imagine_as_reply_and_history_resend(
    tg_config: Config, api: FakeTelegram
) -> None:
    async with (
        Service.open(tg_config, lambda: make_engines(EngineSettings.of(tg_config))) as service,
        bot(tg_config, service),
    ):
        idea = api.user_sends("a lighthouse on a cliff at dawn", user=BO, chat=GROUP)
        api.user_sends("/imagine@majic_test_bot --seed 3", user=ALICE, chat=GROUP, reply_to=idea)
        photo = await api.wait_for("sendPhoto", timeout_s=TIMEOUT_S)
        assert photo.chat_id == GROUP.id
        assert str(photo.text).startswith(
            "a lighthouse on a cliff at dawn\nSeed 3 · 2 steps · 64×64"
        )
        job_id = _job_id(photo)

        mark = len(api.calls)
        api.user_sends("/history", user=ALICE, chat=GROUP)
        listing = await api.wait_for("sendMessage", lambda c: c.chat_id == GROUP.id, since=mark)
        header, line = str(listing.text).splitlines()[:2]
        assert header == "Your last job:"
        age = r"\d+ s"  # the clock moves between delivery and /history
        assert re.fullmatch(
            rf"#{job_id} · done · seed 3 · {age} ago · a lighthouse on a cliff at dawn", line
        )
        assert listing.buttons == [(f"#{job_id}", f"g:{job_id}")]

        mark = len(api.calls)
        api.press_button(listing.result, f"g:{job_id}", user=ALICE)
        again = await api.wait_for("sendPhoto", since=mark)
        assert again.text == photo.text
        assert again.file().data == photo.file().data
        chat_jobs = await service.history(_requester(ALICE), HistoryScope.USER)
        assert [j.id for j in chat_jobs] == [job_id]


async def test_result_kept_when_send_photo_fails_and_delivered_after_restart(
    tg_config: Config, api: FakeTelegram
) -> None:
    api.fail("sendPhoto", code=500, times=1000)
    factory = lambda: make_engines(EngineSettings.of(tg_config))  # noqa: E731
    async with Service.open(tg_config, factory) as service, bot(tg_config, service):
        api.user_sends("/imagine a paper boat --size 64x96", user=ALICE)
        await api.wait_for("sendPhoto", ok=False, timeout_s=TIMEOUT_S)
        (job,) = await service.history(_requester(ALICE))
        job = await _finished(service, job.id)
        assert job.status.value == "succeeded" and job.delivered_at is None
    api.clear_failures()

    async with Service.open(tg_config, factory) as service, bot(tg_config, service):
        photo = await api.wait_for("sendPhoto", timeout_s=TIMEOUT_S)
        await api.wait_for("deleteMessage")  # the status message, after marking it delivered
        assert _job_id(photo) == job.id
        assert _image(photo.file().data).size == (64, 96)
        assert photo.params["reply_parameters"]["message_id"] == 1  # the /imagine command
        assert (await service.job(job.id)).delivered_at is not None
        assert await service.deliveries.undelivered(Platform.TELEGRAM) == []
    assert api.message(ALICE.id, int(job.reply_to.message_id or 0)) is None


def _step_config(tmp_path: Path, tg_config: Config) -> Config:
    import dataclasses

    return dataclasses.replace(
        tg_config, storage=dataclasses.replace(tg_config.storage, data_dir=tmp_path / "steps")
    )


async def test_bot_stopped_while_running_reattaches_and_delivers_after_restart(
    tmp_path: Path, tg_config: Config, api: FakeTelegram
) -> None:
    config = _step_config(tmp_path, tg_config)
    gate = threading.Event()
    try:
        async with Service.open(config, lambda: [StepEngine(step_gate=gate)]) as service:
            async with bot(config, service):
                api.user_sends("/imagine a moonlit harbour --steps 4", user=ALICE)
                await api.wait_for("editMessageText", lambda c: str(c.text).startswith("Step 1/4"))
            (job,) = await service.history(_requester(ALICE))
            # The bot is down; the job is still running. Bring the bot back: it re-attaches.
            async with bot(config, service):
                mark = len(api.calls)
                gate.set()
                photo = await api.wait_for("sendPhoto", since=mark, timeout_s=TIMEOUT_S)
                assert _job_id(photo) == job.id
            gate.clear()
            # Now finish a job while the bot is down, then restart everything.
            async with bot(config, service):
                mark = len(api.calls)
                api.user_sends("/imagine a second harbour --steps 4", user=ALICE)
                await api.wait_for(
                    "editMessageText", lambda c: str(c.text).startswith("Step 1/4"), since=mark
                )
            second = (await service.history(_requester(ALICE)))[0]
            gate.set()
            assert (await _finished(service, second.id)).delivered_at is None
        mark = len(api.calls)
        async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
            photo = await api.wait_for("sendPhoto", since=mark, timeout_s=TIMEOUT_S)
            await api.wait_for("deleteMessage", since=mark)
            assert _job_id(photo) == second.id
            assert (await service.job(second.id)).delivered_at is not None
    finally:
        gate.set()


async def test_transient_send_photo_failures_are_retried(
    tmp_path: Path, tg_config: Config, api: FakeTelegram
) -> None:
    config = _step_config(tmp_path, tg_config)
    api.fail("sendPhoto", code=500, times=5)  # more than one send's retries: the timer retries
    async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
        api.user_sends("/imagine a kite", user=ALICE)
        photo = await api.wait_for("sendPhoto", timeout_s=TIMEOUT_S)
        await api.wait_for("deleteMessage")
        assert (await service.job(_job_id(photo))).delivered_at is not None
    assert [c.ok for c in api.calls_of("sendPhoto")] == [False] * 5 + [True]
