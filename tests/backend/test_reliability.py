"""Faults inside one process: a full disk, a locked database, a crashing sink, a stalled or hung
engine, a second instance, text that is not text. The worker survives, later jobs run, the job's
state stays true, and ``status()`` names what fails and since when."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from backend import images, keys
from backend import results as results_module
from backend import store as store_module
from backend.config import Config
from backend.domain import (
    CLI_REQUESTER,
    Component,
    Failed,
    GenerationParams,
    JobStatus,
    Progress,
    Succeeded,
)
from backend.engine.protocol import CancelCheck, GenerationResult, StepCallback
from backend.errors import InstanceLocked, InvalidRequest, LimitReached, StartupError
from backend.health import RetryPolicy
from backend.instance import hold_instance
from backend.service import Service
from tests.backend.engines import StepEngine
from tests.backend.helpers import (
    collect,
    first_matching,
    make_config,
    request,
    with_section,
)

FAST = RetryPolicy(first_delay_s=0.01, max_delay_s=0.05)
FAST_PNG = RetryPolicy(first_delay_s=0.01, max_delay_s=0.05, attempts=3)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


def fast_retries(service: Service) -> None:
    service.results.store_retry = FAST
    service.results.png_retry = FAST_PNG


async def components_failing(service: Service) -> set[Component]:
    return {f.component for f in (await service.status(CLI_REQUESTER)).faults}


async def test_disk_full_fails_that_job_with_a_reason_and_later_jobs_run(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = images.write_png
    full = {"left": 3}  # the three tries of one job

    async def write_png(*args: Any) -> None:
        if full["left"]:
            full["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        await real_write(*args)

    monkeypatch.setattr(results_module, "write_png", write_png)
    async with Service.open(config, lambda: [StepEngine()]) as service:
        fast_retries(service)
        first = await service.submit(request())
        end = (await collect(service.subscribe(first.job.id)))[-1]
        degraded = await components_failing(service)
        second = await service.submit(request(user="u2"))  # the folder takes a file again
        later = (await collect(service.subscribe(second.job.id)))[-1]
        stored = await service.job(first.job.id)
        healthy = await components_failing(service)
    assert isinstance(end, Failed) and end.reason_key == keys.STORAGE
    assert (stored.status, stored.error_key) == (JobStatus.FAILED, keys.STORAGE)
    assert degraded == {Component.DISK}
    assert isinstance(later, Succeeded) and later.image_path.is_file()
    assert healthy == set()


async def test_a_failing_image_folder_refuses_new_jobs_with_a_sentence(config: Config) -> None:
    async with Service.open(config, lambda: [StepEngine()]) as service:
        service.health.failing(Component.DISK, "cpu", "writing x: disk full")
        config.outputs_dir.rename(config.outputs_dir.with_name("moved"))
        config.outputs_dir.write_text("a file where the folder was")
        with pytest.raises(LimitReached) as refused:
            await service.submit(request())
    assert refused.value.key == keys.STORAGE_UNAVAILABLE


async def test_locked_database_mid_job_is_waited_out_and_the_worker_survives(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 20)
    gate = threading.Event()
    engine = StepEngine(step_gate=gate)
    async with Service.open(config, lambda: [engine]) as service:
        fast_retries(service)
        store_failing = asyncio.Event()
        failing = service.health.failing

        def record(component: Component, where: str, detail: str) -> None:
            failing(component, where, detail)
            if component is Component.STORE:
                store_failing.set()

        monkeypatch.setattr(service.health, "failing", record)
        sub = await service.submit(request())
        events = service.subscribe(sub.job.id)
        await first_matching(events, lambda e: isinstance(e, Progress))
        locker = sqlite3.connect(config.db_path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        gate.set()
        await asyncio.wait_for(store_failing.wait(), 10)
        still = await asyncio.to_thread(_status_of, config.db_path, sub.job.id)
        locker.execute("ROLLBACK")
        locker.close()
        end = (await collect(events))[-1]
        second = await service.submit(request(user="u2"))
        later = (await collect(service.subscribe(second.job.id)))[-1]
        healthy = await components_failing(service)
    assert still == "running"  # true while its result cannot be recorded
    assert isinstance(end, Succeeded) and isinstance(later, Succeeded)
    assert healthy == set()


def _status_of(db_path: Path, job_id: str) -> str:
    with sqlite3.connect(db_path) as db:
        return str(db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])


async def test_a_crash_in_recording_restarts_the_worker_and_shows_it(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Service.open(config, lambda: [StepEngine()]) as service:
        real = service.results.succeeded
        crashes = {"left": 1}

        async def succeeded(*args: Any) -> None:
            if crashes["left"]:
                crashes["left"] -= 1
                raise RuntimeError("a bug in recording")
            await real(*args)

        monkeypatch.setattr(service.results, "succeeded", succeeded)
        first = await service.submit(request())
        end = (await collect(service.subscribe(first.job.id)))[-1]
        snapshot = await service.status(CLI_REQUESTER)
        second = await service.submit(request(user="u2"))
        later = (await collect(service.subscribe(second.job.id)))[-1]
        healthy = await components_failing(service)
    assert isinstance(end, Failed) and end.reason_key == keys.ENGINE
    assert [(f.component, f.where) for f in snapshot.faults] == [(Component.WORKER, "cpu")]
    assert "a bug in recording" in snapshot.faults[0].detail
    assert isinstance(later, Succeeded)  # the restarted worker serves; the fault clears
    assert healthy == set()


async def test_a_stalled_job_fails_with_a_reason_and_the_worker_goes_on(config: Config) -> None:
    gate = threading.Event()  # held after step 1; the hold polls the cancel flag
    config = with_section(config, "limits", stall_timeout_s=0.2)
    async with Service.open(config, lambda: [StepEngine(step_gate=gate)]) as service:
        sub = await service.submit(request())
        events = service.subscribe(sub.job.id)
        end = (await collect(events))[-1]
        gate.set()
        later = await service.submit(request(user="u2"))
        after = (await collect(service.subscribe(later.job.id)))[-1]
        stuck = service.watchdog.stuck.is_set()
    assert isinstance(end, Failed) and end.reason_key == keys.STALLED
    assert isinstance(after, Succeeded)
    assert not stuck


class HungEngine(StepEngine):
    """An engine whose first generation never returns (a hung CUDA call), cancel or not."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        on_step(1, params.steps)
        self.release.wait(30)
        raise RuntimeError("released at the end of the test")


async def test_a_hung_engine_requeues_the_job_once_and_asks_for_a_restart(
    config: Config,
) -> None:
    config = with_section(config, "limits", stall_timeout_s=0.2)
    engine = HungEngine()
    try:
        async with Service.open(config, lambda: [engine]) as service:
            sub = await service.submit(request())
            await asyncio.wait_for(service.watchdog.stuck.wait(), 10)
            snapshot = await service.status(CLI_REQUESTER)
            reason = service.watchdog.stuck_reason
        stored = await _reopened_job(config, sub.job.id)
    finally:
        engine.release.set()
    assert (stored.status, stored.attempts) == (JobStatus.QUEUED, 1)  # retried once after restart
    assert [f.component for f in snapshot.faults] == [Component.ENGINE]
    assert "stuck" in snapshot.faults[0].detail and "stuck" in reason


async def _reopened_job(config: Config, job_id: str) -> Any:
    async with store_module.Store.open(config.db_path) as store:
        return await store.get_job(job_id)


async def test_a_second_instance_on_the_same_data_is_refused_naming_the_first(
    config: Config,
) -> None:
    async with Service.open(config, lambda: [StepEngine()]):
        with pytest.raises(InstanceLocked) as refused:
            async with Service.open(config, lambda: [StepEngine()]):
                pass
    assert f"pid {os.getpid()}" in str(refused.value)
    assert str(config.storage.data_dir) in str(refused.value)
    with hold_instance(config.storage.data_dir, config.outputs_dir):  # released at close
        pass


def test_a_data_dir_that_is_a_file_is_a_sentence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a folder")
    with (
        pytest.raises(StartupError, match="is a file, not a folder"),
        hold_instance(data, data / "outputs"),
    ):
        pass


async def test_a_lone_surrogate_prompt_is_refused_with_a_sentence(config: Config) -> None:
    async with Service.open(config, lambda: [StepEngine()]) as service:
        with pytest.raises(InvalidRequest) as refused:
            await service.submit(request("a cat \ud83d"))
    assert refused.value.key == keys.PROMPT_NOT_TEXT
