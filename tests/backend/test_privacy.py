"""Privacy by default: private file modes, Delete forgets, retention, Discord tokens dropped,
and buttons bound to the message they are on (the backend's half; the adapters' is in
``tests/telegram/test_security.py`` and ``tests/discord/test_security.py``)."""

from __future__ import annotations

import dataclasses
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from PIL import Image

from backend.config import Config
from backend.domain import JobStatus, MessageRef, Platform, ReplyTarget, Requester
from backend.errors import AccessDenied
from backend.images import read_parameters, write_png_sync
from backend.service import Service
from backend.store import Store
from tests.backend.engines import StepEngine
from tests.backend.helpers import collect, make_config, request, requester, with_section
from tests.backend.test_store import make_job
from tests.log_scan import PROMPT_MARKER

PROMPT = f"a private prompt about my cat {PROMPT_MARKER}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


async def test_database_and_folder_are_private_even_if_made_public_before(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    path = data / "majicbot.sqlite3"
    async with Store.open(path) as store:
        await store.insert_job(make_job("a"))
        files = {p.name: mode(p) for p in data.iterdir()}
    assert mode(data) == 0o700
    assert files == {
        "majicbot.sqlite3": 0o600,
        "majicbot.sqlite3-wal": 0o600,
        "majicbot.sqlite3-shm": 0o600,
    }


def test_images_and_their_folders_are_private(tmp_path: Path) -> None:
    path = tmp_path / "outputs" / "2026-12-01" / "abc.png"
    write_png_sync(Image.new("RGB", (8, 8)), path, f"{PROMPT}\nSteps: 3")
    assert [mode(path), mode(path.parent), mode(path.parent.parent)] == [0o600, 0o700, 0o700]
    assert [p.name for p in path.parent.iterdir()] == ["abc.png"]  # no temp file left


async def finished_with_photo(service: Service, chat: str = "c1") -> tuple[str, MessageRef]:
    """A succeeded job of u1 whose image was posted as message m1 of ``chat``."""
    job = (await service.submit(request(PROMPT))).job
    await collect(service.subscribe(job.id))
    await service.deliveries.attach_result(job.id, "m1", chat)
    return job.id, MessageRef(chat, "m1")


async def test_delete_forgets_the_prompt_and_deletes_the_image(config: Config) -> None:
    async with Service.open(config, lambda: [StepEngine()]) as service:
        job_id, photo = await finished_with_photo(service)
        before = await service.job(job_id)
        assert before.result_path is not None and before.result_path.exists()
        assert read_parameters(before.result_path) is not None
        await service.delete(job_id, requester("u1"), photo)
        after = await service.job(job_id)
        again = await service.delete(job_id, requester("u1"), photo)  # a second press: harmless
        on_disk = b"".join(  # the database, its write-ahead log and shared memory, while open
            file.read_bytes() for file in config.db_path.parent.glob("majicbot.sqlite3*")
        )
    assert not before.result_path.exists()
    assert (after.params.prompt, after.requester.display_name, after.result_path) == ("", "", None)
    kept = dataclasses.replace(before, result_path=None)
    assert after == dataclasses.replace(
        kept,
        params=dataclasses.replace(before.params, prompt=""),
        requester=dataclasses.replace(before.requester, display_name=""),
    )
    assert again.status is JobStatus.SUCCEEDED
    assert PROMPT.encode() not in on_disk  # not in free pages, not in the write-ahead log


async def test_forged_buttons_are_refused_and_change_nothing(config: Config) -> None:
    config = with_section(config, "telegram", admins=("boss",))
    async with Service.open(config, lambda: [StepEngine()]) as service:
        job_id, photo = await finished_with_photo(service)
        other_chat = MessageRef("c2", "m1")  # same message id, another chat
        other_message = MessageRef("c1", "m9")
        bob = requester("bob")
        refusals = {}
        attempts: dict[str, Callable[[], Awaitable[object]]] = {
            "delete by someone else": lambda: service.delete(job_id, bob, photo),
            "delete from another chat": lambda: service.delete(job_id, requester("u1"), other_chat),
            "delete from another message": lambda: service.delete(job_id, bob, other_message),
            "admin delete from another chat": lambda: service.delete(
                job_id, requester("boss"), other_chat
            ),
            "reroll from another chat": lambda: service.reroll(
                job_id, bob, ReplyTarget("c2"), variation=False, where=other_chat
            ),
            "cancel from the photo": lambda: service.cancel(job_id, requester("u1"), photo),
        }
        for name, attempt in attempts.items():
            with pytest.raises(AccessDenied) as refused:
                await attempt()
            refusals[name] = refused.value.key
        unchanged = await service.job(job_id)
        history = await service.history(requester("bob"))
    assert refusals == {
        "delete by someone else": "error.not_your_job",
        "delete from another chat": "error.wrong_message",
        "delete from another message": "error.wrong_message",
        "admin delete from another chat": "error.wrong_message",
        "reroll from another chat": "error.wrong_message",
        "cancel from the photo": "error.wrong_message",
    }
    assert unchanged.params.prompt == PROMPT and unchanged.result_path is not None
    assert unchanged.result_path.exists()
    assert history == []  # no reroll slipped through


async def test_retention_forgets_old_jobs_only(config: Config) -> None:
    config = with_section(config, "storage", keep_days=2)
    async with Service.open(config, lambda: [StepEngine()]) as service:
        job_id, _ = await finished_with_photo(service)
        path = (await service.job(job_id)).result_path
        assert path is not None
        retention = service._retention
        assert await retention.purge(time.time() + 1 * 86400) == 0
        kept = await service.job(job_id)
        assert await retention.purge(time.time() + 3 * 86400) == 1
        gone = await service.job(job_id)
        assert await retention.purge(time.time() + 3 * 86400) == 0  # nothing left to forget
    assert kept.params.prompt == PROMPT and path.exists() is False
    assert (gone.params.prompt, gone.result_path, gone.status) == ("", None, JobStatus.SUCCEEDED)


async def test_keep_days_zero_keeps_everything(config: Config) -> None:
    config = with_section(config, "storage", keep_days=0)
    async with Service.open(config, lambda: [StepEngine()]) as service:
        job_id, _ = await finished_with_photo(service)
        assert await service._retention.purge(time.time() + 10_000 * 86400) == 0
        assert (await service.job(job_id)).params.prompt == PROMPT


async def test_discord_tokens_are_dropped_on_delivery_and_after_15_minutes(
    config: Config,
) -> None:
    discord = Requester(Platform.DISCORD, "7", chat_id="c1", guild_id="g1")
    async with Service.open(config, lambda: [StepEngine()]) as service:
        delivered = await service.submit(
            dataclasses.replace(request(requester=discord), reply_to=ReplyTarget("c1", token="T1"))
        )
        waiting = await service.submit(
            dataclasses.replace(
                request(requester=dataclasses.replace(discord, user_id="8")),
                reply_to=ReplyTarget("c1", token="T2"),
            )
        )
        await collect(service.subscribe(delivered.job.id))
        await service.deliveries.mark_delivered(delivered.job.id)
        first = (await service.job(delivered.job.id)).reply_to.token
        await collect(service.subscribe(waiting.job.id))
        fresh = (await service.job(waiting.job.id)).reply_to.token
        await service._retention.purge(time.time() + 16 * 60)
        expired = (await service.job(waiting.job.id)).reply_to.token
    assert (first, fresh, expired) == (None, "T2", None)
