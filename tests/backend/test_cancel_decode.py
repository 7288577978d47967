"""A cancel is either honoured or refused as "already finishing", never claimed and then broken."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from backend import keys
from backend.domain import Cancelled, GenerationParams, Progress, Succeeded
from backend.engine.protocol import CancelCheck, GenerationResult, StepCallback
from backend.errors import JobNotCancellable
from backend.service import Service
from tests.backend.engines import WAIT_S, StepEngine
from tests.backend.helpers import collect, make_config, request, requester


async def test_a_cancel_during_the_decode_is_refused_and_the_image_delivered(
    tmp_path: Path,
) -> None:
    gate = threading.Event()
    engine = StepEngine(step_gate=gate)  # holds after step 1 of 1: the decode
    try:
        async with Service.open(make_config(tmp_path), lambda: [engine]) as service:
            job = (await service.submit(request(steps=1))).job
            events = service.subscribe(job.id)
            async for event in events:
                if isinstance(event, Progress):
                    break
            with pytest.raises(JobNotCancellable) as refused:
                await service.cancel(job.id, requester())
            gate.set()
            rest = await collect(events)
    finally:
        gate.set()
    assert (refused.value.key, dict(refused.value.params)) == (
        keys.ALREADY_FINISHING,
        {"job_id": job.id},
    )
    assert isinstance(rest[-1], Succeeded)


class _LateReportEngine(StepEngine):
    """Checks the cancel flag, then waits before reporting its last step (a report in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = threading.Event()
        self.proceed = threading.Event()

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        cancelled()
        self.checked.set()
        assert self.proceed.wait(WAIT_S)
        return super().generate(params, on_step, lambda: False)


async def test_a_cancel_accepted_after_the_last_check_discards_the_image(tmp_path: Path) -> None:
    engine = _LateReportEngine()
    try:
        async with Service.open(make_config(tmp_path), lambda: [engine]) as service:
            job = (await service.submit(request(steps=1))).job
            events = service.subscribe(job.id)
            assert await asyncio.to_thread(engine.checked.wait, WAIT_S)
            await service.cancel(job.id, requester())  # accepted: no step reported yet
            engine.proceed.set()
            rest = await collect(events)
            stored = await service.job(job.id)
    finally:
        engine.proceed.set()
    assert isinstance(rest[-1], Cancelled)
    assert stored.status.value == "cancelled" and stored.result_path is None
