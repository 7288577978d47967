"""The service end to end with the real tiny FLUX pipeline (diffsynth on the CPU) and SQLite file.

``HeldEngine`` wraps a real ``DiffsynthEngine`` only to make timing deterministic: its step
callback can hold the engine thread after step 1 (until a gate opens, or the job is cancelled)
and can raise inside the real pipeline. Generation, cancellation checks, timings and the image
all come from the real engine.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from PIL import Image

from backend import keys
from backend.config import Config, EngineSettings
from backend.domain import (
    CLI_REQUESTER,
    Cancelled,
    Failed,
    GenerationParams,
    Job,
    JobStatus,
    Platform,
    Progress,
    ReplyTarget,
    Requester,
    Succeeded,
)
from backend.engine.diffsynth_engine import DiffsynthEngine
from backend.engine.factory import make_engines
from backend.engine.protocol import CancelCheck, Engine, GenerationResult, StepCallback
from backend.images import read_parameters
from backend.service import Service
from backend.store import Store
from tests.backend.engines import Delegating
from tests.backend.helpers import collect, first_matching, request, requester

WAIT_S = 60.0


class HeldEngine(Delegating):
    """Delegates to a real engine; ``hold_after_first_step`` / ``raise_at_step`` steer timing."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.hold_after_first_step = False
        self.raise_at_step: Callable[[], BaseException] | None = None

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        def step(done: int, total: int) -> None:
            on_step(done, total)
            if done == 1 and self.raise_at_step is not None:
                error, self.raise_at_step = self.raise_at_step(), None
                raise error
            if done == 1 and self.hold_after_first_step:
                deadline = time.monotonic() + WAIT_S
                while not (self.gate.wait(0.005) or cancelled()):
                    assert time.monotonic() < deadline, "gate never opened"

        return self.inner.generate(params, step, cancelled)


def data_config(tiny_config: Config) -> Config:
    return dataclasses.replace(
        tiny_config, service=dataclasses.replace(tiny_config.service, stop_grace_s=0.0)
    )


async def test_submit_events_and_stored_png_with_parameters(tiny_config: Config) -> None:
    config = data_config(tiny_config)
    async with Service.open(config, lambda: make_engines(EngineSettings.of(config))) as service:
        sub = await service.submit(request("a lighthouse at dusk", seed=42, steps=2))
        events = await collect(service.subscribe(sub.job.id), WAIT_S)
        stored = await service.job(sub.job.id)
        status = await service.status(CLI_REQUESTER)
    done = events[-1]
    assert isinstance(done, Succeeded)
    assert [(e.step, e.total) for e in events if isinstance(e, Progress)][-1] == (2, 2)
    assert stored.status is JobStatus.SUCCEEDED and stored.result_path == done.image_path
    assert stored.timings == done.timings and done.timings.denoise_s > 0
    day = time.strftime("%Y-%m-%d", time.localtime(stored.created_at))
    assert done.image_path == config.outputs_dir / day / f"{sub.job.id}.png"
    with Image.open(done.image_path) as image:
        assert image.size == (64, 64)
    text = read_parameters(done.image_path)
    assert text is not None and text.startswith("a lighthouse at dusk\nSteps: 2, Sampler: Euler")
    assert "Seed: 42, Size: 64x64, Model: majicflus_v1, Profile: " in text
    assert status.done_last_hour == 1 and ("torch" in dict(status.versions))


async def test_cancel_running_job_at_next_step(tiny_config: Config) -> None:
    config = data_config(tiny_config)
    engine = HeldEngine(DiffsynthEngine(EngineSettings.of(config), "cpu"))
    engine.hold_after_first_step = True
    async with Service.open(config, lambda: [engine]) as service:
        sub = await service.submit(request(steps=4))
        events = service.subscribe(sub.job.id)
        await first_matching(events, lambda e: isinstance(e, Progress), WAIT_S)
        await service.cancel(sub.job.id, requester())
        rest = await collect(events, WAIT_S)
        stored = await service.job(sub.job.id)
        engine.hold_after_first_step = False
        after = await service.submit(request(steps=2))
        after_events = await collect(service.subscribe(after.job.id), WAIT_S)
    assert rest == [Cancelled(sub.job.id)]
    assert (stored.status, stored.result_path) == (JobStatus.CANCELLED, None)
    assert isinstance(after_events[-1], Succeeded)


async def test_engine_failure_then_success_on_the_same_worker(tiny_config: Config) -> None:
    import torch

    config = data_config(tiny_config)
    engine = HeldEngine(DiffsynthEngine(EngineSettings.of(config), "cpu"))
    engine.raise_at_step = lambda: torch.OutOfMemoryError("CUDA out of memory (injected)")
    async with Service.open(config, lambda: [engine]) as service:
        bad = await service.submit(request(user="a"))
        good = await service.submit(request(user="b"))
        bad_events = await collect(service.subscribe(bad.job.id), WAIT_S)
        good_events = await collect(service.subscribe(good.job.id), WAIT_S)
    failed = bad_events[-1]
    assert isinstance(failed, Failed) and failed.reason_key == "error.oom"
    assert "CUDA out of memory (injected)" in failed.detail
    assert isinstance(good_events[-1], Succeeded)


async def test_two_cpu_workers_run_two_jobs_at_once(tiny_config: Config) -> None:
    config = data_config(tiny_config)
    engines = [HeldEngine(DiffsynthEngine(EngineSettings.of(config), "cpu")) for _ in range(2)]
    for engine in engines:
        engine.hold_after_first_step = True
    async with Service.open(config, lambda: engines) as service:
        subs = [await service.submit(request(user=u)) for u in ("a", "b")]
        for sub in subs:
            await first_matching(service.subscribe(sub.job.id), lambda e: True, WAIT_S)
            await first_matching(
                service.subscribe(sub.job.id), lambda e: isinstance(e, Progress), WAIT_S
            )
        status = await service.status(CLI_REQUESTER)
        for engine in engines:
            engine.gate.set()
        results = [await collect(service.subscribe(s.job.id), WAIT_S) for s in subs]
        jobs = [await service.job(s.job.id) for s in subs]
    assert sorted(r.worker for r in status.running) == ["cpu#1", "cpu#2"]
    assert [e.device for e in status.engines] == ["cpu", "cpu"]
    assert all(isinstance(r[-1], Succeeded) for r in results)
    assert sorted(j.worker or "" for j in jobs) == ["cpu#1", "cpu#2"]


def stored_job(job_id: str, status: JobStatus, attempts: int = 0, user: str = "u1") -> Job:
    return Job(
        id=job_id,
        params=GenerationParams(f"prompt {job_id}", 1, 2, 64, 64, 3.5),
        requester=Requester(Platform.TELEGRAM, user, chat_id="c1"),
        reply_to=ReplyTarget("c1", message_id="m"),
        status=status,
        created_at=time.time(),
        attempts=attempts,
    )


async def test_restart_recovery(tiny_config: Config) -> None:
    config = data_config(tiny_config)
    async with Store.open(config.db_path) as store:
        await store.insert_job(stored_job("queued1", JobStatus.QUEUED, user="a"))
        await store.insert_job(stored_job("running1", JobStatus.RUNNING, user="b"))
        # Interrupted twice before: the third interruption gives up (MAX_INTERRUPTED_RUNS).
        await store.insert_job(stored_job("thrice", JobStatus.RUNNING, attempts=2, user="c"))
        await store.insert_job(stored_job("queued2", JobStatus.QUEUED, user="a"))
        await store.insert_job(stored_job("done", JobStatus.SUCCEEDED, user="d"))
    held = HeldEngine(DiffsynthEngine(EngineSettings.of(config), "cpu"))
    held.hold_after_first_step = True
    async with Service.open(config, lambda: [held]) as service:
        thrice = await service.job("thrice")
        undelivered = [j.id for j in await service.deliveries.undelivered(Platform.TELEGRAM)]
        await first_matching(
            service.subscribe("running1"), lambda e: isinstance(e, Progress), WAIT_S
        )
        active = [j.id for j in await service.deliveries.active_jobs(Platform.TELEGRAM)]
        held.gate.set()
        for job_id in ("running1", "queued1", "queued2"):
            assert isinstance((await collect(service.subscribe(job_id), WAIT_S))[-1], Succeeded)
        order = [(await service.job(i)).started_at or 0 for i in ("running1", "queued1", "queued2")]
        recovered = await service.job("running1")
    assert (thrice.status, thrice.error_key) == (JobStatus.FAILED, keys.INTERRUPTED_REPEATEDLY)
    assert undelivered == ["thrice", "done"]
    assert active == ["queued1", "running1", "queued2"]
    assert order == sorted(order)  # the interrupted job first, then the queue in its order
    assert recovered.attempts == 1


async def test_stop_requeues_the_running_job_for_the_next_start(tiny_config: Config) -> None:
    config = data_config(tiny_config)  # stop_grace_s = 0: cancel at once
    held = HeldEngine(DiffsynthEngine(EngineSettings.of(config), "cpu"))
    held.hold_after_first_step = True
    async with Service.open(config, lambda: [held]) as service:
        sub = await service.submit(request(steps=3))
        events = service.subscribe(sub.job.id)
        await first_matching(events, lambda e: isinstance(e, Progress), WAIT_S)
    assert [e async for e in events] == []  # the subscription ends without a terminal event
    async with Store.open(config.db_path) as store:
        parked = await store.get_job(sub.job.id)
    assert parked is not None and (parked.status, parked.attempts) == (JobStatus.QUEUED, 0)
    config_long = dataclasses.replace(
        config, service=dataclasses.replace(config.service, stop_grace_s=WAIT_S)
    )
    async with Service.open(
        config_long, lambda: make_engines(EngineSettings.of(config_long))
    ) as service:
        done = await collect(service.subscribe(sub.job.id), WAIT_S)
    assert isinstance(done[-1], Succeeded)


async def test_stop_lets_the_running_job_finish_within_grace(tiny_config: Config) -> None:
    config = dataclasses.replace(
        tiny_config, service=dataclasses.replace(tiny_config.service, stop_grace_s=WAIT_S)
    )
    held = HeldEngine(DiffsynthEngine(EngineSettings.of(config), "cpu"))
    held.hold_after_first_step = True
    async with Service.open(config, lambda: [held]) as service:
        sub = await service.submit(request(steps=3))
        events = service.subscribe(sub.job.id)
        await first_matching(events, lambda e: isinstance(e, Progress), WAIT_S)
        held.gate.set()  # the job is mid-run when the stop begins
    rest = [e async for e in events]
    async with Store.open(config.db_path) as store:
        finished = await store.get_job(sub.job.id)
    assert isinstance(rest[-1], Succeeded)
    assert finished is not None and finished.status is JobStatus.SUCCEEDED
