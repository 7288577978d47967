"""Build one engine per configured device (the composition root calls this in a thread)."""

from __future__ import annotations

from backend.config import EngineSettings
from backend.engine.protocol import Engine


def resolve_devices(devices: tuple[str, ...]) -> list[str]:
    """Expand "auto" to every visible CUDA device, or ["cpu"] without CUDA (imports torch)."""
    resolved: list[str] = []
    for device in devices:
        if device == "auto":
            resolved.extend(_auto_devices())
        else:
            resolved.append("cuda:0" if device == "cuda" else device)
    return list(dict.fromkeys(resolved))  # keep order, drop duplicates


def _auto_devices() -> list[str]:
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def make_engines(settings: EngineSettings) -> list[Engine]:
    """One ``DiffsynthEngine`` per device. Blocking: imports torch only to resolve "auto"."""
    from backend.engine.diffsynth_engine import DiffsynthEngine

    return [DiffsynthEngine(settings, d) for d in resolve_devices(settings.engine.devices)]
