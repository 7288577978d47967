"""The engine's ``EngineState``, written by the loader and the engine thread, read from any."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from backend.domain import ComponentState, EngineState, OptimizationState
from backend.engine.files import LOAD_ORDER, Component
from backend.engine.protocol import LoadReport
from backend.engine.torch_device import TorchDevice


class StateBoard:
    """One device's state behind a lock; ``snapshot`` adds where the compiled path stands."""

    def __init__(self, device: str, optimization: Callable[[], OptimizationState]) -> None:
        self._optimization = optimization
        self._lock = threading.Lock()
        components = tuple(ComponentState(c.value) for c in LOAD_ORDER)
        self._state = EngineState(device=device, components=components)

    def snapshot(self) -> EngineState:
        """Current snapshot; safe from any thread."""
        with self._lock:
            state = self._state
        return dataclasses.replace(state, optimization=self._optimization())

    def update(self, report: LoadReport | None = None, **changes: Any) -> None:
        """Change engine-wide fields, then report the new snapshot (when ``report`` is given)."""
        with self._lock:
            self._state = dataclasses.replace(self._state, **changes)
        if report is not None:
            report(self.snapshot())

    def set_component(self, report: LoadReport, component: Component, **changes: Any) -> None:
        """Change one component's fields and report the new snapshot."""
        with self._lock:
            parts = tuple(
                dataclasses.replace(c, **changes) if c.name == component.value else c
                for c in self._state.components
            )
            self._state = dataclasses.replace(self._state, components=parts)
        report(self.snapshot())

    def refresh_vram(self, device: TorchDevice | None, report: LoadReport | None = None) -> None:
        """Record the device's VRAM use (nothing on the CPU or before torch is imported)."""
        vram = None if device is None else device.vram()
        if vram is not None:
            used, total = vram
            self.update(report, vram_used_bytes=used, vram_total_bytes=total)
