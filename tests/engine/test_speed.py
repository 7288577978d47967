"""Speed features on the CPU: the background compile and its swap (with a counting backend in
place of Inductor), the prompt-embedding cache, the fp8-compute switch and its refusal, and the
auto order with fp8 compute. The GPU side is tests/gpu/test_speed_gpu.py."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from backend.config import Config, EngineSettings, load_config
from backend.domain import GenerationParams, Optimization
from backend.engine.diffsynth_engine import DiffsynthEngine
from backend.engine.fast_path import CompilePlan
from backend.engine.fp8 import fp8_compute_refusal
from backend.engine.optimize import distinct_sizes, image_tokens
from backend.engine.profiles import AUTO_ORDER, choose_profile
from backend.engine.prompt_cache import PromptCache
from backend.errors import ConfigError
from tests.engine.test_profiles import FLUX, GPU, card

PROMPT = "a photo of a cat"


def params(seed: int = 5, side: int = 64, prompt: str = PROMPT) -> GenerationParams:
    return GenerationParams(prompt, seed, 2, side, side, 3.5)


def run(engine: DiffsynthEngine, p: GenerationParams) -> bytes:
    return engine.generate(p, lambda _s, _t: None, lambda: False).picture().tobytes()


def with_engine(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, engine=dataclasses.replace(config.engine, **changes))


class CountingBackend:
    """A torch.compile backend that runs the captured graph as is and counts graphs and runs."""

    def __init__(self) -> None:
        self.graphs = 0
        self.runs = 0

    def __call__(self, graph: Any, _example_inputs: Any) -> Any:
        self.graphs += 1

        def compiled(*args: Any) -> Any:
            self.runs += 1
            return graph.forward(*args)

        return compiled


@pytest.fixture
def one_size(tiny_config: Config) -> Config:
    limits = dataclasses.replace(tiny_config.limits, aspect_ratios=("1:1",))
    return dataclasses.replace(tiny_config, limits=limits)


def test_compile_is_off_on_the_cpu_and_jobs_run_eager(one_size: Config) -> None:
    engine = DiffsynthEngine(EngineSettings.of(one_size), "cpu")
    engine.load(lambda _state: None)
    state = engine.optimization()
    assert state.phase is Optimization.OFF
    assert state.detail == "the CPU runs eager (compile applies to GPUs)"
    assert engine._choice is not None
    off = EngineSettings.of(with_engine(one_size, compile=False))
    plan = CompilePlan(off, "cpu", engine._choice.profile.name, fp8_compute=False)
    assert plan.why_not() == "engine.compile = false"


def test_only_a_resident_dit_on_a_gpu_compiles_in_inductors_default_mode(
    one_size: Config,
) -> None:
    settings = EngineSettings.of(one_size)
    streamed = CompilePlan(settings, "cuda:0", "balanced", fp8_compute=False).why_not()
    assert streamed == "balanced streams DiT layers from CPU RAM; only gpu and gpu-fp8 compile"
    plan = CompilePlan(settings, "cuda:0", "gpu-fp8", fp8_compute=True)
    assert plan.why_not() is None
    compile_settings = plan.compile_settings()
    assert compile_settings.label == "gpu-fp8, fp8 compute"
    assert compile_settings.modes == ("default",)
    assert compile_settings.backend == "inductor"
    assert compile_settings.sizes == distinct_sizes(list(settings.compile_sizes))
    bf16 = CompilePlan(settings, "cuda:0", "gpu", fp8_compute=False).compile_settings()
    assert bf16.modes == ("default",)
    one_stage = EngineSettings.of(with_engine(one_size, compile_mode="default"))
    plan = CompilePlan(one_stage, "cuda:0", "gpu", fp8_compute=False)
    assert plan.compile_settings().modes == ("default",)


def test_max_autotune_is_refused_with_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[engine]\ncompile_mode = "max-autotune-no-cudagraphs"\n')
    with pytest.raises(ConfigError, match="compile_mode"):
        load_config(path, env={}, require_tokens=False)


def test_background_compile_takes_over_between_jobs_and_never_compiles_on_the_job_thread(
    one_size: Config,
) -> None:
    eager = DiffsynthEngine(EngineSettings.of(with_engine(one_size, compile=False)), "cpu")
    eager.load(lambda _state: None)
    expected = run(eager, params())
    backend = CountingBackend()
    settings = EngineSettings.of(with_engine(one_size, compile_mode="default"))
    engine = DiffsynthEngine(settings, "cpu", compile_backend=backend)
    reports: list[Any] = []
    engine.load(reports.append)
    assert reports[-1].ready  # ready before (or while) compiling
    assert engine.optimization().phase in (Optimization.OPTIMIZING, Optimization.OPTIMIZED)
    assert engine._optimizer.wait(120)
    state = engine.optimization()
    assert (state.phase, state.sizes_done, state.sizes_total) == (Optimization.OPTIMIZED, 1, 1)
    assert state.compile_s is not None and state.cache == "cold"
    graphs, backend.runs = backend.graphs, 0
    assert graphs >= 1
    assert run(engine, params()) == expected  # the compiled path, same bytes as eager
    assert backend.runs > 0
    backend.runs = 0
    run(engine, params(side=128))  # a size that was not compiled runs eager
    assert backend.runs == 0
    assert backend.graphs == graphs  # nothing was compiled on the job's thread
    engine.close()
    assert engine.optimization().phase is Optimization.OFF or engine._optimizer is None


class StagedBackend:
    """A counting backend for two compile stages that holds the second stage's first graph until
    ``release`` (or fails it), and records which stage's graphs ran."""

    def __init__(self, first_stage_graphs: int, *, fail_second: bool = False) -> None:
        self.first_stage_graphs = first_stage_graphs
        self.fail_second = fail_second
        self.graphs = 0
        self.ran: list[int] = []  # stage (0 or 1) of every graph call
        self.second_started = threading.Event()
        self.release = threading.Event()

    def __call__(self, graph: Any, _example_inputs: Any) -> Any:
        self.graphs += 1
        stage = 0 if self.graphs <= self.first_stage_graphs else 1
        if stage == 1 and not self.second_started.is_set():
            self.second_started.set()
            assert self.release.wait(60)
            if self.fail_second:
                raise RuntimeError("autotuning failed")

        def compiled(*args: Any) -> Any:
            self.ran.append(stage)
            return graph.forward(*args)

        return compiled


TWO_STAGES = ("default", "max-autotune-no-cudagraphs")


def staged_engine(
    one_size: Config, backend: StagedBackend, monkeypatch: pytest.MonkeyPatch
) -> DiffsynthEngine:
    """An engine whose auto mode compiles two stages (the product compiles one; see fast_path)."""
    monkeypatch.setattr("backend.engine.fast_path.AUTO_MODES_BF16", TWO_STAGES)
    settings = EngineSettings.of(with_engine(one_size, compile_mode="auto"))
    engine = DiffsynthEngine(settings, "cpu", compile_backend=backend)
    engine.load(lambda _state: None)
    assert backend.second_started.wait(120)  # stage 0 is done, stage 1 is compiling
    return engine


def test_a_second_stage_compiles_while_the_first_serves_and_takes_over_between_jobs(
    one_size: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager = DiffsynthEngine(EngineSettings.of(with_engine(one_size, compile=False)), "cpu")
    eager.load(lambda _state: None)
    expected = run(eager, params())
    backend = StagedBackend(first_stage_graphs=2)  # tiny DiT: one double and one single block
    engine = staged_engine(one_size, backend, monkeypatch)
    state = engine.optimization()
    assert (state.phase, state.sizes_done, state.sizes_total) == (Optimization.OPTIMIZING, 1, 2)
    assert state.detail.endswith("; compiling max-autotune-no-cudagraphs in the background")
    assert run(engine, params()) == expected  # the first stage serves meanwhile
    assert backend.ran and set(backend.ran) == {0}
    assert engine._optimizer.installed_mode == "default"
    backend.release.set()
    assert engine._optimizer.wait(120)
    state = engine.optimization()
    assert (state.phase, state.sizes_done, state.sizes_total) == (Optimization.OPTIMIZED, 2, 2)
    assert "default then max-autotune-no-cudagraphs" in state.detail
    modes = [stage["mode"] for stage in engine._optimizer.stages()]
    assert modes == ["default", "max-autotune-no-cudagraphs"]
    backend.ran.clear()
    assert run(engine, params()) == expected  # swapped at the job's start: the second stage only
    assert backend.ran and set(backend.ran) == {1}
    assert engine._optimizer.installed_mode == "max-autotune-no-cudagraphs"
    engine.close()


def test_a_failed_second_stage_leaves_the_first_serving(
    one_size: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = StagedBackend(first_stage_graphs=2, fail_second=True)
    engine = staged_engine(one_size, backend, monkeypatch)
    backend.release.set()
    assert engine._optimizer.wait(120)
    state = engine.optimization()
    assert state.phase is Optimization.OPTIMIZED
    assert "max-autotune-no-cudagraphs failed" in state.detail
    assert "autotuning failed" in state.detail
    backend.ran.clear()
    run(engine, params())
    assert backend.ran and set(backend.ran) == {0}
    assert engine._optimizer.installed_mode == "default"
    engine.close()


def test_the_prompt_cache_serves_rerolls_of_a_prompt(one_size: Config) -> None:
    engine = DiffsynthEngine(
        EngineSettings.of(with_engine(one_size, compile=False, prompt_cache_entries=2)), "cpu"
    )
    engine.load(lambda _state: None)
    cache = engine._prompt_cache
    first = run(engine, params(seed=1))
    misses = cache.misses
    assert run(engine, params(seed=1)) == first  # same bytes from cached embeddings
    run(engine, params(seed=2))
    assert cache.misses == misses and cache.hits >= 2
    for prompt in ("a dog", "a bird", "a fish"):
        run(engine, params(prompt=prompt))
    assert len(cache) == 2  # bounded


def test_prompt_cache_lru_keeps_the_most_recent_entries() -> None:
    cache = PromptCache(2)
    calls: list[str] = []

    def process(_pipe: Any, prompt: str, t5_sequence_length: int, positive: bool) -> dict[str, Any]:
        calls.append(prompt)
        return {"prompt_emb": (prompt, t5_sequence_length, positive)}

    cached = cache.wrap(process)
    assert cached(None, prompt="a", t5_sequence_length=512, positive=True)["prompt_emb"][0] == "a"
    cached(None, prompt="b", t5_sequence_length=512, positive=True)
    cached(None, prompt="a", t5_sequence_length=512, positive=True)  # hit, "a" most recent
    cached(None, prompt="c", t5_sequence_length=512, positive=True)  # evicts "b"
    cached(None, prompt="a", t5_sequence_length=256, positive=True)  # another length: a miss
    cached(None, prompt="b", t5_sequence_length=512, positive=True)
    assert calls == ["a", "b", "c", "a", "b"]
    assert PromptCache(0).get(("a", 512, True)) is None


def test_fp8_compute_is_refused_with_a_sentence_below_compute_capability_8_9() -> None:
    assert fp8_compute_refusal("cuda:0", (9, 0)) is None
    assert fp8_compute_refusal("cuda:0", (8, 9)) is None
    assert fp8_compute_refusal("cuda:0", (8, 6)) == (
        "engine.fp8_compute needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
        "cuda:0 has 8.6, so it runs the lossless bf16 path"
    )
    assert "cpu runs the lossless bf16 path" in str(fp8_compute_refusal("cpu", None))


def test_fp8_compute_on_the_cpu_is_refused_in_the_profile_reason(one_size: Config) -> None:
    engine = DiffsynthEngine(
        EngineSettings.of(with_engine(one_size, compile=False, fp8_compute=True)), "cpu"
    )
    engine.load(lambda _state: None)
    assert not engine.fp8_compute
    assert engine.state().profile_reason.endswith(
        "; engine.fp8_compute needs a CUDA card of compute capability 8.9 or newer; "
        "cpu runs the lossless bf16 path"
    )


def test_auto_prefers_gpu_fp8_only_with_fp8_compute() -> None:
    roomy = card(79.0)
    assert AUTO_ORDER[0] == "gpu"
    assert choose_profile("auto", GPU, roomy, FLUX, 2.0).profile.name == "gpu"
    assert choose_profile("auto", GPU, roomy, FLUX, 2.0, fp8_first=True).profile.name == "gpu-fp8"
    forced = choose_profile("gpu", GPU, roomy, FLUX, 2.0, fp8_first=True)
    assert forced.profile.name == "gpu"


def test_compile_sizes_start_with_the_default_and_merge_transposed_ratios() -> None:
    sizes = list(EngineSettings.of(Config()).compile_sizes)
    assert sizes[0] == (1024, 1024)
    distinct = distinct_sizes(sizes)
    assert distinct[0] == (1024, 1024)
    tokens = [image_tokens(h, w) for h, w in distinct]
    assert len(tokens) == len(set(tokens)) == 4  # 1:1, 4:3 = 3:4, 16:9 = 9:16, 3:2 = 2:3
