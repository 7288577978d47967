"""The real engine code on the tiny FLUX on the CPU: load, generate, cancel, determinism, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from backend.config import Config, EngineSettings
from backend.domain import EngineState, GenerationParams, LoadState, OptimizationState
from backend.engine.diffsynth_engine import DiffsynthEngine
from backend.engine.factory import make_engines
from backend.engine.files import LOAD_ORDER
from backend.engine.protocol import Engine
from backend.errors import EngineError, GenerationCancelled, ModelFilesMissing
from tests.engine.conftest import LoadedEngine, tiny_engine_config
from tests.tinyflux import FLUX_DEV, MAJICFLUS_DIT

PROMPT = "a photo of a cat"


def params(seed: int = 1, steps: int = 2, **changes: object) -> GenerationParams:
    base = GenerationParams(PROMPT, seed, steps, 64, 64, 3.5)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(engine: DiffsynthEngine, p: GenerationParams) -> bytes:
    return engine.generate(p, lambda step, total: None, lambda: False).picture().tobytes()


def test_engine_satisfies_the_protocol(loaded_engine: LoadedEngine) -> None:
    engine: Engine = loaded_engine.engine
    assert engine.device == "cpu"


def test_load_reports_each_component_in_order(loaded_engine: LoadedEngine) -> None:
    transitions = []
    for before, after in zip(loaded_engine.reports, loaded_engine.reports[1:], strict=False):
        for old, new in zip(before.components, after.components, strict=True):
            if old.state is not new.state:
                transitions.append((new.name, new.state))
    expected = [(c.value, s) for c in LOAD_ORDER for s in (LoadState.LOADING, LoadState.READY)]
    assert transitions == expected
    final = loaded_engine.reports[-1]
    assert final.warmed_up and final.ready and final.load_fraction == 1.0
    assert [(c.name, c.device, c.dtype) for c in final.components] == [
        (c.value, "cpu", "bfloat16") for c in LOAD_ORDER
    ]
    assert all(c.bytes_read == c.bytes_total > 0 for c in final.components)
    assert (final.profile, final.error) == ("cpu", None)
    assert final.profile_reason.startswith("device is the CPU")
    assert loaded_engine.engine.state() == final


def test_bytes_total_is_the_size_of_the_files(loaded_engine: LoadedEngine) -> None:
    root = loaded_engine.engine.state()
    models_dir = loaded_engine.engine._config.engine.models_dir
    vae = next(c for c in root.components if c.name == "vae")
    assert vae.bytes_total == (models_dir / FLUX_DEV / "ae.safetensors").stat().st_size


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(
    loaded_engine: LoadedEngine,
) -> None:
    engine = loaded_engine.engine
    first, again, other = run(engine, params(7)), run(engine, params(7)), run(engine, params(8))
    assert first == again
    assert first != other


def test_size_steps_and_guidance_reach_the_pipeline(loaded_engine: LoadedEngine) -> None:
    engine = loaded_engine.engine
    steps: list[tuple[int, int]] = []
    result = engine.generate(params(steps=3, width=128, height=64), _append(steps), lambda: False)
    assert result.picture().size == (128, 64)
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert run(engine, params(guidance=3.5)) != run(engine, params(guidance=7.0))


def test_result_names_profile_model_and_times_each_stage(loaded_engine: LoadedEngine) -> None:
    result = loaded_engine.engine.generate(params(), lambda s, t: None, lambda: False)
    assert (result.profile, result.model, result.prompt_truncated) == ("cpu", "majicflus_v1", False)
    t = result.timings
    assert t.text_encode_s > 0 and t.denoise_s > 0 and t.decode_s > 0 and t.wait_s == 0


def test_cancel_mid_run_raises_and_the_next_job_still_works(loaded_engine: LoadedEngine) -> None:
    engine = loaded_engine.engine
    steps: list[tuple[int, int]] = []
    with pytest.raises(GenerationCancelled):
        engine.generate(params(steps=4), _append(steps), lambda: len(steps) >= 1)
    assert steps == [(1, 4)]
    assert run(engine, params(3)) == run(engine, params(3))


def test_cancel_before_the_first_step(loaded_engine: LoadedEngine) -> None:
    steps: list[tuple[int, int]] = []
    with pytest.raises(GenerationCancelled):
        loaded_engine.engine.generate(params(), _append(steps), lambda: True)
    assert steps == []


def test_prompt_over_the_t5_limit_is_reported_truncated(loaded_engine: LoadedEngine) -> None:
    engine = loaded_engine.engine  # t5_max_tokens = 64; "a" is one token, plus end-of-sequence
    fits = engine.generate(params(prompt="a " * 63), lambda s, t: None, lambda: False)
    over = engine.generate(params(prompt="a " * 64), lambda s, t: None, lambda: False)
    assert (fits.prompt_truncated, over.prompt_truncated) == (False, True)


def test_generate_before_load_is_an_engine_error(tiny_models_dir: Path, tmp_path: Path) -> None:
    engine = DiffsynthEngine(
        EngineSettings.of(tiny_engine_config(tiny_models_dir, tmp_path)), "cpu"
    )
    assert engine.state() == EngineState(
        device="cpu",
        components=engine.state().components,
        warmed_up=False,
        optimization=OptimizationState(detail="not loaded"),
    )
    assert {c.state for c in engine.state().components} == {LoadState.PENDING}
    with pytest.raises(EngineError, match="not loaded"):
        run(engine, params())


def _load_expecting_missing(models_dir: Path, tmp_path: Path) -> tuple[ModelFilesMissing, Engine]:
    engine = DiffsynthEngine(
        EngineSettings.of(tiny_engine_config(models_dir, tmp_path / "data")), "cpu"
    )
    reports: list[EngineState] = []
    with pytest.raises(ModelFilesMissing) as caught:
        engine.load(reports.append)
    assert reports[-1] == engine.state()
    return caught.value, engine


def test_missing_file_lists_it_and_the_download_command(
    linked_models_dir: Path, tmp_path: Path
) -> None:
    (linked_models_dir / FLUX_DEV / "ae.safetensors").unlink()
    error, engine = _load_expecting_missing(linked_models_dir, tmp_path)
    assert str(error) == (
        f"model files missing or unusable under {linked_models_dir}:\n"
        "  - black-forest-labs/FLUX.1-dev/ae.safetensors: missing\n"
        "Fetch them with `majicbot download` (verify with `majicbot download --check`)."
    )
    assert error.key == "error.model_files"
    assert error.params["command"] == "majicbot download"
    state = engine.state()
    assert state.error == str(error) and not state.ready
    assert [(c.name, c.state, c.error) for c in state.components] == [
        ("clip", LoadState.PENDING, None),
        ("t5", LoadState.PENDING, None),
        ("vae", LoadState.FAILED, "missing"),
        ("dit", LoadState.PENDING, None),
    ]


def test_unrecognised_file_is_reported_as_such(linked_models_dir: Path, tmp_path: Path) -> None:
    dit = linked_models_dir / MAJICFLUS_DIT
    dit.unlink()
    save_file({"not.a.flux.layer": torch.zeros(4, 4)}, str(dit))
    error, engine = _load_expecting_missing(linked_models_dir, tmp_path)
    assert (
        "  - MAILAND/majicflus_v1/majicflus_v134.safetensors: not recognised by diffsynth as dit "
        "(unknown key layout)" in str(error).splitlines()
    )
    assert engine.state().components[-1].state is LoadState.FAILED


def test_truncated_file_is_reported_before_loading(linked_models_dir: Path, tmp_path: Path) -> None:
    clip = linked_models_dir / FLUX_DEV / "text_encoder" / "model.safetensors"
    data = clip.read_bytes()
    clip.unlink()
    clip.write_bytes(data[:-100])
    error, _ = _load_expecting_missing(linked_models_dir, tmp_path)
    size = len(data) - 100
    assert (
        f"  - black-forest-labs/FLUX.1-dev/text_encoder/model.safetensors: truncated or damaged: "
        f"{size} bytes, header says {len(data)}" in str(error).splitlines()
    )


def _append(steps: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    return lambda step, total: steps.append((step, total))


def test_make_engines_with_the_shared_tiny_config(tiny_config: Config) -> None:
    engines = make_engines(EngineSettings.of(tiny_config))
    assert [e.device for e in engines] == ["cpu"]
    engines[0].load(lambda state: None)
    side, steps = tiny_config.limits.default_side, tiny_config.limits.default_steps
    p = GenerationParams(PROMPT, 5, steps, side, side, tiny_config.limits.default_guidance)
    result = engines[0].generate(p, lambda s, t: None, lambda: False)
    assert result.picture().size == (64, 64)
    engines[0].close()
