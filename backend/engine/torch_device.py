"""torch on one device ("cpu" or "cuda:N"): the heavy import, memory, syncs and cache release.

``import_torch(device)`` is the only place the engine imports torch and diffsynth (slow, and
never at module import: ``tests/test_imports.py``); everything after it goes through the
``TorchDevice`` it returns, so the CPU/CUDA differences live here and nowhere else.
"""

from __future__ import annotations

import gc
import os
import platform
from collections.abc import Callable
from typing import Any

from backend.engine.profiles import Memory
from backend.errors import EngineError


class TorchDevice:
    """The torch calls the engine makes about its device; every one is a no-op where the CPU
    has nothing to do."""

    def __init__(self, torch: Any, device: str) -> None:
        self.torch = torch
        self.device = device

    @property
    def is_cpu(self) -> bool:
        return self.device == "cpu"

    def name(self) -> str:
        """What /status shows, e.g. "NVIDIA H200" or "CPU x86_64 (16 threads)"."""
        if self.is_cpu:
            return f"CPU {platform.machine()} ({os.cpu_count()} threads)"
        return str(self.torch.cuda.get_device_name(self.device))

    def capability(self) -> tuple[int, int]:
        """The CUDA compute capability, e.g. (9, 0)."""
        major, minor = self.torch.cuda.get_device_capability(self.device)
        return int(major), int(minor)

    def memory(self) -> Memory:
        """Free and total VRAM (capped by this process's memory fraction) and available RAM."""
        host = host_available_bytes()
        if self.is_cpu:
            return Memory(vram_free=0, vram_total=0, host_available=host)
        cuda = self.torch.cuda
        driver_free, total = cuda.mem_get_info(self.device)
        free = driver_free
        fraction = getattr(cuda, "get_per_process_memory_fraction", None)
        if fraction is not None:
            # set_per_process_memory_fraction caps this process below what the driver reports.
            cap = int(fraction(self.device) * total) - cuda.memory_reserved(self.device)
            free = min(free, cap)
        return Memory(free, total, host, vram_device_used=total - driver_free)

    def vram(self) -> tuple[int, int] | None:
        """(used, total) bytes as the driver reports them; None on the CPU."""
        if self.is_cpu:
            return None
        free, total = self.torch.cuda.mem_get_info(self.device)
        return total - free, total

    def synchronize(self) -> None:
        if not self.is_cpu:
            self.torch.cuda.synchronize(self.device)

    def step_marker(self) -> Callable[[], None]:
        """Mark the work queued so far; the returned call waits for it (no-op on the CPU)."""
        if self.is_cpu:
            return _nothing
        event = self.torch.cuda.Event()
        event.record()
        return event.synchronize  # type: ignore[no-any-return]

    def free_cache(self) -> None:
        gc.collect()
        if not self.is_cpu:
            self.torch.cuda.empty_cache()

    def release(self) -> None:
        """Free the caches and give pinned host memory (CPU-resting weights) back to the OS."""
        self.free_cache()
        host_empty_cache = getattr(self.torch._C, "_host_emptyCache", None)
        if not self.is_cpu and host_empty_cache is not None:
            host_empty_cache()


def import_torch(device: str) -> TorchDevice:
    """Import diffsynth and torch (offline); ``check_available`` then checks the device (two
    steps, so that the engine holds the ``TorchDevice`` even when its device is missing)."""
    os.environ.setdefault("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    import diffsynth  # noqa: F401  (slow: ~8 s on a small CPU; torchvision comes with it)
    import torch

    if not hasattr(torch.cpu, "empty_cache"):
        # diffsynth calls torch.<device type>.empty_cache(); torch.cpu has none.
        setattr(torch.cpu, "empty_cache", lambda: None)  # noqa: B010
    return TorchDevice(torch, device)


def check_available(device: TorchDevice) -> None:
    """Raise EngineError when the configured CUDA device cannot be used."""
    if device.device.startswith("cuda") and not device.torch.cuda.is_available():
        raise EngineError(f"engine.devices lists {device.device} but CUDA is not available")


def host_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _nothing() -> None:
    return None
