"""The FLUX.1 engine on DiffSynth-Studio: one ``FluxImagePipeline`` on one device.

Usage (what a worker does, always from its own thread)::

    engine = DiffsynthEngine(EngineSettings.of(config), "cuda:0")  # cheap: no torch import
    engine.load(report)                  # imports torch/diffsynth, loads, warms up
    result = engine.generate(params, on_step, cancelled)
    engine.state()                       # from any thread
    engine.close()

Loading composes the pipeline the way ``FluxImagePipeline.from_pretrained`` does (detect each file
by diffsynth's key hash against ``MODEL_CONFIGS``, then ``ModelPool.load_model_file`` with a
``vram_config``), but one component at a time, in the order CLIP, T5, VAE, DiT, so that each one's
progress can be reported and the placement of each comes from the chosen profile
(``backend.engine.profiles``). Nothing touches the network: files are checked first, and
``DIFFSYNTH_SKIP_DOWNLOAD`` is set for anything diffsynth might otherwise fetch.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from backend.config import EngineSettings
from backend.domain import (
    ComponentState,
    EngineState,
    GenerationParams,
    LoadState,
    Optimization,
    OptimizationState,
    Timings,
)
from backend.engine.files import (
    LOAD_ORDER,
    Component,
    ModelFiles,
    check_files,
    component_parameters,
    describe_problems,
    model_files,
)
from backend.engine.profiles import Choice, Memory, Placement, choose_profile
from backend.engine.protocol import CancelCheck, GenerationResult, LoadReport, StepCallback
from backend.engine.readahead import ReadAhead
from backend.errors import (
    EngineError,
    GenerationCancelled,
    ModelFilesMissing,
    OutOfMemory,
    ProfileDoesNotFit,
)
from backend.loading import MODEL_LOADS

log = logging.getLogger(__name__)

WARMUP_STEPS = 1
WARMUP_SIDE_GPU = 256
WARMUP_SIDE_CPU = 64
# Profiles whose DiT is resident on the GPU: their blocks can be made plain and compiled.
RESIDENT_PROFILES = ("gpu", "gpu-fp8")
# engine.compile_mode = "auto" is Inductor's default mode for both paths. Measured on an H200
# (BENCHMARKS.md): max-autotune-no-cudagraphs makes the fp8 step 19 % faster but its cold compile
# took 180 s alone and did not finish in 250 s beside a serving engine, against ~8-16 s.
AUTO_MODE_FP8 = "default"
AUTO_MODE_BF16 = "default"


class DiffsynthEngine:
    """One FLUX pipeline on one device ("cpu" or "cuda:N"); implements ``Engine``."""

    def __init__(
        self,
        settings: EngineSettings,
        device: str,
        *,
        pinned_streaming: bool = True,
        compile_backend: Any = None,
    ) -> None:
        """``pinned_streaming=False`` keeps diffsynth's own weight streaming for components that
        rest in CPU RAM (``backend.engine.streaming`` explains the fix; the GPU bench turns it off
        to measure the difference). ``compile_backend`` replaces Inductor in the background
        compile (tests pass "eager" or a counting callable; it also allows compiling on the CPU,
        which the product never does)."""
        self._config = settings
        self._compile_backend = compile_backend
        self._optimizer: Any = None  # BlockOptimizer once compiling
        self._optimization = OptimizationState(detail="not loaded")
        self._fp8_compute = False
        self._prompt_cache: Any = None  # PromptCache
        self._pinned_streaming = pinned_streaming
        self._streaming: Any = None  # (PinnedArena, VramGate) once a component needs them
        self._device = "cuda:0" if device == "cuda" else device
        self._lock = threading.Lock()
        self._files: ModelFiles = model_files(settings)
        components = tuple(ComponentState(c.value) for c in LOAD_ORDER)
        self._state = EngineState(device=self._device, components=components)
        self._pipe: Any = None
        self._choice: Choice | None = None
        self._torch: Any = None

    @property
    def device(self) -> str:
        return self._device

    # ---- state ---------------------------------------------------------------------------

    def state(self) -> EngineState:
        """Current snapshot; safe from any thread (VRAM figures are refreshed by the engine)."""
        with self._lock:
            state = self._state
        return dataclasses.replace(state, optimization=self.optimization())

    def optimization(self) -> OptimizationState:
        """Where the compiled path stands ("optimizing…" / "optimized"); safe from any thread."""
        optimizer = self._optimizer
        return optimizer.state() if optimizer is not None else self._optimization

    @property
    def fp8_compute(self) -> bool:
        """True when the DiT's matmuls run in fp8 (engine.fp8_compute on a capable card)."""
        return self._fp8_compute

    def _update(self, report: LoadReport | None = None, **changes: Any) -> None:
        with self._lock:
            self._state = dataclasses.replace(self._state, **changes)
        if report is not None:
            report(self.state())

    def _set_component(self, report: LoadReport, component: Component, **changes: Any) -> None:
        with self._lock:
            parts = tuple(
                dataclasses.replace(c, **changes) if c.name == component.value else c
                for c in self._state.components
            )
            self._state = dataclasses.replace(self._state, components=parts)
        report(self.state())

    # ---- load ----------------------------------------------------------------------------

    def load(self, report: LoadReport) -> None:
        """Check files, import torch/diffsynth, choose the profile, load CLIP, T5, VAE, then the
        DiT, then warm up. Raises ModelFilesMissing, ProfileDoesNotFit or EngineError."""
        try:
            self._load(report)
        except EngineError as exc:
            self._update(report, error=exc.detail)
            raise
        except Exception as exc:  # an unexpected failure still leaves a readable state
            error = EngineError(f"engine {self._device} failed to load: {exc!r}")
            self._update(report, error=error.detail)
            raise error from exc

    def _load(self, report: LoadReport) -> None:
        self._files = model_files(self._config)  # files may have appeared since construction
        self._report_totals(report)
        self._check_files(report)
        torch = self._import_heavy()
        self._check_recognised(report)
        choice = self._choose(report)
        pipe = self._new_pipeline()
        with MODEL_LOADS:  # diffsynth's loader patches process-wide torch state
            for component in LOAD_ORDER:
                self._load_component(report, pipe, component, choice.profile.placement(component))
        pipe.vram_management_enabled = pipe.check_vram_management_state()
        self._pipe = pipe
        self._prepare_fast_path(torch, pipe, choice)
        if self._config.engine.warmup:
            self._warm_up()
        self._refresh_vram(torch)
        self._update(report, warmed_up=True)
        self._start_compile(torch, pipe, choice, report)

    def _report_totals(self, report: LoadReport) -> None:
        for comp in self._files.components:
            self._set_component(report, comp.component, bytes_total=comp.bytes_total)

    def _check_files(self, report: LoadReport) -> None:
        problems = check_files(self._files)
        if problems:
            self._fail_missing(report, problems)

    def _check_recognised(self, report: LoadReport) -> None:
        from backend.engine.detect import recognise

        problems = recognise(self._files)
        if problems:
            self._fail_missing(report, problems)

    def _fail_missing(self, report: LoadReport, problems: list[Any]) -> None:
        message = describe_problems(self._files, problems)
        for comp in self._files.components:
            reasons = [p.reason for p in problems if p.path in comp.expected]
            if reasons:
                error = "; ".join(dict.fromkeys(reasons))
                self._set_component(report, comp.component, state=LoadState.FAILED, error=error)
        files = [p.describe(self._files.models_dir) for p in problems]
        raise ModelFilesMissing(message, files="\n".join(files), command="majicbot download")

    def _import_heavy(self) -> Any:
        os.environ.setdefault("DIFFSYNTH_SKIP_DOWNLOAD", "True")
        import diffsynth  # noqa: F401  (slow: ~8 s on a small CPU; torchvision comes with it)
        import torch

        self._torch = torch
        if self._device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(f"engine.devices lists {self._device} but CUDA is not available")
        if not hasattr(torch.cpu, "empty_cache"):
            # diffsynth calls torch.<device type>.empty_cache(); torch.cpu has none.
            setattr(torch.cpu, "empty_cache", lambda: None)  # noqa: B010
        return torch

    def _choose(self, report: LoadReport) -> Choice:
        memory = self._measure_memory()
        params = component_parameters(self._files)
        engine = self._config.engine
        max_pixels = self._config.max_pixels
        refusal = self._fp8_refusal() if engine.fp8_compute else None
        fp8_wanted = engine.fp8_compute and refusal is None
        choice = choose_profile(
            engine.profile, self._device, memory, params, engine.vram_margin_gb, max_pixels,
            fp8_first=fp8_wanted,
        )  # fmt: skip
        self._fp8_compute = fp8_wanted and choice.profile.name == "gpu-fp8"
        reason = choice.reason + _fp8_note(engine.fp8_compute, self._fp8_compute, refusal)
        log.info("engine %s: profile %s — %s", self._device, choice.profile.name, reason)
        self._choice = choice
        self._update(
            report,
            profile=choice.profile.name,
            profile_reason=reason,
            device_name=self._device_name(),
        )
        return choice

    def _fp8_refusal(self) -> str | None:
        from backend.engine.fp8 import fp8_compute_refusal

        capability = None
        if self._device.startswith("cuda"):
            capability = tuple(self._torch.cuda.get_device_capability(self._device))
        return fp8_compute_refusal(self._device, capability)

    # ---- speed: plain blocks, fp8 compute, attention backend, prompt cache, compile -----------

    def _prepare_fast_path(self, torch: Any, pipe: Any, choice: Choice) -> None:
        """Make the resident DiT's blocks plain (fp8 matmuls with fp8 compute), put cuDNN
        attention first, and the text-embedding cache in front of the encoders."""
        from backend.engine import prompt_cache

        if self._device.startswith("cuda"):
            from backend.engine.optimize import prefer_cudnn_attention

            prefer_cudnn_attention(torch)
        if choice.profile.name in RESIDENT_PROFILES:
            from backend.engine.fp8 import ROWWISE_CAPABILITY, plain_blocks

            capability = tuple(torch.cuda.get_device_capability(self._device))
            done = plain_blocks(
                pipe.dit, fp8_compute=self._fp8_compute, rowwise=capability >= ROWWISE_CAPABILITY
            )
            log.info(
                "engine %s: DiT blocks made plain (%d linears, %d norms, %.2f GB of weights; "
                "fp8 compute %s)", self._device, done.linears, done.norms,
                done.weight_bytes / 1e9, "on" if self._fp8_compute else "off",
            )  # fmt: skip
            self._free_cache()
        entries = self._config.engine.prompt_cache_entries
        if entries > 0:
            self._prompt_cache = prompt_cache.PromptCache(entries)
            prompt_cache.install(pipe, self._prompt_cache)

    def _start_compile(self, torch: Any, pipe: Any, choice: Choice, report: LoadReport) -> None:
        """Compile the DiT blocks in a background thread (``backend.engine.optimize``)."""
        from backend.engine.optimize import BlockOptimizer

        why_not = self._why_not_compiled(choice)
        if why_not is not None:
            self._optimization = OptimizationState(Optimization.OFF, why_not)
            report(self.state())
            return
        settings = self._compile_settings(choice)

        def changed(state: OptimizationState) -> None:  # compile thread
            log.info("engine %s: %s — %s", self._device, state.phase, state.detail)
            report(self.state())

        self._optimizer = BlockOptimizer(torch, pipe.dit, settings, changed)
        self._optimizer.start()
        report(self.state())

    def _why_not_compiled(self, choice: Choice) -> str | None:
        if not self._config.engine.compile:
            return "engine.compile = false"
        if self._compile_backend is not None:
            return None
        if not self._device.startswith("cuda"):
            return "the CPU runs eager (compile applies to GPUs)"
        if choice.profile.name not in RESIDENT_PROFILES:
            name = choice.profile.name
            return f"{name} streams DiT layers from CPU RAM; only gpu and gpu-fp8 compile"
        return None

    def _compile_settings(self, choice: Choice) -> Any:
        from backend.engine.optimize import CompileSettings, distinct_sizes

        engine, fp8 = self._config.engine, self._fp8_compute
        mode = engine.compile_mode
        if mode == "auto":
            mode = AUTO_MODE_FP8 if fp8 else AUTO_MODE_BF16
        label = f"{choice.profile.name}, {'fp8 compute' if fp8 else 'bf16 compute'}"
        return CompileSettings(
            device=self._device,
            sizes=distinct_sizes(list(self._config.compile_sizes)),
            text_tokens=engine.t5_max_tokens,
            label=label,
            mode=mode,
            backend=self._compile_backend or "inductor",
            cache_dir=self._config.data_dir.resolve() / "compile",
        )

    def _measure_memory(self) -> Memory:
        host = _host_available_bytes()
        if self._device == "cpu":
            return Memory(vram_free=0, vram_total=0, host_available=host)
        torch = self._torch
        driver_free, total = torch.cuda.mem_get_info(self._device)
        free = driver_free
        fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
        if fraction is not None:
            # set_per_process_memory_fraction caps this process below what the driver reports.
            cap = int(fraction(self._device) * total) - torch.cuda.memory_reserved(self._device)
            free = min(free, cap)
        return Memory(free, total, host, vram_device_used=total - driver_free)

    def _device_name(self) -> str:
        if self._device == "cpu":
            return f"CPU {platform.machine()} ({os.cpu_count()} threads)"
        return str(self._torch.cuda.get_device_name(self._device))

    def _new_pipeline(self) -> Any:
        import transformers
        from diffsynth.pipelines.flux_image import FluxImagePipeline

        # The classes FluxImagePipeline.from_pretrained uses (T5TokenizerFast is a lazy alias).
        t5_tokenizer: Any = transformers.T5TokenizerFast
        clip_tokenizer: Any = transformers.CLIPTokenizer
        pipe = FluxImagePipeline(device=self._device, torch_dtype=self._torch.bfloat16)
        pipe.tokenizer_1 = clip_tokenizer.from_pretrained(str(self._files.tokenizer_1))
        pipe.tokenizer_2 = t5_tokenizer.from_pretrained(str(self._files.tokenizer_2))
        return pipe

    def _load_component(
        self, report: LoadReport, pipe: Any, component: Component, placement: Placement
    ) -> None:
        from diffsynth.models.model_loader import ModelPool

        from backend.engine.detect import diffsynth_path, model_entries

        files = self._files.of(component)
        rest = placement.rest
        self._set_component(
            report, component, state=LoadState.LOADING, device=rest.device, dtype=rest.dtype
        )
        started = time.perf_counter()
        pool, path = ModelPool(), diffsynth_path(files)
        vram_config = self._vram_config(placement)
        limit = self._choice.vram_limit_gb if self._choice and placement.managed else None

        def read(count: int) -> None:  # read-ahead thread
            elapsed = time.perf_counter() - started
            self._set_component(
                report, component, bytes_read=min(count, files.bytes_total), seconds=elapsed
            )

        try:
            with ReadAhead(files.paths, read):
                for name, entry in model_entries(files).items():
                    model = pool.load_model_file(entry, path, vram_config, vram_limit=limit)
                    self._stream_pinned(component, placement, model)
                    setattr(pipe, _PIPE_ATTRIBUTES[name], model)
        except Exception as exc:
            seconds = time.perf_counter() - started
            self._set_component(
                report, component, state=LoadState.FAILED, seconds=seconds, error=str(exc)
            )
            raise self._load_error(component, exc) from exc
        seconds = time.perf_counter() - started
        self._set_component(
            report, component, state=LoadState.READY, bytes_read=files.bytes_total, seconds=seconds
        )
        self._refresh_vram(self._torch, report)
        log.info("engine %s: %s ready in %.1f s on %s", self._device, component, seconds, rest)

    def _stream_pinned(self, component: Component, placement: Placement, model: Any) -> None:
        """Pin a CPU-resting component and patch its layer wrappers (``backend.engine.streaming``);
        nothing happens on the CPU device or for components resident on the GPU."""
        from backend.engine import streaming

        rest, device = placement.rest.device, placement.computation.device
        if not (placement.managed and self._pinned_streaming):
            return
        if not streaming.wants_pinned_streaming(rest, device):
            return
        if self._streaming is None:
            arena = streaming.PinnedArena(streaming.pinned_allocator)
            self._streaming = (arena, streaming.VramGate(streaming.cuda_used_gib))
        arena, gate = self._streaming
        done = streaming.apply(model, arena, gate)
        log.info(
            "engine %s: %s pinned %.2f GB in %d tensors of %d layers in %.1f s (%d layers left "
            "to diffsynth: %s)",
            self._device, component, done.bytes_pinned / 1e9, done.tensors, done.wrappers,
            done.seconds, done.skipped, ", ".join(sorted(done.skipped_kinds)) or "none",
        )  # fmt: skip

    def _vram_config(self, placement: Placement) -> dict[str, Any]:
        def dtype(name: str | None) -> Any:
            return None if name is None else getattr(self._torch, name)

        config: dict[str, Any] = {}
        for state in ("offload", "onload", "preparing", "computation"):
            place = getattr(placement, state)
            config[f"{state}_device"] = None if place is None else place.device
            config[f"{state}_dtype"] = dtype(None if place is None else place.dtype)
        return config

    def _load_error(self, component: Component, exc: BaseException) -> EngineError:
        profile = self._choice.profile.name if self._choice else "?"
        if isinstance(exc, self._torch.OutOfMemoryError):
            self._free_cache()
            return ProfileDoesNotFit(
                f"out of memory while loading the {component.value} with profile {profile} on "
                f"{self._device}; choose a smaller engine.profile (balanced or lowvram)",
                profile=profile,
            )
        return EngineError(f"loading the {component.value} failed: {exc}")

    def _warm_up(self) -> None:
        side = WARMUP_SIDE_CPU if self._device == "cpu" else WARMUP_SIDE_GPU
        params = GenerationParams("warm-up", 0, WARMUP_STEPS, side, side, 3.5)
        started = time.perf_counter()
        self.generate(params, lambda step, total: None, lambda: False)
        log.info("engine %s: warm-up took %.1f s", self._device, time.perf_counter() - started)

    # ---- generate ------------------------------------------------------------------------

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        """Run one generation; raises GenerationCancelled, OutOfMemory or EngineError."""
        pipe = self._pipe
        if pipe is None:
            raise EngineError(f"engine {self._device} is not loaded")
        if self._optimizer is not None:
            self._optimizer.install_if_ready()  # between jobs: no image mixes both paths
        torch = self._torch
        clock = _StageClock(self._synchronize)
        progress = _progress(clock, on_step, cancelled, self._step_marker)
        truncated = self._t5_token_count(params.prompt) > self._config.engine.t5_max_tokens
        try:
            image = pipe(
                prompt=params.prompt,
                seed=params.seed,
                num_inference_steps=params.steps,
                height=params.height,
                width=params.width,
                embedded_guidance=params.guidance,
                t5_sequence_length=self._config.engine.t5_max_tokens,
                rand_device="cpu",
                progress_bar_cmd=progress,
            )
        except torch.OutOfMemoryError as exc:
            self._free_cache()
            raise OutOfMemory(
                f"CUDA out of memory on {self._device} at {params.width}x{params.height}: {exc}",
                width=params.width,
                height=params.height,
            ) from None
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"generation failed on {self._device}: {exc!r}") from exc
        finally:
            self._refresh_vram(torch)
        profile = self._choice.profile.name if self._choice else ""
        return GenerationResult(
            image, clock.timings(), truncated, profile=profile, model=self._config.engine.model
        )

    def _t5_token_count(self, prompt: str) -> int:
        """Tokens T5 would see, end-of-sequence included (the pipeline cuts at t5_max_tokens)."""
        return len(self._pipe.tokenizer_2(prompt, truncation=False).input_ids)

    def _synchronize(self) -> None:
        if self._device != "cpu":
            self._torch.cuda.synchronize(self._device)

    def _step_marker(self) -> Callable[[], None]:
        """Mark the work queued so far; the returned call waits for it (no-op on the CPU)."""
        if self._device == "cpu":
            return _nothing
        event = self._torch.cuda.Event()
        event.record()
        return event.synchronize  # type: ignore[no-any-return]

    def _free_cache(self) -> None:
        gc.collect()
        if self._device != "cpu":
            self._torch.cuda.empty_cache()

    def _refresh_vram(self, torch: Any, report: LoadReport | None = None) -> None:
        if self._device == "cpu" or torch is None:
            return
        free, total = torch.cuda.mem_get_info(self._device)
        self._update(report, vram_used_bytes=total - free, vram_total_bytes=total)

    def close(self) -> None:
        """Drop the pipeline and give its GPU memory back. Safe to call more than once."""
        if self._optimizer is not None:
            self._optimizer.close()
            self._optimizer = None
        self._pipe = None
        self._streaming = None
        if self._torch is not None:
            self._free_cache()
            host_empty_cache = getattr(self._torch._C, "_host_emptyCache", None)
            if self._device != "cpu" and host_empty_cache is not None:
                host_empty_cache()  # give the pinned weights back to the OS


_PIPE_ATTRIBUTES = {
    "flux_text_encoder_clip": "text_encoder_1",
    "flux_text_encoder_t5": "text_encoder_2",
    "flux_vae_encoder": "vae_encoder",
    "flux_vae_decoder": "vae_decoder",
    "flux_dit": "dit",
}


class _StageClock:
    """Splits one pipeline call into text encoding, denoising and decoding.

    The pipeline runs its units (text encoders, noise, ids) and then calls ``progress_bar_cmd``
    on the timesteps: that call ends "text encode" (it includes moving the DiT into place, which
    the pipeline does just before); the end of the step iterator ends "denoise"; the rest until
    the image is returned is "decode". On CUDA each boundary synchronises so the times are real.
    """

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._synchronize = synchronize
        self._start = time.perf_counter()
        self._denoise_start: float | None = None
        self._denoise_end: float | None = None

    def denoise_started(self) -> None:
        self._synchronize()
        self._denoise_start = time.perf_counter()

    def denoise_finished(self) -> None:
        self._synchronize()
        self._denoise_end = time.perf_counter()

    def timings(self) -> Timings:
        self._synchronize()
        end = time.perf_counter()
        denoise_start = self._denoise_start or end
        denoise_end = self._denoise_end or end
        return Timings(
            text_encode_s=denoise_start - self._start,
            denoise_s=denoise_end - denoise_start,
            decode_s=end - denoise_end,
        )


def _nothing() -> None:
    return None


def _progress(
    clock: _StageClock,
    on_step: StepCallback,
    cancelled: CancelCheck,
    marker: Callable[[], Callable[[], None]],
) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """A ``progress_bar_cmd``: reports each finished step, raises when the job is cancelled.

    No host sync per step: after step N has been queued, the loop waits only for step N-1 and
    reports it, so the GPU always has the next step in its queue (a sync per step would leave it
    idle while Python prepares each step). A cancel therefore lands after one more step.
    """

    def wrap(timesteps: Iterable[Any]) -> Iterator[Any]:
        items = list(timesteps)
        total = len(items)
        clock.denoise_started()
        pending: Callable[[], None] | None = None
        for index, timestep in enumerate(items):
            if cancelled():
                raise GenerationCancelled(f"cancelled before step {index + 1} of {total}")
            yield timestep
            queued = marker()
            if pending is not None:
                pending()
                on_step(index, total)
            pending = queued
        if pending is not None:
            pending()
            on_step(total, total)
        clock.denoise_finished()

    return wrap


def _fp8_note(wanted: bool, active: bool, refusal: str | None) -> str:
    """The sentence /status adds to the profile reason about engine.fp8_compute."""
    if not wanted:
        return ""
    if refusal is not None:
        return f"; {refusal}"
    if active:
        return "; fp8 compute on (fp8 weights and fp8 matmuls in the DiT)"
    return "; engine.fp8_compute applies to gpu-fp8 only, this profile computes in bf16"


def _host_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
