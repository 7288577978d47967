"""Every placement profile on full-size random weights through the product engine (CUDA only).

For each scenario of ``conftest.SCENARIOS`` (gpu chosen by auto on an 80 GB card, gpu-fp8 forced,
balanced chosen by auto under a 12 GB cap, lowvram chosen by auto under an 8 GB cap) the engine
loads the 22 GB fixture and must: generate 1024×1024 in 4 steps within the profile's VRAM budget,
give identical bytes for the same seed, stop at the next step when cancelled, and keep serving
after a CUDA out-of-memory error.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from backend.domain import GenerationParams
from backend.engine.files import component_parameters, model_files
from backend.engine.profiles import needs, recipe
from backend.errors import GenerationCancelled, OutOfMemory
from tests.gpu.conftest import GIB, Loaded, set_cap

pytestmark = pytest.mark.gpu

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
FULL = GenerationParams(PROMPT, 42, 4, 1024, 1024, 3.5)
SMALL = GenerationParams(PROMPT, 7, 1, 256, 256, 3.5)


def _digest(image: Any) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def _budget_bytes(loaded: Loaded) -> int:
    """The most VRAM the profile may allocate at 1024² (what ``auto`` relies on).

    Resident and streaming profiles: the engine's own declared need for images of FULL's size
    (the activation reserve follows the pixel count). balanced keeps layers on the GPU while VRAM
    lasts, so its budget is the card (the cap) less the configured margin.
    """
    if loaded.scenario.expect == "balanced":
        assert loaded.scenario.cap_gib is not None
        return int((loaded.scenario.cap_gib - loaded.config.engine.vram_margin_gb) * GIB)
    params = component_parameters(model_files(loaded.config))
    pixels = FULL.width * FULL.height
    return needs(recipe(loaded.scenario.expect, "cuda:0"), params, pixels).vram


def _first_image(loaded: Loaded, torch: Any, report: dict[str, Any]) -> str:
    """Generate FULL once per scenario (cached in the report); returns its digest."""
    entry = report[loaded.name]
    if "first_digest" not in entry:
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        result = loaded.engine.generate(FULL, lambda _s, _t: None, lambda: False)
        entry["image_1024_4steps_s"] = time.perf_counter() - started
        entry["timings"] = result.timings
        entry["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        entry["budget_gib"] = _budget_bytes(loaded) / GIB
        entry["size"] = result.picture().size
        entry["first_digest"] = _digest(result.image)
    return str(entry["first_digest"])


def test_profile_is_the_expected_one(loaded: Loaded, gpu_report: dict[str, Any]) -> None:
    state = loaded.engine.state()
    assert state.ready
    assert state.profile == loaded.scenario.expect, state.profile_reason
    assert all(c.state == "ready" for c in state.components)


def test_1024_image_in_4_steps_within_the_vram_budget(
    loaded: Loaded, torch_cuda: Any, gpu_report: dict[str, Any]
) -> None:
    _first_image(loaded, torch_cuda, gpu_report)
    entry = gpu_report[loaded.name]
    assert tuple(entry["size"]) == (1024, 1024)
    assert entry["peak_allocated_gib"] <= entry["budget_gib"], entry


def test_same_seed_gives_identical_bytes(
    loaded: Loaded, torch_cuda: Any, gpu_report: dict[str, Any]
) -> None:
    first = _first_image(loaded, torch_cuda, gpu_report)
    again = loaded.engine.generate(FULL, lambda _s, _t: None, lambda: False)
    assert _digest(again.image) == first


def test_cancel_stops_at_the_next_step(loaded: Loaded) -> None:
    steps: list[int] = []
    with pytest.raises(GenerationCancelled):
        loaded.engine.generate(FULL, lambda step, _t: steps.append(step), lambda: bool(steps))
    assert steps == [1]
    after = loaded.engine.generate(SMALL, lambda _s, _t: None, lambda: False)
    assert after.picture().size == (256, 256)


def test_out_of_memory_fails_the_job_and_the_next_one_runs(
    loaded: Loaded, torch_cuda: Any, gpu_report: dict[str, Any]
) -> None:
    torch = torch_cuda
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    tight = (torch.cuda.memory_allocated() + 64 * 1024**2) / total
    set_cap(torch, tight)
    try:
        with pytest.raises(OutOfMemory):
            loaded.engine.generate(FULL, lambda _s, _t: None, lambda: False)
    finally:
        set_cap(torch, loaded.cap_fraction)
    after = loaded.engine.generate(SMALL, lambda _s, _t: None, lambda: False)
    assert after.picture().size == (256, 256)
    gpu_report[loaded.name]["oom_recovered"] = True
