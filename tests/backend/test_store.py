"""The SQLite store on a real file: round trips, migrations, transitions, stats."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from backend.domain import (
    ChatPolicy,
    Delivery,
    GenerationParams,
    Job,
    JobStatus,
    MessageRef,
    Platform,
    ReplyTarget,
    Requester,
    Timings,
)
from backend.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    DuplicateIdempotencyKey,
    DuplicateJobId,
    Store,
)
from backend.store_parts import UserRecord


def make_job(job_id: str, user: str = "u1", created_at: float = 1000.0) -> Job:
    return Job(
        id=job_id,
        params=GenerationParams("a cat", 5, 4, 64, 64, 3.5),
        requester=Requester(Platform.DISCORD, user, "Name", chat_id="ch", guild_id="g"),
        reply_to=ReplyTarget("ch", message_id="m1", token="tok"),
        status=JobStatus.QUEUED,
        created_at=created_at,
        parent_job_id="parent",
    )


async def test_round_trip_lifecycle_and_transitions(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "jobs.sqlite3"
    async with Store.open(path) as store:
        job = make_job("abc")
        seq = await store.insert_job(job)
        assert await store.get_job("abc") == job
        with pytest.raises(DuplicateJobId):
            await store.insert_job(job)
        await store.mark_running("abc", "cuda:0", 1001.0)
        timings = Timings(wait_s=1.0, text_encode_s=0.5, denoise_s=2.0, decode_s=0.25)
        await store.mark_succeeded("abc", tmp_path / "abc.png", timings, 1004.0, True)
        done = await store.get_job("abc")
        history = [s for s, _ in await store.transitions("abc")]
        jobs = await store.jobs_in([JobStatus.SUCCEEDED], Platform.DISCORD)
    assert seq == 1
    assert done == Job(
        **{
            **job.__dict__,
            "status": JobStatus.SUCCEEDED,
            "started_at": 1001.0,
            "finished_at": 1004.0,
            "worker": "cuda:0",
            "result_path": tmp_path / "abc.png",
            "timings": timings,
            "prompt_truncated": True,
        }
    )
    assert history == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED]
    assert [j.id for _, j in jobs] == ["abc"]


async def test_schema_version_wal_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    async with Store.open(path) as store:
        await store.insert_job(make_job("a"))
    async with Store.open(path) as store:  # reopening does not migrate again
        assert (await store.get_job("a")) is not None
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="schema version 99, newer"):
        async with Store.open(path):
            pass


async def test_history_stats_undelivered_users(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        for i, user in enumerate(["a", "b", "a"]):
            await store.insert_job(make_job(f"j{i}", user, created_at=2000.0 + i))
        timings = Timings(text_encode_s=1.0, denoise_s=2.0, decode_s=1.0)
        await store.mark_succeeded("j0", tmp_path / "j0.png", timings, 3000.0, False)
        await store.mark_failed("j1", "error.oom", "CUDA OOM", 3001.0)
        await store.mark_cancelled("j2", 3002.0)
        await store.deliveries.mark_delivered("j1", 3003.0)
        history = [j.id for j in await store.history(Platform.DISCORD, user_id="a")]
        stats = await store.stats.finished(since=2999.0)
        late = await store.stats.finished(since=5000.0)
        undelivered = [j.id for j in await store.undelivered(Platform.DISCORD)]
        recent = await store.stats.recent_submissions(since=2001.0)
        record = UserRecord(Platform.TELEGRAM, "7", banned=True, hourly_quota=5,
                          defaults=(("steps", "20"),))  # fmt: skip
        await store.users.put(record)
        users = await store.users.all()
    assert history == ["j2", "j0"]
    assert (stats.succeeded, stats.failed, stats.mean_s_per_image) == (1, 1, 4.0)
    assert (late.succeeded, late.failed, late.mean_s_per_image) == (0, 0, None)
    assert undelivered == ["j0"]
    assert recent == [(Platform.DISCORD, "b", 2001.0), (Platform.DISCORD, "a", 2002.0)]
    assert users == [record]


async def test_idempotency_key_is_unique_and_a_v1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    with sqlite3.connect(path) as db:  # a file written by the previous release
        db.executescript(f"{MIGRATIONS[0]}; PRAGMA user_version = 1;")
    async with Store.open(path) as store:
        keyed = dataclasses.replace(make_job("k1"), idempotency_key="telegram:update:1")
        await store.insert_job(keyed)
        with pytest.raises(DuplicateIdempotencyKey):
            await store.insert_job(dataclasses.replace(keyed, id="k2"))
        await store.insert_job(make_job("n1"))  # jobs without a key never collide
        await store.insert_job(make_job("n2"))
        found = await store.job_by_key("telegram:update:1")
        missing = await store.job_by_key("telegram:update:2")
    assert found == keyed and missing is None


async def test_the_parts_share_the_connection(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "db.sqlite3") as store:
        await store.insert_job(make_job("a", created_at=10.0))
        await store.mark_succeeded("a", tmp_path / "a.png", Timings(denoise_s=1.0), 20.0, False)
        deliveries = store.deliveries
        assert await deliveries.set_reply_message("a", "m2")
        assert not await deliveries.set_reply_message("missing", "m2")
        assert [await deliveries.begin("a"), await deliveries.begin("a")] == [0, 1]
        await deliveries.failed("a")
        assert await deliveries.begin("a") == 1
        with pytest.raises(KeyError):
            await deliveries.begin("missing")
        assert await deliveries.add_posted("a", MessageRef("ch", "r1"))
        assert not await deliveries.add_posted("missing", MessageRef("ch", "r1"))
        assert await deliveries.posted("a") == {MessageRef("ch", "r1")}
        await store.content.set_verdict("a", True, 0.9, Delivery.WITHHELD)
        assert await store.content.counts(since=15.0) == (1, 1)
        await store.content.put_chat_policy(Platform.DISCORD, "ch", ChatPolicy.BLOCK, "x", 1.0)
        policies = await store.content.chat_policies()
        await store.content.put_chat_policy(Platform.DISCORD, "ch", None, "x", 2.0)
        assert await store.content.chat_policies() == []
        assert await store.retention.remembered_before(11.0) == ["a"]
        assert await store.retention.drop_tokens(Platform.DISCORD, 11.0) == 1
        assert await store.retention.forget("a") == tmp_path / "a.png"
        await store.retention.scrub()
        assert await store.retention.remembered_before(11.0) == []
        job = await store.get_job("a")
    assert policies == [(Platform.DISCORD, "ch", ChatPolicy.BLOCK)]
    assert job is not None and job.reply_to.message_id == "m2" and job.reply_to.token is None
    assert (job.flagged, job.safety_score, job.delivery) == (True, 0.9, Delivery.WITHHELD)
    assert job.params.prompt == "" and job.result_path is None
