"""Compile the DiT's repeated blocks in a background thread; the engine swaps them in between jobs.

Lifecycle (one ``BlockOptimizer`` per engine)::

    optimizer = BlockOptimizer(torch, dit, settings, on_change)   # engine thread, after warm-up
    optimizer.start()                   # background thread: load artefacts, compile, warm, save
    optimizer.install_if_ready()        # engine thread, at the start of every job
    optimizer.state()                   # any thread: OFF / OPTIMIZING / OPTIMIZED / FAILED
    optimizer.close()

How the swap stays safe:
- The background thread compiles ``torch.compile(block._call_impl, dynamic=False)`` for every
  block and calls each once per configured image size with inputs of the exact shapes, dtypes and
  (contiguous) strides that ``model_fn_flux_image`` passes. Dynamo keys its cache on the code
  object, with guards on types and tensor metadata, so the 19 double and 38 single blocks share
  one graph per block kind and size.
- ``install_if_ready`` (engine thread, between jobs, so that no image mixes both paths) sets each
  block's ``_compiled_call_impl`` to ``torch._dynamo.run(compiled)``: *run-only* mode, which uses
  a cached graph when its guards pass and otherwise runs the block eagerly — it never compiles.
  A size that was not compiled (or a guard that fails) therefore costs nothing but speed; no user
  ever waits for a compile.
- Artefacts persist under ``<data_dir>/compile``: ``torch.compiler.save_cache_artifacts()`` after
  a compile, ``load_cache_artifacts`` before the next one (plus a persistent Inductor cache
  directory), so a restart compiles from caches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
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
    mode: str = "default"  # torch.compile mode
    backend: Any = "inductor"  # tests pass "eager" or a counting callable
    cache_dir: Path | None = None  # None: nothing persists


def image_tokens(height: int, width: int) -> int:
    """Image tokens of the DiT at this pixel size (16 px per token side: VAE /8, patch 2)."""
    return (height // 16) * (width // 16)


def distinct_sizes(sizes: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Keep the first size of each token count (W×H and H×W give the same block shapes)."""
    seen: dict[int, tuple[int, int]] = {}
    for height, width in sizes:
        seen.setdefault(image_tokens(height, width), (height, width))
    return tuple(seen.values())


class BlockOptimizer:
    """Compiles ``dit.blocks`` and ``dit.single_blocks`` off the engine thread."""

    def __init__(
        self, torch: Any, dit: Any, settings: CompileSettings, on_change: OnChange
    ) -> None:
        self._torch = torch
        self._dit = dit
        self._settings = settings
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = OptimizationState(
            Optimization.OPTIMIZING,
            f"compiling the DiT blocks ({settings.label}, {settings.mode})",
            sizes_total=len(settings.sizes),
        )
        self._compiled: list[tuple[Any, Any]] = []  # (block, compiled callable)
        self._ready = threading.Event()
        self._installed = False
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- any thread ----------------------------------------------------------------------

    def state(self) -> OptimizationState:
        with self._lock:
            return self._state

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the compile finished (or failed); True when it finished in time."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state = dataclasses.replace(self._state, **changes)
            snapshot = self._state
        self._on_change(snapshot)

    # ---- engine thread -------------------------------------------------------------------

    def start(self) -> None:
        """Start the background compile (a daemon thread: a stopping process does not wait)."""
        self._thread = threading.Thread(
            target=self._run, name=f"majicbot-compile-{self._settings.device}", daemon=True
        )
        self._thread.start()

    def install_if_ready(self) -> bool:
        """Swap the compiled blocks in once they are ready; True when this call did it."""
        if self._installed or not self._ready.is_set():
            return False
        run_only = self._torch._dynamo.run
        for block, compiled in self._compiled:
            block._compiled_call_impl = run_only(compiled)
        self._installed = True
        log.info("engine %s: compiled DiT blocks in use", self._settings.device)
        return True

    def close(self) -> None:
        """Stop compiling further sizes (the current one finishes) and go back to eager."""
        self._closed.set()
        for block, _compiled in self._compiled:
            block._compiled_call_impl = None
        self._installed = False

    # ---- background thread ---------------------------------------------------------------

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            with self._torch.no_grad():
                cache = self._load_artifacts()
                self._update(cache=cache)
                self._compile_all()
            self._save_artifacts()
        except Exception as exc:  # the engine keeps serving eager; /status says why
            log.exception("engine %s: compiling the DiT failed", self._settings.device)
            self._compiled = []
            self._update(phase=Optimization.FAILED, detail=f"compile failed: {exc!r}"[:500])
            return
        seconds = time.perf_counter() - started
        sizes = ", ".join(f"{w}x{h}" for h, w in self._settings.sizes)
        detail = f"compiled DiT blocks ({self._settings.label}, {self._settings.mode}) for {sizes}"
        log.info("engine %s: %s in %.1f s", self._settings.device, detail, seconds)
        self._update(phase=Optimization.OPTIMIZED, detail=detail, compile_s=seconds)

    def _compile_all(self) -> None:
        torch, settings = self._torch, self._settings
        blocks = [*self._dit.blocks, *self._dit.single_blocks]
        self._compiled = [
            (block, torch.compile(
                block._call_impl, mode=_mode(settings), backend=settings.backend, dynamic=False
            ))
            for block in blocks
        ]  # fmt: skip
        for done, (height, width) in enumerate(settings.sizes, start=1):
            if self._closed.is_set():
                raise RuntimeError("engine closed while compiling")
            size_started = time.perf_counter()
            self._warm(image_tokens(height, width))
            self._ready.set()  # the engine may swap in now; later sizes join the same cache
            log.info(
                "engine %s: compiled %dx%d in %.1f s",
                settings.device, width, height, time.perf_counter() - size_started,
            )  # fmt: skip
            self._update(sizes_done=done)

    def _warm(self, tokens: int) -> None:
        """Call every compiled block once with inputs shaped as ``model_fn_flux_image`` does."""
        double, single = example_inputs(self._torch, self._dit, tokens, self._settings)
        count = len(self._dit.blocks)
        for index, (_block, compiled) in enumerate(self._compiled):
            args = double if index < count else single
            compiled(*args, ipadapter_kwargs_list=None)
        if self._settings.device.startswith("cuda"):
            self._torch.cuda.synchronize(self._settings.device)

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
        saved = self._torch.compiler.save_cache_artifacts()
        if saved is None:
            return
        data, _info = saved
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(path)
        log.info("engine %s: saved %.1f MB of compile artefacts to %s",
                 self._settings.device, len(data) / 1e6, path)  # fmt: skip


def _mode(settings: CompileSettings) -> str | None:
    # torch.compile rejects a mode together with a non-inductor backend.
    return settings.mode if settings.backend == "inductor" else None


def cache_key(torch: Any, settings: CompileSettings) -> str:
    """Artefacts are only valid for the same torch, card, path, mode and shapes."""
    device = settings.device
    card = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    parts = [torch.__version__, card, settings.label, settings.mode, str(settings.sizes),
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
