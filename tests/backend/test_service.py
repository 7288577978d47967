"""Service behaviour with the protocol-level ``StepEngine`` (scheduling, cancel, limits, events).

End-to-end runs with the real tiny FLUX pipeline are in ``test_service_tinyflux.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from backend.config import Config
from backend.domain import (
    CLI_REQUESTER,
    Cancelled,
    Failed,
    HistoryScope,
    JobStatus,
    MessageRef,
    Platform,
    Progress,
    Queued,
    ReplyTarget,
    Started,
    Succeeded,
)
from backend.engine.protocol import Engine
from backend.errors import (
    AccessDenied,
    JobNotCancellable,
    JobNotFound,
    LimitReached,
    ModelFilesMissing,
    OutOfMemory,
    ServiceStopping,
)
from backend.images import read_parameters
from backend.service import Service
from tests.backend.engines import StepEngine
from tests.backend.helpers import (
    collect,
    first_matching,
    make_config,
    request,
    requester,
    until_waiting,
    with_section,
)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


async def test_submit_commits_then_events_end_with_a_stored_png(config: Config) -> None:
    gate = threading.Event()
    engine = StepEngine(load_gate=gate)
    async with Service.open(config, lambda: [engine]) as service:
        submission = await service.submit(request("a red fox", seed=7, steps=3))
        stored = await service.job(submission.job.id)
        assert stored == submission.job
        assert stored.status is JobStatus.QUEUED
        subscription = service.subscribe(submission.job.id)
        first = await anext(subscription)
        gate.set()
        events = await collect(subscription)
    job_id = submission.job.id
    assert isinstance(first, Queued) and first.position == 1
    running = [e for e in events if not isinstance(e, Queued)][:-1]
    assert running[0] == Started(job_id, "cpu")
    assert [(p.job_id, p.step, p.total) for p in running[1:] if isinstance(p, Progress)] == [
        (job_id, 1, 3),
        (job_id, 2, 3),
        (job_id, 3, 3),
    ]
    # The first job has nothing measured yet: at step == total (decoding) no estimate, not 0 s.
    assert len(running) == 4 and isinstance(running[3], Progress) and running[3].eta_s is None
    done = events[-1]
    assert isinstance(done, Succeeded)
    assert done.image_path.parent.parent == config.outputs_dir
    assert done.image_path.name == f"{job_id}.png"
    assert read_parameters(done.image_path) == (
        "a red fox\nSteps: 3, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
        "Distilled CFG Scale: 3.5, Seed: 7, Size: 64x64, Model: step-engine, Profile: test, "
        "Version: majicbot 0.1.0"
    )
    assert len(engine.threads) == 1 and threading.get_ident() not in engine.threads


async def test_job_ids_are_short_and_url_safe(config: Config) -> None:
    async with Service.open(config, lambda: []) as service:
        ids = {(await service.submit(request(user=f"u{i}"))).job.id for i in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 9 and i.isalnum() and i.isascii() for i in ids)


async def test_fair_order_round_robin_across_users_fifo_within(config: Config) -> None:
    gate = threading.Event()
    engine = StepEngine(load_gate=gate)
    order = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 1)]
    async with Service.open(config, lambda: [engine]) as service:
        subs = {}
        for user, n in order:
            sub = await service.submit(request(f"{user}{n}", user=user, seed=n))
            subs[sub.job.id] = sub
        positions = {s.job.params.prompt: s.position for s in subs.values()}
        gate.set()
        for job_id in subs:
            await collect(service.subscribe(job_id))
    ran = [p.prompt for p in engine.generated]
    assert ran == ["a1", "b1", "c1", "a2", "b2", "a3"]
    # Positions at submit time (before later jobs were known): a1 1, a2 2, a3 3, b1 2, b2 4, c1 3.
    assert positions == {"a1": 1, "a2": 2, "a3": 3, "b1": 2, "b2": 4, "c1": 3}


async def test_positions_are_pulled_and_never_pushed(config: Config) -> None:
    factory_gate, load_gate = threading.Event(), threading.Event()
    engine = StepEngine(load_gate=load_gate)

    def slow_factory() -> Sequence[Engine]:
        factory_gate.wait(30)
        return [engine]

    async with Service.open(config, slow_factory) as service:
        first = await service.submit(request(user="a"))
        second = await service.submit(request(user="b"))
        events = service.subscribe(second.job.id)
        assert await anext(events) == Queued(second.job.id, 2, None, 0.0)
        factory_gate.set()
        warming = await until_waiting(service, second.job.id, lambda q: q.warming_percent != 0.0)
        assert warming == Queued(second.job.id, 2, None, 47.5)  # 0.95 × 50 % of the bytes read
        seen = service.queue_version
        later = asyncio.create_task(service.queue_moved(seen + 1))  # every 2nd move only
        await service.cancel(first.job.id, requester("a"))
        assert await service.queue_moved(seen) == seen + 1
        assert service.waiting(second.job.id) == Queued(second.job.id, 1, None, 47.5)
        assert not later.done()
        load_gate.set()  # the engine becomes ready: a move
        assert await later >= seen + 2
        rest = await collect(events)
        assert service.waiting(second.job.id) is None
    assert [type(e) for e in rest] == [Started, Progress, Progress, Progress, Succeeded]


async def test_late_subscriber_first_gets_current_state(config: Config) -> None:
    step_gate = threading.Event()
    engine = StepEngine(step_gate=step_gate)
    async with Service.open(config, lambda: [engine]) as service:
        sub = await service.submit(request(steps=4))
        early = service.subscribe(sub.job.id)
        await first_matching(early, lambda e: isinstance(e, Progress) and e.step == 1)
        late = service.subscribe(sub.job.id)
        current = await anext(late)
        assert isinstance(current, Progress) and (current.step, current.total) == (1, 4)
        step_gate.set()
        tail = await collect(late)
        await collect(early)
        after = await collect(service.subscribe(sub.job.id))
    assert [type(e) for e in tail][-1] is Succeeded
    assert len(after) == 1 and isinstance(after[0], Succeeded)


async def test_cancel_queued_is_instant_and_final(config: Config) -> None:
    gate = threading.Event()
    async with Service.open(config, lambda: [StepEngine(load_gate=gate)]) as service:
        sub = await service.submit(request())
        events = service.subscribe(sub.job.id)
        await anext(events)
        cancelled = await service.cancel(sub.job.id, requester())
        assert cancelled.status is JobStatus.CANCELLED
        assert await collect(events) == [Cancelled(sub.job.id)]
        assert (await service.job(sub.job.id)).status is JobStatus.CANCELLED
        with pytest.raises(JobNotCancellable) as info:
            await service.cancel(sub.job.id, requester())
        assert info.value.params == {"job_id": sub.job.id, "status": "cancelled"}
        gate.set()


async def test_cancel_running_stops_at_next_step(config: Config) -> None:
    step_gate = threading.Event()
    engine = StepEngine(step_gate=step_gate)
    async with Service.open(config, lambda: [engine]) as service:
        sub = await service.submit(request(steps=5))
        events = service.subscribe(sub.job.id)
        await first_matching(events, lambda e: isinstance(e, Progress) and e.step == 1)
        returned = await service.cancel(sub.job.id, requester())
        assert returned.status is JobStatus.RUNNING
        rest = await collect(events)
        assert rest == [Cancelled(sub.job.id)]
        stored = await service.job(sub.job.id)
        # The worker keeps serving after a cancellation.
        nxt = await service.submit(request(steps=1))
        step_gate.set()
        done = await collect(service.subscribe(nxt.job.id))
    assert stored.status is JobStatus.CANCELLED and stored.result_path is None
    assert isinstance(done[-1], Succeeded)
    assert engine.generated[-1].steps == 1 and len(engine.generated) == 1


async def test_only_owner_or_admin_may_cancel(config: Config) -> None:
    config = with_section(config, "telegram", admins=("boss",))
    gate = threading.Event()
    async with Service.open(config, lambda: [StepEngine(load_gate=gate)]) as service:
        sub = await service.submit(request(user="owner"))
        with pytest.raises(AccessDenied) as info:
            await service.cancel(sub.job.id, requester("stranger"))
        assert (info.value.key, dict(info.value.params)) == (
            "error.not_your_job",
            {"job_id": sub.job.id},
        )
        discord_same_id = requester("owner", platform=Platform.DISCORD)
        with pytest.raises(AccessDenied):
            await service.cancel(sub.job.id, discord_same_id)
        assert (await service.cancel(sub.job.id, requester("boss"))).status is JobStatus.CANCELLED
        with pytest.raises(JobNotFound) as missing:
            await service.cancel("nope", requester("boss"))
        assert missing.value.params == {"job_id": "nope"}
        gate.set()


async def test_engine_error_fails_that_job_and_the_worker_keeps_serving(config: Config) -> None:
    engine = StepEngine(failures=[OutOfMemory("CUDA out of memory. Tried to allocate 2 GiB")])
    async with Service.open(config, lambda: [engine]) as service:
        bad = await service.submit(request(user="a"))
        good = await service.submit(request(user="b"))
        bad_events = await collect(service.subscribe(bad.job.id))
        good_events = await collect(service.subscribe(good.job.id))
        stored = await service.job(bad.job.id)
    assert bad_events[-1] == Failed(
        bad.job.id, "error.oom", "CUDA out of memory. Tried to allocate 2 GiB"
    )
    assert (stored.status, stored.error_key) == (JobStatus.FAILED, "error.oom")
    assert isinstance(good_events[-1], Succeeded)


async def test_unexpected_exception_fails_with_engine_key(config: Config) -> None:
    engine = StepEngine(failures=[ValueError("shape mismatch")])
    async with Service.open(config, lambda: [engine]) as service:
        sub = await service.submit(request())
        events = await collect(service.subscribe(sub.job.id))
    assert events[-1] == Failed(sub.job.id, "error.engine", "ValueError('shape mismatch')")


async def test_two_workers_on_the_same_device_name_both_serve(config: Config) -> None:
    gate = threading.Event()
    one, two = StepEngine("cpu", step_gate=gate), StepEngine("cpu", step_gate=gate)
    async with Service.open(config, lambda: [one, two]) as service:
        a = await service.submit(request(user="a"))
        b = await service.submit(request(user="b"))
        await first_matching(service.subscribe(a.job.id), lambda e: isinstance(e, Progress))
        await first_matching(service.subscribe(b.job.id), lambda e: isinstance(e, Progress))
        status = await service.status(
            CLI_REQUESTER
        )  # both run at once: each engine holds after step 1
        gate.set()
        await collect(service.subscribe(a.job.id))
        await collect(service.subscribe(b.job.id))
        jobs = [await service.job(a.job.id), await service.job(b.job.id)]
    assert sorted(r.worker for r in status.running) == ["cpu#1", "cpu#2"]
    assert sorted(j.worker or "" for j in jobs) == ["cpu#1", "cpu#2"]
    assert one.threads and two.threads and not one.threads & two.threads


async def test_all_engines_failed_jobs_stay_queued_and_say_why(config: Config) -> None:
    broken = StepEngine(load_error=ModelFilesMissing("missing models/x/ae.safetensors"))
    async with Service.open(config, lambda: [broken]) as service:
        sub = await service.submit(request())
        settled = await until_waiting(service, sub.job.id, lambda q: q.unavailable is not None)
        status = await service.status(CLI_REQUESTER)
    assert settled == Queued(sub.job.id, 1, None, None, unavailable="error.model_files")
    assert [e.error for e in status.engines] == ["missing models/x/ae.safetensors"]
    assert status.queue_length == 1


async def test_engine_factory_failure_shows_in_status(config: Config) -> None:
    def explode() -> Sequence[Engine]:
        raise RuntimeError("no CUDA devices and cpu not allowed")

    async with Service.open(config, explode) as service:
        sub = await service.submit(request())
        settled = await until_waiting(service, sub.job.id, lambda q: q.unavailable is not None)
        status = await service.status(CLI_REQUESTER)
    assert settled == Queued(sub.job.id, 1, None, None, unavailable="error.engine_unavailable")
    assert [(e.device, e.error) for e in status.engines] == [
        ("(engine factory)", "RuntimeError('no CUDA devices and cpu not allowed')")
    ]


# ---- limits and access ---------------------------------------------------------------------------


async def test_per_user_queue_cap_hourly_quota_and_global_cap(config: Config) -> None:
    config = with_section(config, "limits", per_user_queue=2, per_user_hourly=3, queue_max=4)
    config = with_section(config, "telegram", admins=("boss",))
    gate = threading.Event()
    async with Service.open(config, lambda: [StepEngine(load_gate=gate)]) as service:
        first = await service.submit(request(user="a"))
        await service.submit(request(user="a"))
        with pytest.raises(LimitReached) as full:
            await service.submit(request(user="a"))
        assert (full.value.key, dict(full.value.params)) == ("error.user_queue_full", {"limit": 2})
        await service.cancel(first.job.id, requester("a"))
        await service.submit(request(user="a"))  # a cancelled job frees a queue slot...
        await service.cancel((await service.history(requester("a")))[0].id, requester("a"))
        with pytest.raises(LimitReached) as hourly:  # ...but still counts for the hour
            await service.submit(request(user="a"))
        assert hourly.value.key == "error.hourly_quota"
        assert hourly.value.params["limit"] == 3
        assert 3500 <= hourly.value.params["retry_after_s"] <= 3600
        await service.submit(request(user="b"))
        await service.submit(request(user="c"))
        await service.submit(request(user="d"))
        with pytest.raises(LimitReached) as queue_full:
            await service.submit(request(user="e"))
        assert (queue_full.value.key, dict(queue_full.value.params)) == (
            "error.queue_full",
            {"limit": 4},
        )
        for _ in range(5):  # admins bypass every cap
            await service.submit(request(user="boss"))
        gate.set()


async def test_access_denied_for_banned_and_not_allowlisted(config: Config) -> None:
    config = with_section(
        config, "telegram", banned_users=("bad",), allowed_users=("ok",), admins=("boss",)
    )
    async with Service.open(config, lambda: []) as service:
        with pytest.raises(AccessDenied) as banned:
            await service.submit(request(user="bad"))
        with pytest.raises(AccessDenied) as stranger:
            await service.submit(request(user="who"))
        await service.submit(request(user="ok"))
        await service.submit(request(user="boss"))
    assert banned.value.key == "error.banned"
    assert (stranger.value.key, dict(stranger.value.params)) == (
        "error.not_allowed",
        {"where": "user"},
    )


async def test_stopping_service_refuses_new_jobs(config: Config) -> None:
    async with Service.open(config, lambda: []) as service:
        pass
    with pytest.raises(ServiceStopping) as info:
        await service.submit(request())
    assert info.value.key == "error.stopping"


# ---- history, reroll, delivery -------------------------------------------------------------------


async def test_history_scopes_and_reroll(config: Config) -> None:
    config = with_section(config, "telegram", admins=("boss",))
    async with Service.open(config, lambda: [StepEngine()]) as service:
        mine = await service.submit(request("mine", user="a", seed=10))
        await service.submit(request("theirs", user="b"))
        await collect(service.subscribe(mine.job.id))
        with pytest.raises(AccessDenied) as not_on_a_message:  # b names a's job by its id
            await service.reroll(mine.job.id, requester("b"), ReplyTarget("c1"), variation=True)
        await service.deliveries.attach_result(mine.job.id, "m1")
        photo = MessageRef("c1", "m1")  # b presses the buttons on a's image in chat c1
        again = await service.reroll(
            mine.job.id, requester("b"), ReplyTarget("c1"), variation=True, where=photo
        )
        fresh = await service.reroll(
            mine.job.id, requester("b"), ReplyTarget("c1"), variation=False, where=photo
        )
        own = await service.history(requester("a"))
        with pytest.raises(AccessDenied) as denied:
            await service.history(requester("a"), HistoryScope.CHAT)
        chat = await service.history(requester("boss"), HistoryScope.CHAT, limit=3)
        everyone = await service.history(requester("boss"), HistoryScope.ALL)
    assert not_on_a_message.value.key == "error.not_your_job"
    assert [j.params.prompt for j in own] == ["mine"]
    assert denied.value.key == "error.admin_only"
    assert [j.params.prompt for j in chat] == ["mine", "mine", "theirs"]
    assert len(everyone) == 4
    assert again.job.params == dataclasses.replace(mine.job.params, seed=11)
    assert again.job.parent_job_id == mine.job.id and again.job.requester == requester("b")
    assert fresh.job.params.prompt == "mine" and fresh.job.parent_job_id == mine.job.id


async def test_undelivered_until_marked(config: Config) -> None:
    engine = StepEngine(failures=[OutOfMemory("oom")])
    async with Service.open(config, lambda: [engine]) as service:
        bad = await service.submit(request(user="a"))
        good = await service.submit(request(user="b"))
        await collect(service.subscribe(bad.job.id))
        await collect(service.subscribe(good.job.id))
        before = [j.id for j in await service.deliveries.undelivered(Platform.TELEGRAM)]
        await service.deliveries.mark_delivered(bad.job.id)
        after = [j.id for j in await service.deliveries.undelivered(Platform.TELEGRAM)]
        assert await service.deliveries.undelivered(Platform.DISCORD) == []
        with pytest.raises(JobNotFound):
            await service.deliveries.mark_delivered("missing")
    assert before == [bad.job.id, good.job.id]
    assert after == [good.job.id]


async def test_status_snapshot(config: Config) -> None:
    gate = threading.Event()
    engine = StepEngine(step_gate=gate)
    async with Service.open(config, lambda: [engine]) as service:
        running = await service.submit(request(user="a", steps=3))
        await service.submit(request(user="b"))
        await first_matching(service.subscribe(running.job.id), lambda e: isinstance(e, Progress))
        status = await service.status(CLI_REQUESTER)
        gate.set()
        await collect(service.subscribe(running.job.id))
        after = await service.status(CLI_REQUESTER)
    assert status.queue_length == 1 and status.accepting
    assert [(r.job_id, r.worker, r.step, r.total) for r in status.running] == [
        (running.job.id, "cpu", 1, 3)
    ]
    assert status.engines[0].ready
    assert status.process_rss_bytes > 10_000_000
    names = [name for name, _ in status.versions]
    assert names[:2] == ["python", "majicbot"]
    assert ("torch" in names) == ("torch" in sys.modules)  # reported, never imported for it
    assert after.done_last_hour >= 1 and after.mean_s_per_image_last_hour is not None


async def test_stored_bans_and_quota_override_persist(config: Config) -> None:
    config = with_section(config, "telegram", admins=("boss",))
    boss = requester("boss")
    async with Service.open(config, lambda: []) as service:
        await service.accounts.set_banned(boss, "spammer", banned=True)
        await service.accounts.set_hourly_quota(boss, "slow", 1)
        with pytest.raises(AccessDenied) as banned:
            await service.submit(request(user="spammer"))
        await service.submit(request(user="slow"))
        with pytest.raises(LimitReached) as quota:
            await service.submit(request(user="slow"))
        with pytest.raises(AccessDenied) as not_admin:
            await service.accounts.set_hourly_quota(requester("slow"), "slow", 100)
    assert banned.value.key == "error.banned"
    assert (quota.value.key, quota.value.params["limit"]) == ("error.hourly_quota", 1)
    assert not_admin.value.key == "error.admin_only"
    async with Service.open(config, lambda: []) as service:  # kept in SQLite across restarts
        with pytest.raises(AccessDenied):
            await service.submit(request(user="spammer"))
