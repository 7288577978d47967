"""The fast profile on full-size random weights (CUDA only): fp8 compute, the background compile
and its swap, and the numerical guard of fp8 against bf16.

Run after ``python -m bench.gpu`` on the same machine and the compile is warm (same data dir:
``.bench/work/data``, or ``$MAJICBOT_GPU_DATA`` for a bench run with another ``--work``); cold it
takes about a quarter of a minute more.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.config import Config, EngineSettings
from backend.domain import GenerationParams, Optimization
from backend.engine.diffsynth_engine import DiffsynthEngine
from tests.gpu.conftest import ROOT

pytestmark = pytest.mark.gpu

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
FULL = GenerationParams(PROMPT, 42, 4, 1024, 1024, 3.5)
# One DiT step, fp8 compute against bf16 on the same (fp8-stored) weights: measured 0.092 on an
# H200 (bench/compile_probe.py, random N(0, 0.02) weights); bounded with headroom.
FP8_STEP_REL_L2_BOUND = 0.15
# Same seed, 4 steps at 1024², fp8 compute against bf16 (random weights: a loose floor).
FP8_IMAGE_PSNR_FLOOR_DB = 15.0
# The VRAM target for the fast profile (GB = 1e9 bytes).
FAST_PEAK_GB = 26.0
# Where bench.gpu leaves its compile caches.
DATA_DIR = Path(os.environ.get("MAJICBOT_GPU_DATA", ROOT / ".bench" / "work" / "data"))


def speed_config(models_dir: Path, profile: str, *, fp8: bool, compile_on: bool) -> Config:
    """The bench's engine config: 1:1 only, compile caches shared with bench.gpu."""
    base = Config()
    return dataclasses.replace(
        base,
        engine=dataclasses.replace(
            base.engine, models_dir=models_dir, profile=profile, devices=("cuda:0",),
            fp8_compute=fp8, compile=compile_on,
        ),
        storage=dataclasses.replace(base.storage, data_dir=DATA_DIR),
        limits=dataclasses.replace(base.limits, aspect_ratios=("1:1",)),
    )  # fmt: skip


def _digest(image: Any) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def _psnr(a: Any, b: Any) -> float:
    import numpy as np

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float((diff**2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _run(engine: DiffsynthEngine, params: GenerationParams = FULL) -> Any:
    return engine.generate(params, lambda _s, _t: None, lambda: False)


@pytest.fixture(scope="module")
def fast(
    torch_cuda: Any, gpu_models_dir: Path, gpu_report: dict[str, Any]
) -> Iterator[DiffsynthEngine]:
    """gpu-fp8 with fp8 compute and the background compile, as a user would configure it."""
    if torch_cuda.cuda.get_device_capability(0) < (8, 9):
        pytest.skip("fp8 compute needs compute capability 8.9")
    config = speed_config(gpu_models_dir, "gpu-fp8", fp8=True, compile_on=True)
    engine = DiffsynthEngine(EngineSettings.of(config), "cuda:0")
    started = time.perf_counter()
    engine.load(lambda _state: None)
    gpu_report["fast"] = {
        "ready_s": time.perf_counter() - started,
        "phase_at_ready": str(engine.optimization().phase),
    }
    yield engine
    engine.close()


def test_fast_profile_is_ready_before_it_is_compiled(fast: DiffsynthEngine) -> None:
    state = fast.state()
    assert state.ready and state.profile == "gpu-fp8"
    assert fast.fp8_compute, state.profile_reason
    assert "fp8 compute on" in state.profile_reason
    linears = [type(m).__name__ for m in fast._pipe.dit.blocks.modules()]
    assert "Fp8Linear" in linears and "AutoWrappedLinear" not in linears


def test_background_compile_takes_over_between_jobs(
    fast: DiffsynthEngine, torch_cuda: Any, gpu_report: dict[str, Any]
) -> None:
    entry = gpu_report["fast"]
    optimizer = fast._optimizer
    assert optimizer is not None
    modes = optimizer._settings.modes
    assert modes == ("default",)  # engine.compile_mode = "auto"
    started = time.perf_counter()
    eager = _run(fast)  # served at once, whatever the compile is doing
    entry["job_while_optimizing_s"] = time.perf_counter() - started
    entry["served_by_first_job"] = optimizer.installed_mode
    assert optimizer.wait(240)
    state = fast.optimization()
    entry["optimization"] = dataclasses.asdict(state)
    entry["stages"] = optimizer.stages()
    assert state.phase is Optimization.OPTIMIZED, state.detail
    assert "failed" not in state.detail, state.detail
    torch_cuda.cuda.reset_peak_memory_stats()
    first = _run(fast)
    assert optimizer.installed_mode == modes[-1]  # the last stage, swapped in at the job's start
    blocks = [*fast._pipe.dit.blocks, *fast._pipe.dit.single_blocks]
    assert all(b._compiled_call_impl is not None for b in blocks)
    again = _run(fast)
    entry["denoise_eager_or_first_stage_s"] = eager.timings.denoise_s
    entry["denoise_compiled_s"] = again.timings.denoise_s
    entry["peak_allocated_gb"] = torch_cuda.cuda.max_memory_allocated() / 1e9
    assert _digest(first.image) == _digest(again.image)  # deterministic on the compiled path
    assert again.timings.denoise_s < eager.timings.denoise_s
    assert entry["peak_allocated_gb"] <= FAST_PEAK_GB


def test_fp8_against_bf16_error_is_bounded(
    fast: DiffsynthEngine, torch_cuda: Any, gpu_models_dir: Path, gpu_report: dict[str, Any]
) -> None:
    from backend.engine.fp8 import relative_l2
    from bench.compile_probe import dit_step, step_inputs

    config = speed_config(gpu_models_dir, "gpu", fp8=False, compile_on=False)
    lossless = DiffsynthEngine(EngineSettings.of(config), "cuda:0")
    lossless.load(lambda _state: None)
    try:
        inputs = step_inputs(torch_cuda, lossless._pipe.dit)
        reference = dit_step(torch_cuda, lossless._pipe.dit, inputs)
        step_error = relative_l2(dit_step(torch_cuda, fast._pipe.dit, inputs), reference)
        psnr = _psnr(_run(fast).image, _run(lossless).image)
    finally:
        lossless.close()
    gpu_report["fp8_guard"] = {"step_rel_l2": step_error, "image_psnr_db_4_steps": psnr}
    assert step_error <= FP8_STEP_REL_L2_BOUND
    assert psnr >= FP8_IMAGE_PSNR_FLOOR_DB
