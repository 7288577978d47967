"""The shared follower on Telegram: budgeted edits, one photo per job, the delivery policy.

Real python-telegram-bot against the fake Bot API, the real Service on a step engine, and a
fast clock (the follower's intervals pass 20 times faster; the flood limits scale with it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import Counter

from backend.config import Config
from backend.domain import TERMINAL_EVENTS, Job, Platform
from backend.service import Service
from bots.i18n import translate
from bots.telegram.app import run_telegram
from tests.backend.engines import StepEngine
from tests.fakes.telegram_rules import FloodLimits, Rate
from tests.fakes.telegram_server import Call, FakeTelegram, TgUser
from tests.follow.clocks import FastClock
from tests.telegram.harness import ALICE, SCALE, TUNING

FAST = TUNING


def _job_id(call: Call) -> str:
    return call.buttons[0][1].split(":", 1)[1]


async def _finished(service: Service, job_id: str) -> Job:
    async for event in service.subscribe(job_id):
        if isinstance(event, TERMINAL_EVENTS):
            break
    return await service.job(job_id)


async def test_a_late_photo_answer_gives_one_photo(tg_config: Config, api: FakeTelegram) -> None:
    """sendPhoto answered after PTB's usual read timeout (the upload arrived at once)."""
    api.delay("sendPhoto", 0.6)  # 8 s against a 5 s read timeout, scaled down
    tuning = dataclasses.replace(FAST, upload_read_base_s=1.5)
    async with (
        Service.open(tg_config, lambda: [StepEngine()]) as service,
        run_telegram(tg_config, service, tuning, FastClock(SCALE)),
    ):
        api.user_sends("/imagine a lighthouse", user=ALICE)
        photo = await api.wait_for("sendPhoto")
        job = await _until_delivered(service, _job_id(photo))
        await asyncio.sleep(0.5)  # time for a wrong resend to show up
        assert len(api.photos_sent_to(ALICE.id)) == 1
        assert api.visible_messages(ALICE.id)[-1]["message_id"] == photo.result["message_id"]
        assert job.delivered_at is not None


async def test_an_unanswered_upload_is_not_sent_twice(tg_config: Config, api: FakeTelegram) -> None:
    """The answer never comes in time: no blind resend, the user is pointed to /history."""
    api.delay("sendPhoto", 1.5)
    tuning = dataclasses.replace(FAST, upload_read_base_s=0.3)
    async with (
        Service.open(tg_config, lambda: [StepEngine()]) as service,
        run_telegram(tg_config, service, tuning, FastClock(SCALE)),
    ):
        api.user_sends("/imagine a lighthouse", user=ALICE)
        status = await api.wait_for("sendMessage")
        hint = translate("delivery.history_hint", "en")
        await api.wait_for(
            "editMessageText",
            lambda c: c.message_id == status.result["message_id"] and c.text == hint,
            timeout_s=10,
        )
        await asyncio.sleep(2.0)  # past the late answer, and more than one retry round
        assert len(api.photos_sent_to(ALICE.id)) == 1
        assert not await service.deliveries.undelivered(Platform.TELEGRAM)


async def test_blocked_user_ends_delivery_without_a_retry_loop(
    tg_config: Config, api: FakeTelegram
) -> None:
    gate = threading.Event()
    async with (
        Service.open(tg_config, lambda: [StepEngine(step_gate=gate)]) as service,
        run_telegram(tg_config, service, FAST, FastClock(SCALE)),
    ):
        api.user_sends("/imagine a lighthouse", user=ALICE)
        status = await api.wait_for("sendMessage")
        job_id = status.buttons[0][1].split(":", 1)[1]
        api.block(ALICE.id)
        gate.set()
        await _finished(service, job_id)
        await _until_delivered(service, job_id)
        tries = len(api.calls_of("sendPhoto"))
        await asyncio.sleep(1.0)  # five retry-loop periods
        assert len(api.calls_of("sendPhoto")) == tries <= 1
        assert not api.photos_sent_to(ALICE.id)


async def test_200_waiting_jobs_stay_within_the_edit_budget(
    tg_config: Config, api: FakeTelegram
) -> None:
    """200 jobs from 50 users: few edits per waiting job, and new commands still answered."""
    limits = dataclasses.replace(tg_config.limits, per_user_queue=4, default_steps=4, queue_max=400)
    config = dataclasses.replace(tg_config, limits=limits)
    users = [TgUser(5000 + i, f"user{i}", f"user{i}", "en") for i in range(50)]
    gate = threading.Event()
    engine = StepEngine(step_gate=gate)
    async with (
        Service.open(config, lambda: [engine]) as service,
        run_telegram(config, service, FAST, FastClock(SCALE)),
    ):
        for round_ in range(4):
            for user in users:
                api.user_sends(f"/imagine picture {round_} of {user.first_name}", user=user)
        await api.wait_until(lambda: len(api.calls_of("sendMessage")) >= 200 or None, timeout_s=60)
        statuses = {
            (c.chat_id, c.result["message_id"]): _job_id(c) for c in api.calls_of("sendMessage")
        }
        assert len(statuses) == 200
        gate.set()
        await asyncio.sleep(0.2)  # the queue is moving and the followers are editing
        pushed_at = api.now()
        api.user_sends("/help", user=ALICE)
        help_text = translate("help.text", "en")
        reply = await api.wait_for("sendMessage", lambda c: c.text == help_text)
        assert reply.received_at - pushed_at <= 1.0
        await api.wait_until(lambda: len(api.calls_of("sendPhoto")) >= 200 or None, timeout_s=120)

    waiting_edits: Counter[str] = Counter()
    started = translate("job.started", "en")
    seen_start: set[str] = set()
    for call in api.calls_of("editMessageText"):
        job_id = statuses.get((call.chat_id, call.message_id))
        if job_id is None or not call.ok or job_id in seen_start:
            continue
        if call.text == started or (call.text or "").startswith("Step"):
            seen_start.add(job_id)
        else:
            waiting_edits[job_id] += 1
    assert sum(waiting_edits.values()) / 200 <= 6
    # Telegram's limits on the fast clock: 30 messages/s overall and ~1/s per chat (a photo
    # right after the last edit is the one burst a chat sees).
    scaled = FloodLimits(
        per_chat=Rate(2, 1.0 / SCALE), overall=Rate(30, 1.0 / SCALE), slack_s=0.05 / SCALE
    )
    assert not api.flood_violations(scaled)


async def _until_delivered(service: Service, job_id: str, timeout_s: float = 30.0) -> Job:
    async with asyncio.timeout(timeout_s):
        # The store publishes no event for delivery: poll it, bounded by the timeout.
        while (job := await service.job(job_id)).delivered_at is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return job
