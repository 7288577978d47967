"""Two GPUs, one worker and one pipeline each: jobs from two users spread over both cards.

Needs a host with at least two CUDA devices (skipped otherwise) and the full-size fixture.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from backend.config import Config, EngineSettings
from backend.domain import (
    CLI_REQUESTER,
    ImagineRequest,
    Options,
    Platform,
    ReplyTarget,
    Requester,
    Started,
    Succeeded,
)
from backend.engine.factory import make_engines
from backend.service import Service

pytestmark = pytest.mark.gpu


def config_for(models_dir: Path, data_dir: Path) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        engine=dataclasses.replace(
            base.engine, models_dir=models_dir, devices=("cuda:0", "cuda:1"), profile="gpu"
        ),
        storage=dataclasses.replace(base.storage, data_dir=data_dir),
    )


async def test_two_gpus_each_run_jobs(
    torch_cuda: Any, gpu_models_dir: Path, tmp_path: Path, gpu_report: dict[str, Any]
) -> None:
    if torch_cuda.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    config = config_for(gpu_models_dir, tmp_path / "data")
    workers: dict[str, str] = {}
    paths: dict[str, Path] = {}
    async with Service.open(config, lambda: make_engines(EngineSettings.of(config))) as service:
        # Loads run one after another (diffsynth's loader is not thread-safe): wait until both
        # cards are ready, else the first one serves every job before the second has loaded.
        async with asyncio.timeout(300):
            while not (
                (s := await service.status(CLI_REQUESTER)).engines
                and all(e.ready for e in s.engines)
            ):
                assert not any(e.error for e in s.engines), s.engines
                await asyncio.sleep(0.2)
        submissions = []
        for user in ("ann", "bob", "ann", "bob"):
            request = ImagineRequest(
                prompt="a lighthouse at dusk",
                requester=Requester(Platform.CLI, user),
                reply_to=ReplyTarget("bench"),
                options=Options(seed=7, steps=8, width=512, height=512),
            )
            submissions.append(await service.submit(request))
        for submission in submissions:
            async for event in service.subscribe(submission.job.id):
                if isinstance(event, Started):
                    workers[event.job_id] = event.worker
                if isinstance(event, Succeeded):
                    paths[event.job_id] = event.image_path
        status = await service.status(CLI_REQUESTER)
    assert len(paths) == 4
    assert set(workers.values()) == {"cuda:0", "cuda:1"}
    assert sorted(e.device for e in status.engines) == ["cuda:0", "cuda:1"]
    assert all(e.ready and e.profile == "gpu" for e in status.engines)
    images = {path.read_bytes() for path in paths.values()}
    gpu_report["multi_gpu"] = {
        "workers": workers,
        "identical_images_across_cards": len(images) == 1,
    }
