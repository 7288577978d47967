"""The speed wiring after loading: plain DiT blocks (fp8 matmuls with fp8 compute), cuDNN attention
first, the prompt-embedding cache, and whether and how the DiT compiles in the background
(``backend.engine.optimize``, ``backend.engine.fp8``, ``backend.engine.prompt_cache``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from backend.config import EngineSettings
from backend.engine import prompt_cache
from backend.engine.optimize import CompileSettings, distinct_sizes
from backend.engine.torch_device import TorchDevice

log = logging.getLogger(__name__)

# Profiles whose DiT is resident on the GPU: their blocks can be made plain and compiled.
RESIDENT_PROFILES = ("gpu", "gpu-fp8")
# Compile stages per engine.compile_mode (``backend.engine.optimize`` compiles them in order and
# swaps each in between jobs). Measured on an H200 (BENCHMARKS.md): a second stage in
# max-autotune-no-cudagraphs, compiled in-process while the first stage serves, broke jobs on
# torch 2.11 (FX tracing patches torch.nn.Module.__call__ and sets its tracing flag
# process-wide), so both paths take Inductor's default mode alone. A later stage needs compiling
# out of process (a tuning subprocess filling the shared Inductor cache) first.
AUTO_MODES_FP8: tuple[str, ...] = ("default",)
AUTO_MODES_BF16: tuple[str, ...] = ("default",)
MODES: dict[str, tuple[str, ...]] = {"default": ("default",)}


def prepare_fast_path(
    device: TorchDevice, pipe: Any, profile: str, *, fp8_compute: bool, prompt_cache_entries: int
) -> prompt_cache.PromptCache | None:
    """Make the resident DiT's blocks plain (fp8 matmuls with fp8 compute), put cuDNN attention
    first, and the text-embedding cache in front of the encoders (returned; None when off)."""
    if device.device.startswith("cuda"):
        from backend.engine.optimize import prefer_cudnn_attention

        prefer_cudnn_attention(device.torch)
    if profile in RESIDENT_PROFILES:
        from backend.engine.fp8 import ROWWISE_CAPABILITY, plain_blocks

        rowwise = device.capability() >= ROWWISE_CAPABILITY
        done = plain_blocks(pipe.dit, fp8_compute=fp8_compute, rowwise=rowwise)
        log.info(
            "engine %s: DiT blocks made plain (%d linears, %d norms, %.2f GB of weights; "
            "fp8 compute %s)", device.device, done.linears, done.norms,
            done.weight_bytes / 1e9, "on" if fp8_compute else "off",
        )  # fmt: skip
        device.free_cache()
    if prompt_cache_entries <= 0:
        return None
    cache = prompt_cache.PromptCache(prompt_cache_entries)
    prompt_cache.install(pipe, cache)
    return cache


@dataclass(frozen=True)
class CompilePlan:
    """What decides whether and how the DiT compiles in the background."""

    settings: EngineSettings
    device: str
    profile: str
    fp8_compute: bool
    backend: Any = None  # None: Inductor, on a GPU only; tests pass "eager" or a callable

    def why_not(self) -> str | None:
        """None when the DiT compiles; otherwise the sentence /status shows."""
        if not self.settings.engine.compile:
            return "engine.compile = false"
        if self.backend is not None:
            return None
        if not self.device.startswith("cuda"):
            return "the CPU runs eager (compile applies to GPUs)"
        if self.profile not in RESIDENT_PROFILES:
            return f"{self.profile} streams DiT layers from CPU RAM; only gpu and gpu-fp8 compile"
        return None

    def compile_settings(self) -> CompileSettings:
        engine, fp8 = self.settings.engine, self.fp8_compute
        if engine.compile_mode == "auto":
            modes = AUTO_MODES_FP8 if fp8 else AUTO_MODES_BF16
        else:
            modes = MODES[engine.compile_mode]
        label = f"{self.profile}, {'fp8 compute' if fp8 else 'bf16 compute'}"
        return CompileSettings(
            device=self.device,
            sizes=distinct_sizes(list(self.settings.compile_sizes)),
            text_tokens=engine.t5_max_tokens,
            label=label,
            modes=modes,
            backend=self.backend or "inductor",
            cache_dir=self.settings.data_dir.resolve() / "compile",
        )
