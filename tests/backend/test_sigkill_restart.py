"""Kill a real ``majicbot serve`` (tiny FLUX on the CPU) with SIGKILL mid-job, start it again:
nothing accepted is lost.

Jobs enter the way an adapter's ``submit`` leaves them: committed to the SQLite file as
``queued`` (written here with the product's ``Store`` before the process starts, since
``--backend-only`` has no chat front-end to submit through). The test follows the process through
its log lines (``job <id> started`` / ``succeeded``), never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from backend.domain import GenerationParams, Job, JobStatus, Platform, ReplyTarget, Requester
from backend.store import Store

pytestmark = pytest.mark.slow

LINE_TIMEOUT_S = 120.0
REPO_ROOT = Path(__file__).resolve().parents[2]
LONG_STEPS = 200  # ~2 s of denoising at 64×64 on a CPU: long enough to be killed mid-job


def write_config(path: Path, models_dir: Path, data_dir: Path) -> None:
    path.write_text(
        f"""
[engine]
models_dir = "{models_dir}"
devices = ["cpu"]
t5_max_tokens = 64

[storage]
data_dir = "{data_dir}"

[limits]
default_side = 64
min_side = 64
max_side = 256
max_steps = 200
default_steps = 2

[service]
status_port = 0
stop_grace_s = 0
log_level = "INFO"
""",
        encoding="utf-8",
    )


def queued_job(job_id: str, steps: int, user: str) -> Job:
    return Job(
        id=job_id,
        params=GenerationParams(f"prompt of {job_id}", 7, steps, 64, 64, 3.5),
        requester=Requester(Platform.TELEGRAM, user, chat_id="chat"),
        reply_to=ReplyTarget("chat", message_id="1"),
        status=JobStatus.QUEUED,
        created_at=time.time(),
    )


async def start_serve(config_path: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.tinyflux.serve_cli",
        "--config", str(config_path), "serve", "--backend-only",
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def read_until(process: asyncio.subprocess.Process, needles: set[str]) -> list[str]:
    """Log lines up to the one where every needle has been seen; fails if the process exits."""
    assert process.stderr is not None
    seen: list[str] = []
    missing = set(needles)
    while missing:
        raw = await asyncio.wait_for(process.stderr.readline(), LINE_TIMEOUT_S)
        assert raw, f"serve exited before {missing}; log:\n" + "".join(seen)
        line = raw.decode(errors="replace")
        seen.append(line)
        missing = {n for n in missing if n not in line}
    return seen


async def test_sigkill_mid_job_then_restart_loses_nothing(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    data_dir = tmp_path / "data"
    config_path = tmp_path / "majicbot.toml"
    write_config(config_path, tiny_models_dir, data_dir)
    jobs = [queued_job("longjob01", LONG_STEPS, "a"), queued_job("quick0001", 2, "b"),
            queued_job("quick0002", 2, "a")]  # fmt: skip
    async with Store.open(data_dir / "majicbot.sqlite3") as store:
        for job in jobs:
            await store.insert_job(job)

    first = await start_serve(config_path)
    try:
        await read_until(first, {"job longjob01 started"})
    finally:
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), LINE_TIMEOUT_S) == -signal.SIGKILL

    async with Store.open(data_dir / "majicbot.sqlite3") as store:
        killed = {j.id: (j.status, j.attempts) for j in [await _get(store, j.id) for j in jobs]}
    assert killed == {
        "longjob01": (JobStatus.RUNNING, 0),
        "quick0001": (JobStatus.QUEUED, 0),
        "quick0002": (JobStatus.QUEUED, 0),
    }

    second = await start_serve(config_path)
    try:
        log = await read_until(second, {f"job {j.id} succeeded" for j in jobs})
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), LINE_TIMEOUT_S) == 0
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()

    assert any("job longjob01 re-queued after an interruption" in line for line in log)
    async with Store.open(data_dir / "majicbot.sqlite3") as store:
        final = [await _get(store, j.id) for j in jobs]
        transitions = [s for s, _ in await store.transitions("longjob01")]
    assert [(j.status, j.attempts) for j in final] == [
        (JobStatus.SUCCEEDED, 1),
        (JobStatus.SUCCEEDED, 0),
        (JobStatus.SUCCEEDED, 0),
    ]
    assert all(j.result_path is not None and j.result_path.is_file() for j in final)
    assert transitions == [
        JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
    ]  # fmt: skip
    # The interrupted job ran first after the restart, then the rest in fair order.
    started = [j.started_at or 0.0 for j in final]
    assert started[0] < started[1] < started[2]


async def _get(store: Store, job_id: str) -> Job:
    job = await store.get_job(job_id)
    assert job is not None
    return job
