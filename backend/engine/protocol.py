"""What a worker needs from an engine. Engines live one per device and are used from one thread.

Call order, always from the worker's own thread (never the event loop):
``load(report)`` once, then ``generate(...)`` any number of times; ``state()`` from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    image: Image | None  # None only with ``png`` (a Ray actor's result; ``picture`` decodes it)
    timings: Timings  # wait_s is left 0; the worker fills it in
    prompt_truncated: bool = False  # the prompt exceeded the text encoder's token limit
    profile: str = ""
    model: str = ""
    # The image already encoded as PNG (a Ray actor sends bytes): written as is, with the
    # parameters chunk added, instead of encoding ``image`` again.
    png: bytes | None = None

    def picture(self) -> Image:
        """The image, decoded from ``png`` if need be (blocking: call it in a thread)."""
        if self.image is not None:
            return self.image
        from backend.images import decode_png

        assert self.png is not None, "a result has an image or its PNG"
        return decode_png(self.png)


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


# Builds the engines (blocking: the service runs it in a thread, after the adapters are up).
EngineFactory = Callable[[], Sequence[Engine]]


@dataclass(frozen=True)
class EngineSource:
    """Engines that can grow: ``build`` once, then ``discover`` every ``every_s`` seconds for
    engines that appeared since (GPUs of a Ray node that joined), ``close`` after the workers
    stopped. All three are blocking and run in threads. A plain ``EngineFactory`` is a source
    with only ``build``."""

    build: EngineFactory
    discover: EngineFactory | None = None
    every_s: float = 0.0
    close: Callable[[], None] | None = None
