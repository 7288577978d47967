"""Content controls in Telegram: real PTB against the fake Bot API, the real Service, the
``StepEngine`` and the tiny safety classifiers (issue 16)."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

from backend.config import Config
from backend.service import Service
from bots.i18n import translate
from tests.backend.engines import StepEngine
from tests.content.fixtures import with_content
from tests.fakes.telegram_server import Call, FakeTelegram
from tests.telegram.harness import ADMIN, ALICE, GROUP, bot, status_in, telegram_config

REFUSED = translate("error.prompt_refused", "en")
# A blocked prompt and five obfuscated spellings of it.
BLOCKED = [
    "/imagine a nude woman on the beach",
    "/imagine a n.u.d.e woman on the beach",
    "/imagine a n u d e woman on the beach",
    "/imagine a ｎｕｄｅ woman on the beach",
    "/imagine a nudе woman on the beach",  # Cyrillic е
    "/imagine a nud3 woman on the beach --seed 4",
]


def _config(tmp_path: Path, api: FakeTelegram, classifier: Path) -> Config:
    base = Config()
    base = dataclasses.replace(
        base,
        storage=dataclasses.replace(base.storage, data_dir=tmp_path / "data"),
        limits=dataclasses.replace(
            base.limits, default_side=64, min_side=64, max_side=256, default_steps=2
        ),
    )
    return with_content(telegram_config(base, api), classifier_path=str(classifier))


def _text_in(chat_id: int, text: str) -> Callable[[Call], bool]:
    return lambda call: call.chat_id == chat_id and call.text == text


def _jobs(config: Config) -> int:
    with sqlite3.connect(config.db_path) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


async def test_a_blocked_prompt_and_its_disguises_are_refused_without_a_job(
    tmp_path: Path, api: FakeTelegram, nsfw_classifier_dir: Path
) -> None:
    config = _config(tmp_path, api, nsfw_classifier_dir)
    async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
        for text in BLOCKED:
            mark = len(api.calls)
            command = api.user_sends(text, user=ALICE, chat=GROUP)
            reply = await api.wait_for("sendMessage", _text_in(GROUP.id, REFUSED), since=mark)
            assert reply.params["reply_parameters"]["message_id"] == command["message_id"]
            assert "nude" not in (reply.text or "").lower()
        assert _jobs(config) == 0
        assert not api.calls_of("sendPhoto")
        assert not [c for c in api.calls_of("sendMessage") if status_in(GROUP.id)(c)]


async def test_flagged_images_follow_the_chats_policy(
    tmp_path: Path, api: FakeTelegram, nsfw_classifier_dir: Path
) -> None:
    config = _config(tmp_path, api, nsfw_classifier_dir)
    async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
        # The default policy blocks: the status message becomes one sentence, no photo.
        api.user_sends("/imagine a red fox", user=ALICE, chat=GROUP)
        status = await api.wait_for("sendMessage", status_in(GROUP.id))
        job_id = status.buttons[0][1].split(":", 1)[1]
        withheld = translate("content.withheld", "en", job_id=job_id)
        edit = await api.wait_for("editMessageText", _text_in(GROUP.id, withheld), timeout_s=60)
        assert edit.params["message_id"] == str(status.result["message_id"])
        assert not api.calls_of("sendPhoto")
        job = await service.job(job_id)
        assert job.result_path is not None and job.result_path.is_file()  # kept for admins

        # Members may read the policy but not change it.
        mark = len(api.calls)
        api.user_sends("/policy allow", user=ALICE, chat=GROUP)
        only_admins = translate("error.admin_only", "en")
        await api.wait_for("sendMessage", _text_in(GROUP.id, only_admins), since=mark)

        # spoiler: the photo comes behind a spoiler.
        for policy, spoiler in (("spoiler", True), ("allow", False)):
            mark = len(api.calls)
            api.user_sends(f"/policy {policy}", user=ADMIN, chat=GROUP)
            name = translate(f"policy.name.{policy}", "en")
            own = translate("policy.own", "en")
            done = translate("policy.changed", "en", policy=name, source=own)
            await api.wait_for("sendMessage", _text_in(GROUP.id, done), since=mark)
            api.user_sends("/imagine a red fox", user=ALICE, chat=GROUP)
            photo = await api.wait_for("sendPhoto", since=mark, timeout_s=60)
            assert _has_spoiler(photo) is spoiler, policy

        # A user may ask for a spoiler themselves; /policy alone shows the setting.
        mark = len(api.calls)
        api.user_sends("/imagine a red fox --spoiler", user=ALICE, chat=GROUP)
        photo = await api.wait_for("sendPhoto", since=mark, timeout_s=60)
        assert _has_spoiler(photo)
        mark = len(api.calls)
        api.user_sends("/policy", user=ALICE, chat=GROUP)
        shown = translate(
            "policy.current",
            "en",
            policy=translate("policy.name.allow", "en"),
            source=translate("policy.own", "en"),
        )
        await api.wait_for("sendMessage", _text_in(GROUP.id, shown), since=mark)

        # /status counts and shows the check.
        mark = len(api.calls)
        api.user_sends("/status", user=ADMIN)
        report = await api.wait_for("sendMessage", lambda c: c.chat_id == ADMIN.id, since=mark)
        lines = (report.text or "").splitlines()
        assert "Image safety check: ready; flagged images by default: not sent" in lines
        assert "Last hour: 0 prompt(s) refused, 4 image(s) flagged, 1 withheld" in lines


async def test_unflagged_images_are_sent_as_they_are(
    tmp_path: Path, api: FakeTelegram, normal_classifier_dir: Path
) -> None:
    config = _config(tmp_path, api, normal_classifier_dir)
    async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
        api.user_sends("/imagine a red fox", user=ALICE, chat=GROUP)
        photo = await api.wait_for("sendPhoto", timeout_s=60)
        assert not _has_spoiler(photo)


def _has_spoiler(photo: Call) -> bool:
    return str(photo.params.get("has_spoiler", "")).lower() == "true"
