"""GPU fixtures: the full-size random-weight fixture and one product engine per scenario.

Run on a CUDA machine with ``pytest -m gpu tests/gpu``. The fixture files come from
``$MAJICBOT_GPU_MODELS`` (default ``.bench/models``) and are written there by
``bench.random_weights`` when absent (22 GB: DiT fp8, T5 bf16, CLIP, VAE). Tokenizer folders come
from ``.bench/tokenizers`` (carried to GPU machines, which lack open-clip-torch) or are generated
with ``bench.fixture_tokenizers``. ``$MAJICBOT_GPU_REPORT`` names a JSON file for the measured
numbers (peak VRAM, seconds) of each scenario.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.config import Config, EngineSettings
from backend.engine.diffsynth_engine import DiffsynthEngine

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A placement profile as a user would meet it: what is configured, under what VRAM cap."""

    expect: str  # the profile the engine must end up with
    requested: str  # engine.profile
    cap_gib: float | None = None  # simulated card size (set_per_process_memory_fraction)


SCENARIOS = {
    "gpu": Scenario("gpu", "auto"),  # an 80 GB card: auto must pick gpu
    "gpu-fp8": Scenario("gpu-fp8", "gpu-fp8"),
    "balanced": Scenario("balanced", "auto", cap_gib=12),  # a 12 GB card
    "lowvram": Scenario("lowvram", "auto", cap_gib=8),  # an 8 GB card
}


@dataclasses.dataclass
class Loaded:
    name: str
    scenario: Scenario
    engine: DiffsynthEngine
    config: Config
    cap_fraction: float  # the scenario's memory fraction (1.0 = the whole card)
    load_s: float


@pytest.fixture(scope="session")
def torch_cuda() -> Any:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch


@pytest.fixture(scope="session")
def gpu_models_dir(torch_cuda: Any) -> Path:
    from bench import random_weights as rw

    models_dir = Path(os.environ.get("MAJICBOT_GPU_MODELS", ROOT / ".bench" / "models"))
    rw.write_fixture(models_dir, log=print)
    tokenizers = models_dir / rw.FLUX_DEV
    if not (tokenizers / "tokenizer_2" / "tokenizer_config.json").is_file():
        carried = ROOT / ".bench" / "tokenizers"
        if not carried.is_dir():
            from bench.fixture_tokenizers import write_clip_tokenizer, write_t5_tokenizer

            write_clip_tokenizer(carried / "tokenizer")
            write_t5_tokenizer(carried / "tokenizer_2")
        rw.copy_tokenizers(carried, models_dir)
    return models_dir


@pytest.fixture(scope="session")
def gpu_report() -> Iterator[dict[str, Any]]:
    """Numbers measured by the tests, written to $MAJICBOT_GPU_REPORT at the end."""
    report: dict[str, Any] = {}
    yield report
    path = os.environ.get("MAJICBOT_GPU_REPORT")
    if path:
        Path(path).write_text(json.dumps(report, indent=2, default=str))


# The scenarios serve images up to 1024² (what the tests generate): the activation reserve, and so
# the auto choice under the 12 and 8 GiB caps, follow limits.max_pixels.
MAX_PIXELS = 1024 * 1024


def gpu_config(models_dir: Path, profile: str, data_dir: Path) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        # Compile off: these scenarios compare bytes between calls (the swap to the compiled
        # path would change them); tests/gpu/test_speed_gpu.py covers compile.
        engine=dataclasses.replace(
            base.engine, models_dir=models_dir, profile=profile, devices=("cuda:0",), compile=False
        ),
        storage=dataclasses.replace(base.storage, data_dir=data_dir),
        limits=dataclasses.replace(base.limits, max_pixels=MAX_PIXELS),
    )


def set_cap(torch: Any, fraction: float) -> None:
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction, 0)


@pytest.fixture(scope="module", params=list(SCENARIOS))
def loaded(
    request: pytest.FixtureRequest,
    torch_cuda: Any,
    gpu_models_dir: Path,
    gpu_report: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Loaded]:
    """The product engine loaded for one scenario; closed (and the cap lifted) afterwards."""
    import time

    torch = torch_cuda
    name: str = request.param
    scenario = SCENARIOS[name]
    total = torch.cuda.get_device_properties(0).total_memory
    if scenario.cap_gib is None and total < 70 * GIB and scenario.expect == "gpu":
        pytest.skip("the gpu scenario needs an 80 GB card")
    fraction = 1.0 if scenario.cap_gib is None else scenario.cap_gib * GIB / total
    set_cap(torch, fraction)
    torch.cuda.reset_peak_memory_stats()
    config = gpu_config(gpu_models_dir, scenario.requested, tmp_path_factory.mktemp("data"))
    engine = DiffsynthEngine(EngineSettings.of(config), "cuda:0")
    started = time.perf_counter()
    try:
        engine.load(lambda _state: None)
    except Exception:
        engine.close()
        set_cap(torch, 1.0)
        raise
    load_s = time.perf_counter() - started
    state = engine.state()
    gpu_report[name] = {
        "requested": scenario.requested,
        "cap_gib": scenario.cap_gib,
        "profile": state.profile,
        "reason": state.profile_reason,
        "load_s": load_s,
        "components": [dataclasses.asdict(c) for c in state.components],
        "peak_allocated_load_gib": torch.cuda.max_memory_allocated() / GIB,
    }
    yield Loaded(name, scenario, engine, config, fraction, load_s)
    engine.close()
    set_cap(torch, 1.0)
    gpu_report[name]["allocated_after_close_gib"] = torch.cuda.memory_allocated() / GIB
