"""What a worker needs from an engine. Engines live one per device and are used from one thread.

Call order, always from the worker's own thread (never the event loop):
``load(report)`` once, then ``generate(...)`` any number of times; ``state()`` from any thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from backend.domain import EngineState, GenerationParams, Timings

if TYPE_CHECKING:
    from PIL.Image import Image


# Called from the loader thread whenever a component's state changes (the worker hops it onto the
# event loop with call_soon_threadsafe).
LoadReport = Callable[[EngineState], None]

# Called from the engine thread after each completed denoising step: (step, total), 1-based.
StepCallback = Callable[[int, int], None]

# Polled from the engine thread once per step; True means raise GenerationCancelled.
CancelCheck = Callable[[], bool]


class Optimization(enum.StrEnum):
    """Where an engine's compiled (faster) path stands. The engine serves from the moment it is
    ready, eager at first; compilation never blocks a job."""

    OFF = "off"  # not compiled: engine.compile = false, the CPU, or a streaming profile
    OPTIMIZING = "optimizing"  # compiling in a background thread; jobs run eager meanwhile
    OPTIMIZED = "optimized"  # compiled; jobs from the next one on run the compiled path
    FAILED = "failed"  # compilation failed; jobs keep running eager (detail says why)


@dataclass(frozen=True)
class OptimizationState:
    """What ``/status`` shows as "optimizing…" / "optimized" for one engine."""

    phase: Optimization = Optimization.OFF
    detail: str = ""  # what is compiled (path, mode, sizes) or why it is off / failed
    sizes_done: int = 0  # image sizes compiled so far (each aspect ratio is one shape)
    sizes_total: int = 0
    compile_s: float | None = None  # wall seconds of the background compile, once done
    cache: str = ""  # "cold", or "warm" when saved compile artefacts were loaded first


@dataclass(frozen=True)
class GenerationResult:
    image: Image
    timings: Timings  # wait_s is left 0; the worker fills it in
    prompt_truncated: bool = False  # the prompt exceeded the text encoder's token limit
    profile: str = ""
    model: str = ""


class Engine(Protocol):
    """One pipeline on one device."""

    @property
    def device(self) -> str: ...

    def load(self, report: LoadReport) -> None:
        """Import heavy libraries, load every component in order, warm up. Blocking.

        Raises ``EngineError`` (``ModelFilesMissing``, ``ProfileDoesNotFit``) on failure after
        reporting the failed component.
        """

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        """Run one generation. Blocking. Raises ``GenerationCancelled``, ``OutOfMemory``,
        ``EngineError``."""
        ...

    def state(self) -> EngineState:
        """Current snapshot; safe from any thread."""
        ...

    def close(self) -> None:
        """Release GPU memory. Safe to call more than once."""
