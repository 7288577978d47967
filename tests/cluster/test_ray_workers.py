"""The service with its workers as Ray actors: two CPU actors, each running the real tiny FLUX
in its own process, behind the unchanged fair queue, store and events.

One service (and its two actors) serves every test of this module, in order: loading torch and
diffsynth in a new process costs seconds on CI, so the actors are started once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from backend.cluster.ray_cluster import RayCluster
from backend.cluster.remote_engine import RayEngine
from backend.config import ClusterConfig, Config, EngineSettings
from backend.domain import Cancelled, JobStatus, Progress, Started, Succeeded
from backend.images import read_parameters
from backend.service import Service
from tests.backend.helpers import (
    collect,
    first_matching,
    make_config,
    request,
    requester,
    with_section,
)
from tests.cluster.engines import Paced, paced_tiny_engine

pytestmark = [
    pytest.mark.xdist_group("ray"),
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

ADMIN = "99"
READY_TIMEOUT_S = 120.0  # two new processes import torch and diffsynth on a 2-core machine
JOB_TIMEOUT_S = 60.0


def ray_config(tmp: Path, models_dir: Path) -> Config:
    config = make_config(tmp / "data", default_steps=2, max_steps=60)
    config = with_section(config, "engine", models_dir=models_dir, t5_max_tokens=64, warmup=False)
    config = with_section(config, "telegram", admins=(ADMIN,))
    return dataclasses.replace(
        config,
        cluster=ClusterConfig(
            backend="ray", workers=2, gpus_per_worker=0, cpus_per_worker=1, max_restarts=-1
        ),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ray_service(
    ray_cluster: str, tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path
) -> AsyncIterator[tuple[Service, RayCluster]]:
    config = ray_config(tmp_path_factory.mktemp("ray-service"), tiny_models_dir)
    cluster = RayCluster(config.cluster, EngineSettings.of(config), paced_tiny_engine)
    async with Service.open(config, cluster.source()) as service:
        await wait_ready(service, 2)
        yield service, cluster


async def wait_ready(service: Service, count: int, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await service.status(requester(ADMIN))
        ready = [e for e in status.engines if e.ready]
        if len(ready) >= count:
            return
        failed = [e.error for e in status.engines if e.error]
        assert not failed, failed
        assert time.monotonic() < deadline, status.engines
        await asyncio.sleep(0.2)


async def test_two_actors_serve_several_users_in_fair_order(
    ray_service: tuple[Service, RayCluster],
) -> None:
    service, _ = ray_service
    # Hold both actors with a long job each, then queue three users' jobs behind them.
    holders = [await service.submit(request(f"hold {i}", user=f"h{i}", steps=12)) for i in (1, 2)]
    for holder in holders:
        await first_matching(service.subscribe(holder.job.id), lambda e: isinstance(e, Progress))
    submitted = []
    for user, count in (("ann", 3), ("bob", 2), ("cy", 1)):
        for n in range(count):
            sub = await service.submit(request(f"{user} picture {n}", user=user, seed=n))
            submitted.append((user, sub.job.id))
    streams = {job_id: collect(service.subscribe(job_id), JOB_TIMEOUT_S) for _, job_id in submitted}
    events = dict(zip(streams, await asyncio.gather(*streams.values()), strict=True))

    started = {}
    for job_id, job_events in events.items():
        assert isinstance(job_events[-1], Succeeded), job_events
        assert sum(isinstance(e, Succeeded) for e in job_events) == 1
        first = next(e for e in job_events if isinstance(e, Started))
        started[job_id] = first.worker
    jobs = {job_id: await service.job(job_id) for job_id in events}
    # Fair order: one job per user per round (ann, bob, cy, ann, bob, ann), whichever actor.
    by_start = sorted(jobs.values(), key=lambda j: j.started_at or 0.0)
    assert [j.requester.user_id for j in by_start] == ["ann", "bob", "cy", "ann", "bob", "ann"]
    assert set(started.values()) == {"ray-1", "ray-2"}, started
    for job in jobs.values():
        assert job.status is JobStatus.SUCCEEDED and job.result_path is not None
        text = read_parameters(job.result_path)  # the PNG bytes from the actor, with our chunk
        assert text is not None and text.startswith(job.params.prompt)
        assert f"Seed: {job.params.seed}" in text


async def test_cancel_reaches_the_actor_and_it_serves_again(
    ray_service: tuple[Service, RayCluster],
) -> None:
    service, _ = ray_service
    long = await service.submit(request("a long one", user="dan", steps=50))
    events = service.subscribe(long.job.id)
    await first_matching(events, lambda e: isinstance(e, Progress) and e.step >= 2)
    asked = time.monotonic()
    await service.cancel(long.job.id, requester("dan"))
    rest = await collect(events, JOB_TIMEOUT_S)
    took = time.monotonic() - asked
    assert isinstance(rest[-1], Cancelled), rest
    steps = [e.step for e in rest if isinstance(e, Progress)]
    assert len(steps) <= 3, steps  # stopped at the next step or two, not at step 50
    assert took < 10, took
    assert (await service.job(long.job.id)).status is JobStatus.CANCELLED
    after = await service.submit(request("and then another", user="dan"))
    done = await collect(service.subscribe(after.job.id), JOB_TIMEOUT_S)
    assert isinstance(done[-1], Succeeded), done


async def test_killed_actor_job_runs_again_once_and_the_actor_comes_back(
    ray_service: tuple[Service, RayCluster],
) -> None:
    service, cluster = ray_service
    victim_job = await service.submit(request("killed midway", user="eve", steps=30))
    events = service.subscribe(victim_job.job.id)
    started = await first_matching(events, lambda e: isinstance(e, Started))
    assert isinstance(started, Started)
    await first_matching(events, lambda e: isinstance(e, Progress) and e.step >= 2)
    engine = next(e for e in cluster.engines if e.device == started.worker)
    assert isinstance(engine, RayEngine) and engine.info is not None
    old_pid = engine.info.pid
    os.kill(old_pid, signal.SIGKILL)

    rest = await collect(events, JOB_TIMEOUT_S + READY_TIMEOUT_S)
    assert isinstance(rest[-1], Succeeded), rest
    assert sum(isinstance(e, Succeeded) for e in rest) == 1
    assert any(isinstance(e, Started) for e in rest), "it ran again"
    job = await service.job(victim_job.job.id)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert job.result_path is not None and job.result_path.exists()

    # Ray restarted the actor in a new process; its worker loaded the model there again.
    await wait_ready(service, 2)
    assert engine.info is not None and engine.info.pid != old_pid
    status = await service.status(requester(ADMIN))
    shown = next(e for e in status.engines if e.device.startswith(f"{started.worker} "))
    assert shown.restarts == 1 and shown.node, shown
    again = await service.submit(request("after the restart", user="eve", steps=2))
    done = await collect(service.subscribe(again.job.id), JOB_TIMEOUT_S)
    assert isinstance(done[-1], Succeeded), done


async def test_a_hung_actor_is_killed_after_a_cancel_and_comes_back(
    ray_service: tuple[Service, RayCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.cluster import remote_engine

    monkeypatch.setattr(remote_engine, "CANCEL_KILL_S", 2.0)
    service, _ = ray_service
    stuck = await service.submit(request(f"a stuck GPU {Paced.HANG}", user="fay", steps=20))
    events = service.subscribe(stuck.job.id)
    await first_matching(events, lambda e: isinstance(e, Progress))
    await service.cancel(stuck.job.id, requester("fay"))
    rest = await collect(events, JOB_TIMEOUT_S)
    assert isinstance(rest[-1], Cancelled), rest  # the user's cancel stands; nothing re-queued
    job = await service.job(stuck.job.id)
    assert (job.status, job.attempts) == (JobStatus.CANCELLED, 0)
    await wait_ready(service, 2)  # the killed actor was restarted and loaded again
    status = await service.status(requester(ADMIN))
    assert sum(e.restarts for e in status.engines) >= 1
