"""The rules behind the facade: status for admins, cancel_latest, the history cap, stored bans,
guild admins, idempotent submits, and honest estimates (with the protocol-level ``StepEngine``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from backend.config import Config
from backend.domain import (
    CLI_REQUESTER,
    HISTORY_MAX,
    JobStatus,
    Platform,
    Progress,
    Queued,
    Requester,
    Timings,
)
from backend.errors import AccessDenied, LimitReached, NothingToCancel
from backend.service import Service
from backend.store import Store
from tests.backend.engines import StepEngine
from tests.backend.helpers import collect, make_config, request, requester, with_section

# Every StepEngine generation "measures" this: 1 s encode, 2 s per step, 3 s decode.
TIMINGS = Timings(text_encode_s=1.0, denoise_s=6.0, decode_s=3.0)  # for 3 steps: a 10 s job
JOB_S = 10.0


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return with_section(make_config(tmp_path / "data"), "telegram", admins=("boss",))


def guild_member(user: str, guild: str, *, admin: bool = False) -> Requester:
    return requester(user, Platform.DISCORD, guild_id=guild, guild_admin=admin)


async def test_status_is_for_admins_only(config: Config) -> None:
    async with Service.open(config, lambda: []) as service:
        for who in (requester("u1"), guild_member("mod", "g1", admin=True)):
            with pytest.raises(AccessDenied) as refused:
                await service.status(who)
            assert refused.value.key == "status.admin_only"
        assert (await service.status(requester("boss"))).accepting
        assert (await service.status(CLI_REQUESTER)).queue_length == 0


async def test_cancel_latest_takes_the_newest_queued_or_running_job(config: Config) -> None:
    step_gate = threading.Event()
    engine = StepEngine(step_gate=step_gate)
    async with Service.open(config, lambda: [engine]) as service:
        running = await service.submit(request("one"))
        await collect_until_progress(service, running.job.id)
        second = await service.submit(request("two"))
        third = await service.submit(request("three"))
        other = await service.submit(request("theirs", user="u2"))
        same_id_elsewhere = requester("u1", Platform.DISCORD)
        with pytest.raises(NothingToCancel) as nothing:
            await service.cancel_latest(same_id_elsewhere)
        assert (await service.cancel_latest(requester())).id == third.job.id
        assert (await service.cancel_latest(requester())).id == second.job.id
        stopping = await service.cancel_latest(requester())
        assert (stopping.id, stopping.status) == (running.job.id, JobStatus.RUNNING)
        await collect(service.subscribe(running.job.id))
        with pytest.raises(NothingToCancel):
            await service.cancel_latest(requester())
        step_gate.set()
        theirs = await collect(service.subscribe(other.job.id))  # someone else's job runs
    assert type(theirs[-1]).__name__ == "Succeeded"
    assert nothing.value.key == "cancel.nothing"


async def collect_until_progress(service: Service, job_id: str) -> None:
    async for event in service.subscribe(job_id):
        if isinstance(event, Progress):
            return


async def test_history_is_capped_in_one_place(config: Config) -> None:
    config = with_section(config, "limits", per_user_queue=50)
    async with Service.open(config, lambda: []) as service:
        for n in range(HISTORY_MAX + 5):
            await service.submit(request(f"job {n}"))
        everything = await service.history(requester(), limit=1000)
        few = await service.history(requester(), limit=3)
        none = await service.history(requester(), limit=0)
    assert len(everything) == HISTORY_MAX == 20
    assert [j.params.prompt for j in few] == ["job 24", "job 23", "job 22"]
    assert len(none) == 1


async def test_a_stored_ban_refuses_every_command(config: Config) -> None:
    async with Service.open(config, lambda: []) as service:
        job = (await service.submit(request())).job
        await service.accounts.set_banned(requester("boss"), "u1", banned=True)
        me = requester()

        async def check() -> None:
            service.check_access(me)

        async def settings() -> None:
            service.accounts.settings(me)

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "check_access": check,
            "history": lambda: service.history(me),
            "cancel": lambda: service.cancel(job.id, me),
            "cancel_latest": lambda: service.cancel_latest(me),
            "job": lambda: service.job(job.id, me),
            "settings": settings,
        }
        keys = {}
        for name, call in calls.items():
            with pytest.raises(AccessDenied) as refused:
                await call()
            keys[name] = refused.value.key
        still_queued = service.waiting(job.id)
    assert keys == dict.fromkeys(calls, "error.banned")
    assert still_queued is not None


async def test_guild_admins_manage_their_guild_only(config: Config) -> None:
    config = with_section(config, "limits", per_user_queue=1)
    gate = threading.Event()
    async with Service.open(config, lambda: [StepEngine(load_gate=gate)]) as service:
        here = (await service.submit(request(requester=guild_member("ann", "g1")))).job
        there = (await service.submit(request(requester=guild_member("bob", "g2")))).job
        mod = guild_member("mod", "g1", admin=True)
        with pytest.raises(AccessDenied) as other_guild:
            await service.cancel(there.id, mod)
        cancelled = await service.cancel(here.id, mod)
        service.check_can_manage(here, mod)
        with pytest.raises(AccessDenied) as no_ban:
            await service.accounts.set_banned(mod, "bob", banned=True)
        await service.submit(request(requester=mod))
        with pytest.raises(LimitReached) as capped:
            await service.submit(request(requester=mod))
        admin = service.is_admin(mod)
        gate.set()
    assert other_guild.value.key == "error.not_your_job"
    assert cancelled.status is JobStatus.CANCELLED
    assert no_ban.value.key == "error.admin_only"
    assert capped.value.key == "error.user_queue_full"
    assert admin is False


async def test_a_redelivered_submit_returns_the_same_job(config: Config) -> None:
    async with Service.open(config, lambda: []) as service:
        key = "telegram:update:123"
        first = await service.submit(request(idempotency_key=key))
        again = await service.submit(request(idempotency_key=key))
        both = await asyncio.gather(
            service.submit(request(idempotency_key="telegram:update:124")),
            service.submit(request(idempotency_key="telegram:update:124")),
        )
        with pytest.raises(AccessDenied) as someone_else:
            await service.submit(request(user="u2", idempotency_key=key))
        other = await service.submit(request(idempotency_key="telegram:update:125"))
    assert again == dataclasses.replace(first, existing=True) and again.position == 1
    assert not first.existing
    assert both[0].job.id == both[1].job.id
    assert sorted(s.existing for s in both) == [False, True]
    assert other.job.id != first.job.id
    assert someone_else.value.key == "error.not_your_job"
    async with Store.open(config.db_path) as store:
        rows = await store.jobs_in([JobStatus.QUEUED])
    assert len(rows) == 3  # one row per key


async def test_estimates_follow_measured_times_and_fall_smoothly(config: Config) -> None:
    config = with_section(config, "limits", default_steps=3)
    engine = StepEngine(timings=TIMINGS)
    jobs = 8
    async with Service.open(config, lambda: [engine]) as service:
        warm = await service.submit(request("warm", user="w"))
        await collect(service.subscribe(warm.job.id))  # one job measured: 1 + 3 × 2 + 3 s
        subs = [await service.submit(request(user=f"u{n}")) for n in range(jobs)]
        last = subs[-1].job.id
        samples: list[Queued] = []
        version = service.queue_version
        while (waiting := service.waiting(last)) is not None:
            samples.append(waiting)
            version = await service.queue_moved(version)
        events = await collect(service.subscribe(last))
    first = subs[-1]
    assert first.eta_s is not None and first.position > 1
    assert first.position * JOB_S <= first.eta_s <= (first.position + 1) * JOB_S
    assert len(samples) >= 4
    for sample in samples:  # the queue ahead at 10 s a job, plus at most what is left running
        assert sample.eta_s is not None
        assert sample.position * JOB_S <= sample.eta_s <= (sample.position + 1) * JOB_S
    etas = [s.eta_s for s in samples if s.eta_s is not None]
    assert etas == sorted(etas, reverse=True)  # never up
    assert all(a - b <= JOB_S for a, b in itertools.pairwise(etas))  # never a leap down
    progress = [(e.step, e.eta_s) for e in events if isinstance(e, Progress)]
    assert progress == [(1, 2 * 2.0 + 3.0), (2, 2.0 + 3.0), (3, 3.0)]  # decode still ahead
