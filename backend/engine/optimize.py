"""Compile the DiT's repeated blocks in a background thread, in stages; the engine swaps each
stage in between jobs.

Lifecycle (one ``BlockOptimizer`` per engine)::

    optimizer = BlockOptimizer(torch, dit, settings, on_change)   # engine thread, after warm-up
    optimizer.start()                   # background thread: load artefacts, compile, warm, save
    optimizer.install_if_ready()        # engine thread, at the start of every job
    optimizer.state()                   # any thread: OFF / OPTIMIZING / OPTIMIZED / FAILED
    optimizer.close()

Stages (``CompileSettings.modes``): the first mode compiles in seconds (Inductor's ``default``)
and is swapped in as soon as its first image size is ready; a later mode (e.g.
``max-autotune-no-cudagraphs``) compiles after it, while the first stage serves, and is swapped in
once all its sizes are ready. The product uses one stage (``fast_path``): on torch 2.11 a
max-autotune compile in this process broke the serving thread's jobs (FX tracing patches
``torch.nn.Module.__call__`` process-wide), so a later stage must first be compiled out of
process. ``state()`` stays OPTIMIZING until the last stage is in (``sizes_done`` counts
sizes over all stages); a later stage that fails leaves the earlier one serving.

How the swap stays safe:
- Each stage compiles its own copy of ``_call_block`` (``stage_function``: the same code under
  another code object) with ``torch.compile(..., dynamic=False)`` and calls it once per block and
  configured image size with inputs of the exact shapes, dtypes and (contiguous) strides that
  ``model_fn_flux_image`` passes. Dynamo keys its cache on the code object, with guards on types
  and tensor metadata, so the 19 double and 38 single blocks share one graph per block kind and
  size; the separate code objects keep the stages' graphs apart (run-only mode below takes the
  first cached graph whose guards pass, whichever backend made it: with one shared code object a
  job would pick up a later stage's graphs the moment they were compiled, mid-image).
- ``install_if_ready`` (engine thread, between jobs, so that no image mixes two paths) sets each
  block's ``_compiled_call_impl`` to ``torch._dynamo.run(compiled)`` bound to the block:
  *run-only* mode, which uses a cached graph when its guards pass and otherwise runs the block
  eagerly — it never compiles. A size that was not compiled (or a guard that fails) therefore
  costs nothing but speed; no user ever waits for a compile.
- The compile thread runs its kernels on its own CUDA stream, so that autotuning times its
  candidates with events on a stream that carries nothing else.
- Artefacts persist under ``<data_dir>/compile``: ``torch.compiler.save_cache_artifacts()`` after
  each stage (the file grows: it holds every stage so far), ``load_cache_artifacts`` before the
  first, plus a persistent Inductor cache directory, so a restart compiles from caches.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.domain import Optimization, OptimizationState

log = logging.getLogger(__name__)

OnChange = Callable[[OptimizationState], None]


@dataclass(frozen=True)
class CompileSettings:
    """What to compile and where its artefacts live."""

    device: str
    sizes: tuple[tuple[int, int], ...]  # (height, width); the first is compiled first
    text_tokens: int  # T5 sequence length (the text part of every attention)
    label: str  # e.g. "gpu-fp8, fp8 compute" (shown in /status and in the cache key)
    modes: tuple[str, ...] = ("default",)  # torch.compile modes, one stage each, in order
    backend: Any = "inductor"  # tests pass "eager" or a counting callable
    cache_dir: Path | None = None  # None: nothing persists

    @property
    def mode(self) -> str:
        """The mode of the last stage (what serves once everything is compiled)."""
        return self.modes[-1]


def image_tokens(height: int, width: int) -> int:
    """Image tokens of the DiT at this pixel size (16 px per token side: VAE /8, patch 2)."""
    return (height // 16) * (width // 16)


def distinct_sizes(sizes: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Keep the first size of each token count (W×H and H×W give the same block shapes)."""
    seen: dict[int, tuple[int, int]] = {}
    for height, width in sizes:
        seen.setdefault(image_tokens(height, width), (height, width))
    return tuple(seen.values())


def _call_block(block: Any, *args: Any, **kwargs: Any) -> Any:
    """What a stage compiles: one DiT block's forward (each stage traces its own copy)."""
    return block.forward(*args, **kwargs)


def stage_function(index: int, mode: str) -> Callable[..., Any]:
    """``_call_block`` under a code object of its own (Dynamo's cache is per code object)."""
    name = f"_call_block_stage{index}_{mode.replace('-', '_')}"
    code = _call_block.__code__.replace(co_name=name, co_qualname=name)
    function: Callable[..., Any] = types.FunctionType(code, _call_block.__globals__, name)
    return function


@dataclass
class _Stage:
    mode: str
    compiled: Any  # torch.compile(stage_function(...))
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)
    seconds: float | None = None  # compile and warm-up of every size
    ready_at: float | None = None  # time.time() when it could first be swapped in


class BlockOptimizer:
    """Compiles ``dit.blocks`` and ``dit.single_blocks`` off the engine thread, stage by stage."""

    def __init__(
        self, torch: Any, dit: Any, settings: CompileSettings, on_change: OnChange
    ) -> None:
        self._torch = torch
        self._dit = dit
        self._blocks = [*dit.blocks, *dit.single_blocks]
        self._settings = settings
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = OptimizationState(
            Optimization.OPTIMIZING,
            f"compiling the DiT blocks ({settings.label}, {settings.modes[0]})",
            sizes_total=len(settings.sizes) * len(settings.modes),
        )
        self._stages: list[_Stage] = []
        self._installed = -1  # index of the stage in use; -1: eager
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- any thread ----------------------------------------------------------------------

    def state(self) -> OptimizationState:
        with self._lock:
            return self._state

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every stage finished (or failed); True when it finished in time."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stages(self) -> list[dict[str, Any]]:
        """Per stage so far: mode, whether it can be swapped in, compile seconds (bench)."""
        with self._lock:
            stages = list(self._stages)
        return [
            {"mode": s.mode, "ready": s.ready.is_set(), "seconds": s.seconds,
             "ready_at": s.ready_at}
            for s in stages
        ]  # fmt: skip

    @property
    def installed_mode(self) -> str | None:
        """The mode of the stage that serves now (None: eager)."""
        with self._lock:
            return self._stages[self._installed].mode if self._installed >= 0 else None

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state = dataclasses.replace(self._state, **changes)
            snapshot = self._state
        self._on_change(snapshot)

    # ---- engine thread -------------------------------------------------------------------

    def start(self) -> None:
        """Start the background compile (a daemon thread: a stopping process does not wait)."""
        configure_dynamo(self._torch, 2 * len(self._settings.sizes))
        self._thread = threading.Thread(
            target=self._run, name=f"majicbot-compile-{self._settings.device}", daemon=True
        )
        self._thread.start()

    def install_if_ready(self) -> bool:
        """Swap in the latest stage that is ready; True when this call did it."""
        with self._lock:
            ready = [i for i, stage in enumerate(self._stages) if stage.ready.is_set()]
            if not ready or ready[-1] <= self._installed or self._closed.is_set():
                return False
            index = ready[-1]
            stage = self._stages[index]
            self._installed = index
        run_only = self._torch._dynamo.run(stage.compiled)
        for block in self._blocks:
            block._compiled_call_impl = functools.partial(run_only, block)
        log.info("engine %s: compiled DiT blocks (%s) in use", self._settings.device, stage.mode)
        return True

    def close(self) -> None:
        """Stop compiling further sizes and stages (the current one finishes); back to eager."""
        self._closed.set()
        for block in self._blocks:
            block._compiled_call_impl = None
        with self._lock:
            self._installed = -1

    # ---- background thread ---------------------------------------------------------------

    def _run(self) -> None:
        started = time.perf_counter()
        settings = self._settings
        try:
            with self._torch.no_grad(), self._own_stream():
                self._update(cache=self._load_artifacts())
                for index, mode in enumerate(settings.modes):
                    if not self._run_stage(index, mode, started):
                        return
        except Exception as exc:  # the first stage failed: the engine keeps serving eager
            log.exception("engine %s: compiling the DiT failed", settings.device)
            with self._lock:
                self._stages = []
            self._update(phase=Optimization.FAILED, detail=f"compile failed: {exc!r}"[:500])
            return
        seconds = time.perf_counter() - started
        detail = self._detail(len(settings.modes) - 1)
        log.info("engine %s: %s in %.1f s", settings.device, detail, seconds)
        self._update(phase=Optimization.OPTIMIZED, detail=detail, compile_s=seconds)

    def _run_stage(self, index: int, mode: str, started: float) -> bool:
        """Compile one stage; False when a later stage failed (the earlier one keeps serving)."""
        if index == 0:
            self._compile_stage(index, mode)
            return True
        self._update(detail=f"{self._detail(index - 1)}; compiling {mode} in the background")
        try:
            self._compile_stage(index, mode)
        except Exception as exc:
            log.exception("engine %s: compiling the DiT in %s failed", self._settings.device, mode)
            detail = f"{self._detail(index - 1)}; {mode} failed: {exc!r}"[:500]
            seconds = time.perf_counter() - started
            self._update(phase=Optimization.OPTIMIZED, detail=detail, compile_s=seconds)
            return False
        return True

    def _compile_stage(self, index: int, mode: str) -> None:
        torch, settings = self._torch, self._settings
        compiled = torch.compile(
            stage_function(index, mode), mode=_mode(settings, mode), backend=settings.backend,
            dynamic=False,
        )  # fmt: skip
        stage = _Stage(mode, compiled)
        with self._lock:
            self._stages.append(stage)
        stage_started = time.perf_counter()
        for done, (height, width) in enumerate(settings.sizes, start=1):
            if self._closed.is_set():
                raise RuntimeError("engine closed while compiling")
            size_started = time.perf_counter()
            self._warm(compiled, image_tokens(height, width))
            if index == 0 and not stage.ready.is_set():
                stage.ready_at = time.time()
                stage.ready.set()  # the engine may swap in now; later sizes join the same cache
            log.info(
                "engine %s: compiled %dx%d (%s) in %.1f s",
                settings.device, width, height, mode, time.perf_counter() - size_started,
            )  # fmt: skip
            self._update(sizes_done=index * len(settings.sizes) + done)
        stage.seconds = time.perf_counter() - stage_started
        if not stage.ready.is_set():
            stage.ready_at = time.time()
        stage.ready.set()  # a later stage replaces a whole earlier one: only once every size is in
        self._save_artifacts()
        if settings.device.startswith("cuda"):
            torch.cuda.empty_cache()  # autotuning's scratch buffers

    def _warm(self, compiled: Any, tokens: int) -> None:
        """Call every block through ``compiled`` once, with inputs shaped as the pipeline's."""
        double, single = example_inputs(self._torch, self._dit, tokens, self._settings)
        count = len(self._dit.blocks)
        for index, block in enumerate(self._blocks):
            args = double if index < count else single
            compiled(block, *args, ipadapter_kwargs_list=None)
        if self._settings.device.startswith("cuda"):
            self._torch.cuda.current_stream(self._settings.device).synchronize()

    def _own_stream(self) -> Any:
        """A CUDA stream of the compile thread's own (nothing on the CPU)."""
        import contextlib

        device = self._settings.device
        if not device.startswith("cuda"):
            return contextlib.nullcontext()
        return self._torch.cuda.stream(self._torch.cuda.Stream(device))

    def _detail(self, last: int) -> str:
        modes = " then ".join(self._settings.modes[: last + 1])
        sizes = ", ".join(f"{w}x{h}" for h, w in self._settings.sizes)
        return f"compiled DiT blocks ({self._settings.label}, {modes}) for {sizes}"

    # ---- artefacts ---------------------------------------------------------------------------

    def _artifact_path(self) -> Path | None:
        cache_dir = self._settings.cache_dir
        if cache_dir is None:
            return None
        return cache_dir / f"megacache-{cache_key(self._torch, self._settings)}.bin"

    def _load_artifacts(self) -> str:
        path = self._artifact_path()
        if path is None:
            return "off"
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(path.parent / "inductor"))
        if not path.is_file():
            return "cold"
        started = time.perf_counter()
        self._torch.compiler.load_cache_artifacts(path.read_bytes())
        log.info("engine %s: loaded compile artefacts %s in %.1f s", self._settings.device,
                 path.name, time.perf_counter() - started)  # fmt: skip
        return "warm"

    def _save_artifacts(self) -> None:
        path = self._artifact_path()
        if path is None:
            return
        saved = self._torch.compiler.save_cache_artifacts()  # everything since the start
        if saved is None:
            return
        data, _info = saved
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(path)
        log.info("engine %s: saved %.1f MB of compile artefacts to %s",
                 self._settings.device, len(data) / 1e6, path)  # fmt: skip


def _mode(settings: CompileSettings, mode: str) -> str | None:
    # torch.compile rejects a mode together with a non-inductor backend.
    return mode if settings.backend == "inductor" else None


def configure_dynamo(torch: Any, graphs: int) -> None:
    """Process-wide Dynamo settings the background compile needs.

    - Each stage caches one graph per block kind and size on its code object: let them all in
      (Dynamo's limit, 8 by default, is exactly 2 kinds × 4 sizes).
    - While the compile thread traces a later size with FX (AOTAutograd's make_fx), torch 2.11's
      "is FX tracing" flag is process-wide, so a job calling an already installed run-only block
      saw it and raised "Detected that you are using FX to symbolically trace a dynamo-optimized
      function" (seen on an H200). ``error_on_nested_fx_trace = False`` makes such a call run the
      block eagerly instead (same function; torch 2.14 keeps the flag per thread).
    """
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(int(getattr(config, name)), graphs + 2))
    if hasattr(config, "error_on_nested_fx_trace"):
        config.error_on_nested_fx_trace = False


def cache_key(torch: Any, settings: CompileSettings) -> str:
    """Artefacts are only valid for the same torch, card, path, modes and shapes."""
    device = settings.device
    card = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    parts = [torch.__version__, card, settings.label, str(settings.modes), str(settings.sizes),
             str(settings.text_tokens), str(settings.backend)]  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def example_inputs(
    torch: Any, dit: Any, tokens: int, settings: CompileSettings
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Positional arguments of a double and of a single block for ``tokens`` image tokens.

    ``model_fn_flux_image`` calls ``block(hidden, prompt_emb, conditioning, rope, mask,
    ipadapter_kwargs_list=None)``: hidden/prompt (1, S, D) bf16 from Linear layers or a concat,
    conditioning (1, D), rope (1, 1, text + image, axes/2, 2, 2) float32 — all contiguous.
    """
    hidden = int(dit.x_embedder.out_features)
    rope = sum(int(a) for a in dit.pos_embedder.axes_dim) // 2
    text, device = settings.text_tokens, settings.device
    bf16, f32 = torch.bfloat16, torch.float32

    def randn(*shape: int, dtype: Any = bf16) -> Any:
        return torch.randn(*shape, device=device, dtype=dtype)

    conditioning = randn(1, hidden)
    freqs = randn(1, 1, text + tokens, rope, 2, 2, dtype=f32)
    double = (randn(1, tokens, hidden), randn(1, text, hidden), conditioning, freqs, None)
    single = (randn(1, text + tokens, hidden), randn(1, text, hidden), conditioning, freqs, None)
    return double, single


# ---- attention backend -----------------------------------------------------------------------


def prefer_cudnn_attention(torch: Any) -> list[int]:
    """Put cuDNN attention first among the SDPA backends, process-wide; returns the new order.

    Measured on an H200 at FLUX's shape (1×24×4608×128, bf16): cuDNN 0.44 ms, flash 0.82 ms,
    efficient 1.59 ms per call. The others stay enabled as fallbacks (the VAE's 512-wide head
    needs one). Process-wide on purpose: ``sdpa_kernel`` contexts set global flags, so the
    engine thread and the compile thread entering and leaving them would race.
    """
    from torch.nn.attention import SDPBackend, _sdpa_kernel

    order = [
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ]
    try:
        _sdpa_kernel(order, set_priority=True)
    except (TypeError, RuntimeError):  # an older torch without priorities: leave its order
        log.warning("cannot put cuDNN attention first on torch %s", torch.__version__)
    return list(torch._C._get_sdp_priority_order())
