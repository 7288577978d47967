"""Content controls behind the facade, with the protocol-level ``StepEngine``: refused prompts
make no job, verdicts are stored before delivery, policies persist, /status counts, the schema
migration, and a missing classifier."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backend.config import Config
from backend.content.rules import DEFAULT_TERMS
from backend.domain import (
    ChatPolicy,
    ContentStatus,
    Delivery,
    Job,
    JobStatus,
    Platform,
    Requester,
    SafetyState,
)
from backend.errors import AccessDenied, InvalidRequest, PromptRefused
from backend.service import Service
from backend.store import SCHEMA_VERSION, Store
from tests.backend.engines import StepEngine
from tests.backend.helpers import collect, make_config, request, requester, with_section
from tests.content.fixtures import with_content


@pytest.fixture
def config(tmp_path: Path, nsfw_classifier_dir: Path) -> Config:
    """Telegram admin "boss"; the image check on with the classifier that flags everything."""
    base = with_section(make_config(tmp_path / "data"), "telegram", admins=("boss",))
    return with_content(base, image_check=True, classifier_path=str(nsfw_classifier_dir))


async def _finish(service: Service, job_id: str) -> Job:
    await collect(service.subscribe(job_id))
    return await service.job(job_id)


async def _jobs_in_store(config: Config) -> int:
    with sqlite3.connect(config.db_path) as db:
        return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


async def test_a_refused_prompt_creates_no_job_and_is_logged_without_its_text(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "majicbot.content")
    async with Service.open(config, lambda: [StepEngine()]) as service:
        for prompt in ("a nude model", "a n.u.d.e model", "ｎｕｄｅ", "p0rn star", "s e x"):
            with pytest.raises(PromptRefused) as refused:
                await service.submit(request(prompt, idempotency_key=f"k-{prompt}"))
            assert (refused.value.key, dict(refused.value.params)) == ("error.prompt_refused", {})
        assert await _jobs_in_store(config) == 0
        # Admins are exempt (content.admins_exempt); the rest of the rules still apply to them.
        admin = await service.submit(request("a nude model", requester=requester("boss")))
        assert admin.job.status is JobStatus.QUEUED
        status = await service.status(requester("boss"))
    assert status.content is not None
    assert status.content.prompts_refused_last_hour == 5
    refusals = [r.getMessage() for r in caplog.records if "prompt refused" in r.getMessage()]
    assert refusals[0] == "prompt refused by term rule #0: user=telegram:u1 request=k-a nude model"
    assert not any("nude" in r.getMessage().split("request=")[0] for r in caplog.records)


async def test_a_flagged_image_is_withheld_by_default_and_kept_for_admins(config: Config) -> None:
    async with Service.open(config, lambda: [StepEngine()]) as service:
        job = await _finish(service, (await service.submit(request())).job.id)
        assert (job.status, job.flagged, job.delivery) == (
            JobStatus.SUCCEEDED,
            True,
            Delivery.WITHHELD,
        )
        assert job.safety_score is not None and job.safety_score > 0.99
        assert job.result_path is not None and job.result_path.is_file()  # kept
        assert not job.shows_image
        with pytest.raises(AccessDenied) as refused:
            service.content.check_deliverable(job, requester("u1"), unblurred=False)
        assert refused.value.key == "content.withheld"
        service.content.check_deliverable(job, requester("boss"), unblurred=True)
        status = await service.status(requester("boss"))
    assert status.content == ContentStatus(
        prompt_rules=len(DEFAULT_TERMS),
        image_check=SafetyState.READY,
        image_check_error=None,
        default_policy=ChatPolicy.BLOCK,
        prompts_refused_last_hour=0,
        images_flagged_last_hour=1,
        images_withheld_last_hour=1,
    )


async def test_chat_policies_decide_persist_and_are_for_admins(config: Config) -> None:
    in_chat = requester("u1")
    async with Service.open(config, lambda: [StepEngine()]) as service:
        with pytest.raises(AccessDenied):
            await service.content.set_policy(in_chat, ChatPolicy.ALLOW)
        boss = Requester(Platform.TELEGRAM, "boss", chat_id="c1")
        view = await service.content.set_policy(boss, ChatPolicy.SPOILER)
        assert (view.stored, view.effective) == (ChatPolicy.SPOILER, ChatPolicy.SPOILER)
        job = await _finish(service, (await service.submit(request())).job.id)
        assert (job.flagged, job.delivery) == (True, Delivery.SPOILER)
        with pytest.raises(AccessDenied) as refused:  # the original file cannot be blurred
            service.content.check_deliverable(job, in_chat, unblurred=True)
        assert refused.value.key == "content.spoiler_only"
        await service.content.set_policy(boss, ChatPolicy.ALLOW)
    async with Service.open(config, lambda: [StepEngine()]) as service:  # stored in SQLite
        assert service.content.policy_of(in_chat).stored is ChatPolicy.ALLOW
        job = await _finish(service, (await service.submit(request())).job.id)
        assert (job.flagged, job.delivery) == (True, Delivery.SHOW)
        spoiled = await _finish(service, (await service.submit(request(spoiler=True))).job.id)
        assert (spoiled.spoiler, spoiled.delivery) == (True, Delivery.SPOILER)
        # A reroll of a spoilered image is spoilered too.
        again = await service.reroll(spoiled.id, in_chat, spoiled.reply_to, variation=True)
        assert (await _finish(service, again.job.id)).delivery is Delivery.SPOILER
        view = await service.content.set_policy(
            Requester(Platform.TELEGRAM, "boss", chat_id="c1"), None
        )
        assert (view.stored, view.effective) == (None, ChatPolicy.BLOCK)


async def test_discord_channels_allow_only_when_age_restricted(config: Config) -> None:
    mod = Requester(Platform.DISCORD, "m", chat_id="55", guild_id="g", guild_admin=True)
    async with Service.open(config, lambda: [StepEngine()]) as service:
        with pytest.raises(InvalidRequest) as refused:
            await service.content.set_policy(mod, ChatPolicy.ALLOW)
        assert refused.value.key == "error.policy_needs_nsfw"
        nsfw_mod = Requester(
            Platform.DISCORD, "m", chat_id="56", guild_id="g", guild_admin=True, nsfw_channel=True
        )
        assert (await service.content.set_policy(nsfw_mod, ChatPolicy.ALLOW)).effective is (
            ChatPolicy.ALLOW
        )
        who = Requester(Platform.DISCORD, "u", chat_id="57", guild_id="g", nsfw_channel=True)
        job = await _finish(service, (await service.submit(request(requester=who))).job.id)
        assert (job.requester.nsfw_channel, job.delivery) == (True, Delivery.SHOW)


async def test_the_normal_classifier_flags_nothing(
    config: Config, normal_classifier_dir: Path
) -> None:
    passing = with_content(config, classifier_path=str(normal_classifier_dir))
    async with Service.open(passing, lambda: [StepEngine()]) as service:
        job = await _finish(service, (await service.submit(request())).job.id)
    assert (job.flagged, job.delivery) == (False, Delivery.SHOW)
    assert job.safety_score is not None and job.safety_score < 0.01


@pytest.mark.parametrize(
    ("unchecked", "delivery"),
    [("spoiler", Delivery.SPOILER), ("block", Delivery.WITHHELD), ("policy", Delivery.WITHHELD)],
)
async def test_missing_classifier_files_show_in_status_and_unchecked_decides(
    config: Config, tmp_path: Path, unchecked: str, delivery: Delivery
) -> None:
    missing = with_content(config, classifier_path=str(tmp_path / "nowhere"), unchecked=unchecked)
    async with Service.open(missing, lambda: [StepEngine()]) as service:
        job = await _finish(service, (await service.submit(request())).job.id)
        status = await service.status(requester("boss"))
    assert (job.flagged, job.safety_score, job.delivery) == (None, None, delivery)
    assert status.content is not None
    assert status.content.image_check is SafetyState.MISSING
    assert status.content.image_check_error == "config.json: missing; model.safetensors: missing"


async def test_with_the_check_off_only_the_users_spoiler_counts(config: Config) -> None:
    off = with_content(config, image_check=False)
    async with Service.open(off, lambda: [StepEngine()]) as service:
        plain = await _finish(service, (await service.submit(request())).job.id)
        hidden = await _finish(service, (await service.submit(request(spoiler=True))).job.id)
        status = await service.status(requester("boss"))
    assert (plain.flagged, plain.delivery) == (None, Delivery.SHOW)
    assert hidden.delivery is Delivery.SPOILER
    assert status.content is not None and status.content.image_check is SafetyState.OFF


async def test_a_version_3_database_migrates_and_keeps_its_jobs(tmp_path: Path) -> None:
    from backend.store import MIGRATIONS

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(f"{'; '.join(MIGRATIONS[:3])}; PRAGMA user_version = 3;")
        db.execute(
            "INSERT INTO jobs (id, platform, user_id, display_name, language, reply_chat_id, "
            "prompt, seed, steps, width, height, guidance, status, created_at) "
            "VALUES ('old', 'telegram', 'u', '', 'en', 'c', 'a fox', 1, 3, 64, 64, 3.5, "
            "'succeeded', 1.0)"
        )
    async with Store.open(path) as store:
        job = await store.get_job("old")
        assert await store.content.chat_policies() == []
    assert SCHEMA_VERSION == 5
    assert job is not None
    assert (job.spoiler, job.flagged, job.delivery, job.requester.nsfw_channel) == (
        False,
        None,
        Delivery.SHOW,
        False,
    )
