"""Engines for Ray actors in tests: the real tiny FLUX, registered in the actor's own process.

Ray pickles a builder by reference, so these are module-level functions the actor imports
(``tests`` is on its path: the session cluster is started with this repository on PYTHONPATH).
"""

from __future__ import annotations

import time

from backend.config import EngineSettings
from backend.domain import GenerationParams
from backend.engine.protocol import CancelCheck, Engine, GenerationResult, StepCallback
from tests.backend.engines import Delegating


def tiny_engine(settings: EngineSettings, device: str) -> Engine:
    """The product's ``DiffsynthEngine`` on the tiny FLUX files."""
    from backend.engine.diffsynth_engine import DiffsynthEngine
    from tests.tinyflux import register_tiny_models

    register_tiny_models()
    return DiffsynthEngine(settings, device)


def paced_tiny_engine(settings: EngineSettings, device: str) -> Engine:
    """The tiny engine with each denoising step taking at least ``STEP_S`` more: long enough
    jobs to cancel or kill one mid-run without racing the CPU."""
    return Paced(tiny_engine(settings, device))


class Paced(Delegating):
    """Delegates to a real engine; sleeps ``STEP_S`` after each step it reports. A prompt that
    contains ``HANG`` hangs after step 1 and ignores cancels (a stuck GPU call)."""

    STEP_S = 0.15
    HANG = "[hang here]"

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        def step(done: int, total: int) -> None:
            on_step(done, total)
            time.sleep(self.STEP_S)
            while self.HANG in params.prompt:
                time.sleep(3600)

        return self.inner.generate(params, step, cancelled)


def paced_tiny_engine_on_cpu(settings: EngineSettings, device: str) -> Engine:
    """The paced tiny engine on the CPU whatever GPU Ray gave the actor (nodes that declare GPUs
    they do not have, to play GPU hosts joining and leaving)."""
    return paced_tiny_engine(settings, "cpu")
