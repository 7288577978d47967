"""Run the majicbot CLI with a fast fake engine: ``python -m tests.faults.serve_fake ARGS``.

For the fault suite: a real ``majicbot serve`` (store, workers, watchdog, adapters) whose engine
draws a flat image in ``MAJICBOT_FAKE_STEP_S`` seconds per step, without torch, so that a kill -9
cycle costs a second, not an import of diffsynth. With ``MAJICBOT_FAKE_HANG_ONCE=<path>`` the
first generation (the one that creates ``<path>``) never returns and ignores its cancel flag: a
hung CUDA call, for the stall watchdog.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from backend.config import Config
from backend.domain import GenerationParams
from backend.engine.protocol import (
    CancelCheck,
    Engine,
    EngineFactory,
    GenerationResult,
    StepCallback,
)
from tests.backend.engines import StepEngine


class FakeEngine(StepEngine):
    """``StepEngine`` with a real step time and an optional hang."""

    def __init__(self, step_s: float, hang_marker: Path | None) -> None:
        super().__init__("cpu")
        self._step_s = step_s
        self._hang_marker = hang_marker

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        if self._hang_marker is not None and not self._hang_marker.exists():
            self._hang_marker.touch()
            on_step(1, params.steps)
            threading.Event().wait()  # never returns, never looks at the cancel flag

        def paced(step: int, total: int) -> None:
            time.sleep(self._step_s)
            on_step(step, total)

        return super().generate(params, paced, cancelled)


def main(argv: list[str]) -> int:
    import bots.app

    step_s = float(os.environ.get("MAJICBOT_FAKE_STEP_S", "0.02"))
    marker = os.environ.get("MAJICBOT_FAKE_HANG_ONCE")

    def factory(config: Config) -> EngineFactory:
        def build() -> Sequence[Engine]:
            return [FakeEngine(step_s, Path(marker) if marker else None)]

        return build

    bots.app.default_engine_factory = factory
    from bots.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
