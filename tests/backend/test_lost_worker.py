"""A worker whose engine process died (``WorkerLost``, as ``RayEngine`` raises it): the job goes
back to the front of the live queue and runs again, the engine is loaded again first, and a job
that loses its worker 3 times fails with a sentence. In process, with the step engine; the
same path across real processes is ``tests/cluster/test_ray_workers.py``."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from backend import keys
from backend.domain import Failed, JobStatus, Progress, Started, Succeeded
from backend.engine.protocol import LoadReport
from backend.errors import WorkerLost
from backend.service import Service
from tests.backend.engines import StepEngine
from tests.backend.helpers import collect, first_matching, make_config, request


async def test_a_lost_run_is_requeued_first_and_the_engine_reloaded(tmp_path: Path) -> None:
    engine = StepEngine(failures=[WorkerLost("ActorDiedError: killed", ran=True)])
    loads: list[LoadReport] = []
    inner_load = engine.load

    def counted_load(report: LoadReport) -> None:
        loads.append(report)
        inner_load(report)

    engine.load = counted_load  # type: ignore[method-assign]
    async with Service.open(make_config(tmp_path / "data"), lambda: [engine]) as service:
        lost = await service.submit(request("first", user="a"))
        other = await service.submit(request("second", user="b"))
        events = await collect(service.subscribe(lost.job.id))
        await collect(service.subscribe(other.job.id))
        job = await service.job(lost.job.id)
        second = await service.job(other.job.id)
    assert [type(e) for e in events if isinstance(e, Started | Succeeded)] == [
        Started, Started, Succeeded,
    ]  # fmt: skip
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert len(loads) == 2  # loaded again before the next job
    assert second.started_at is not None and job.started_at is not None
    assert job.started_at < second.started_at  # the lost job went back to the front


async def test_a_job_handed_to_a_restarted_worker_is_not_charged(tmp_path: Path) -> None:
    engine = StepEngine(failures=[WorkerLost("restarted, no model yet", ran=False)] * 5)
    async with Service.open(make_config(tmp_path / "data"), lambda: [engine]) as service:
        sub = await service.submit(request())
        events = await collect(service.subscribe(sub.job.id))
        job = await service.job(sub.job.id)
    assert isinstance(events[-1], Succeeded)
    assert job.attempts == 0


async def test_a_job_that_loses_its_worker_three_times_fails(tmp_path: Path) -> None:
    engine = StepEngine(failures=[WorkerLost("ActorDiedError", ran=True) for _ in range(3)])
    async with Service.open(make_config(tmp_path / "data"), lambda: [engine]) as service:
        sub = await service.submit(request())
        events = await collect(service.subscribe(sub.job.id))
        after = await service.submit(request("next one", user="z"))
        next_events = await collect(service.subscribe(after.job.id))
        job = await service.job(sub.job.id)
    assert isinstance(events[-1], Failed) and events[-1].reason_key == keys.INTERRUPTED_REPEATEDLY
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)
    assert isinstance(next_events[-1], Succeeded)  # the worker serves on


async def test_engines_found_later_become_workers_and_the_source_is_closed(
    tmp_path: Path,
) -> None:
    """An ``EngineSource`` that discovers engines (a Ray node joined): each becomes a worker that
    serves; ``close`` runs after the workers stopped."""
    from backend.domain import CLI_REQUESTER
    from backend.engine.protocol import EngineSource

    later = [StepEngine("ray-2")]
    found: list[list[StepEngine]] = [later]
    closed: list[bool] = []

    def discover() -> list[StepEngine]:
        return found.pop() if found else []

    gate = threading.Event()  # ray-1 holds its job after step 1: the next job needs ray-2
    source = EngineSource(
        lambda: [StepEngine("ray-1", step_gate=gate)], discover, every_s=0.05,
        close=lambda: closed.append(True),
    )  # fmt: skip
    async with Service.open(make_config(tmp_path / "data"), source) as service:
        for _ in range(200):
            status = await service.status(CLI_REQUESTER)
            if sum(e.ready for e in status.engines) == 2:
                break
            await asyncio.sleep(0.02)
        assert [e.device for e in status.engines] == ["ray-1", "ray-2"]
        held = await service.submit(request("held", user="a"))
        await first_matching(service.subscribe(held.job.id), lambda e: isinstance(e, Progress))
        other = await service.submit(request("other", user="b"))
        assert isinstance((await collect(service.subscribe(other.job.id)))[-1], Succeeded)
        assert (await service.job(other.job.id)).worker == "ray-2"  # the discovered one
        gate.set()
        assert isinstance((await collect(service.subscribe(held.job.id)))[-1], Succeeded)
        assert closed == []
    assert closed == [True]
