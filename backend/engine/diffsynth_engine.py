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

The pieces, in the order ``load`` uses them: ``file_checks`` (present, whole, recognised),
``torch_device`` (the heavy import and every CPU/CUDA call), ``profile_choice`` (measure and
choose), ``component_loader`` (pipeline and components), ``fast_path`` (plain blocks, prompt
cache, the background compile's plan), ``generation`` (warm-up and each pipeline call);
``state_board`` holds the state /status reads.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.config import EngineSettings
from backend.domain import EngineState, GenerationParams, Optimization, OptimizationState
from backend.engine import file_checks
from backend.engine.component_loader import ComponentLoader, new_pipeline
from backend.engine.fast_path import CompilePlan, prepare_fast_path
from backend.engine.files import LOAD_ORDER, ModelFiles, model_files
from backend.engine.generation import run_pipeline, warm_up
from backend.engine.profile_choice import decide_profile
from backend.engine.profiles import Choice
from backend.engine.protocol import CancelCheck, GenerationResult, LoadReport, StepCallback
from backend.engine.state_board import StateBoard
from backend.engine.torch_device import TorchDevice, check_available, import_torch
from backend.errors import EngineError
from backend.loading import MODEL_LOADS

log = logging.getLogger(__name__)


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
        self._loader: ComponentLoader | None = None  # keeps the pinned arena until close
        self._device = "cuda:0" if device == "cuda" else device
        self._board = StateBoard(self._device, self.optimization)
        self._files: ModelFiles = model_files(settings)
        self._pipe: Any = None
        self._choice: Choice | None = None
        self._torch_device: TorchDevice | None = None  # once load imported torch

    @property
    def device(self) -> str:
        return self._device

    # ---- state ---------------------------------------------------------------------------

    def state(self) -> EngineState:
        """Current snapshot; safe from any thread (VRAM figures are refreshed by the engine)."""
        return self._board.snapshot()

    def optimization(self) -> OptimizationState:
        """Where the compiled path stands ("optimizing…" / "optimized"); safe from any thread."""
        optimizer = self._optimizer
        return optimizer.state() if optimizer is not None else self._optimization

    @property
    def fp8_compute(self) -> bool:
        """True when the DiT's matmuls run in fp8 (engine.fp8_compute on a capable card)."""
        return self._fp8_compute

    # ---- load ----------------------------------------------------------------------------

    def load(self, report: LoadReport) -> None:
        """Check files, import torch/diffsynth, choose the profile, load CLIP, T5, VAE, then the
        DiT, then warm up. Raises ModelFilesMissing, ProfileDoesNotFit or EngineError."""
        try:
            self._load(report)
        except EngineError as exc:
            self._board.update(report, error=exc.detail)
            raise
        except Exception as exc:  # an unexpected failure still leaves a readable state
            error = EngineError(f"engine {self._device} failed to load: {exc!r}")
            self._board.update(report, error=error.detail)
            raise error from exc

    def _load(self, report: LoadReport) -> None:
        board = self._board
        self._files = files = model_files(self._config)  # files may have appeared since
        file_checks.report_totals(board, report, files)
        file_checks.check_present(board, report, files)
        self._torch_device = device = import_torch(self._device)
        check_available(device)
        file_checks.check_recognised(board, report, files)
        choice = self._choose(report, device)
        pipe = new_pipeline(device, files)
        self._loader = loader = ComponentLoader(
            device, files, choice, board, pinned_streaming=self._pinned_streaming
        )
        with MODEL_LOADS:  # diffsynth's loader patches process-wide torch state
            for component in LOAD_ORDER:
                loader.load(report, pipe, component)
        pipe.vram_management_enabled = pipe.check_vram_management_state()
        self._pipe = pipe
        self._prompt_cache = prepare_fast_path(
            device, pipe, choice.profile.name, fp8_compute=self._fp8_compute,
            prompt_cache_entries=self._config.engine.prompt_cache_entries,
        )  # fmt: skip
        if self._config.engine.warmup:
            warm_up(self.generate, self._device)
        board.refresh_vram(device)
        board.update(report, warmed_up=True)
        self._start_compile(device, pipe, choice, report)

    def _choose(self, report: LoadReport, device: TorchDevice) -> Choice:
        decision = decide_profile(self._config, device, self._files)
        self._fp8_compute = decision.fp8_compute
        self._choice = choice = decision.choice
        self._board.update(
            report,
            profile=choice.profile.name,
            profile_reason=decision.reason,
            device_name=device.name(),
        )
        return choice

    def _start_compile(
        self, device: TorchDevice, pipe: Any, choice: Choice, report: LoadReport
    ) -> None:
        """Compile the DiT blocks in a background thread (``backend.engine.optimize``)."""
        from backend.engine.optimize import BlockOptimizer

        plan = CompilePlan(
            self._config, self._device, choice.profile.name, self._fp8_compute,
            self._compile_backend,
        )  # fmt: skip
        why_not = plan.why_not()
        if why_not is not None:
            self._optimization = OptimizationState(Optimization.OFF, why_not)
            report(self.state())
            return

        def changed(state: OptimizationState) -> None:  # compile thread
            log.info("engine %s: %s — %s", self._device, state.phase, state.detail)
            report(self.state())

        self._optimizer = BlockOptimizer(device.torch, pipe.dit, plan.compile_settings(), changed)
        self._optimizer.start()
        report(self.state())

    # ---- generate ------------------------------------------------------------------------

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        """Run one generation; raises GenerationCancelled, OutOfMemory or EngineError."""
        pipe, device = self._pipe, self._torch_device
        if pipe is None or device is None:
            raise EngineError(f"engine {self._device} is not loaded")
        if self._optimizer is not None:
            self._optimizer.install_if_ready()  # between jobs: no image mixes both paths
        try:
            image, clock, truncated = run_pipeline(
                pipe, device, params, on_step, cancelled, self._config.engine.t5_max_tokens
            )
        finally:
            self._board.refresh_vram(device)
        profile = self._choice.profile.name if self._choice else ""
        return GenerationResult(
            image, clock.timings(), truncated, profile=profile, model=self._config.engine.model
        )

    def close(self) -> None:
        """Drop the pipeline and give its GPU memory back. Safe to call more than once."""
        if self._optimizer is not None:
            self._optimizer.close()
            self._optimizer = None
        self._pipe = None
        self._loader = None
        if self._torch_device is not None:
            self._torch_device.release()  # the caches, and the pinned weights back to the OS
