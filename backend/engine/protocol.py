"""What a worker needs from an engine. Engines live one per device and are used from one thread.

Call order, always from the worker's own thread (never the event loop):
``load(report)`` once, then ``generate(...)`` any number of times; ``state()`` from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from backend.domain import (
    EngineState,
    GenerationParams,
    Timings,
)

if TYPE_CHECKING:
    from PIL.Image import Image


# Called from the loader thread whenever a component's state changes (the worker hops it onto the
# event loop with call_soon_threadsafe).
LoadReport = Callable[[EngineState], None]

# Called from the engine thread after each completed denoising step: (step, total), 1-based.
StepCallback = Callable[[int, int], None]

# Polled from the engine thread once per step; True means raise GenerationCancelled.
CancelCheck = Callable[[], bool]


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
