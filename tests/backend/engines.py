"""A small engine that implements ``backend.engine.protocol.Engine`` for scheduling tests.

It draws a flat-colour image with PIL and never imports torch. Tests steer it with
``threading.Event``s: ``load_gate`` holds ``load`` until set, ``step_gate`` holds ``generate``
after its first step until set (checking the cancel flag while it waits, as the real engine does
once per step). ``failures`` is a list of exceptions raised by the next ``generate`` calls;
``timings``, if given, is what every generation reports (constant "measured" times).
"""

from __future__ import annotations

import threading
import time

from PIL import Image

from backend.domain import ComponentState, EngineState, GenerationParams, LoadState, Timings
from backend.engine.protocol import (
    CancelCheck,
    Engine,
    GenerationResult,
    LoadReport,
    StepCallback,
)
from backend.errors import EngineError, GenerationCancelled

WAIT_S = 30.0  # upper bound for any gate; a test that hits it fails


class StepEngine:
    """Protocol-conforming engine with gates for deterministic tests."""

    def __init__(
        self,
        device: str = "cpu",
        *,
        load_gate: threading.Event | None = None,
        step_gate: threading.Event | None = None,
        load_error: EngineError | None = None,
        failures: list[Exception] | None = None,
        timings: Timings | None = None,
    ) -> None:
        self._device = device
        self.load_gate = load_gate
        self.step_gate = step_gate
        self.load_error = load_error
        self.failures = failures if failures is not None else []
        self.timings = timings
        self.threads: set[int] = set()
        self.generated: list[GenerationParams] = []
        self.closed = False
        self.first_step_done = threading.Event()
        self._lock = threading.Lock()
        self._state = EngineState(
            device=device, components=(ComponentState("dit", bytes_total=100),)
        )

    @property
    def device(self) -> str:
        return self._device

    def load(self, report: LoadReport) -> None:
        self.threads.add(threading.get_ident())
        self._set(
            EngineState(
                self._device, components=(ComponentState("dit", LoadState.LOADING, 50, 100),)
            )
        )
        report(self.state())
        if self.load_gate is not None and not self.load_gate.wait(WAIT_S):
            raise TimeoutError("load gate never opened")
        if self.load_error is not None:
            failed = ComponentState("dit", LoadState.FAILED, 50, 100, error=self.load_error.detail)
            self._set(EngineState(self._device, components=(failed,), error=self.load_error.detail))
            report(self.state())
            raise self.load_error
        ready = ComponentState("dit", LoadState.READY, 100, 100)
        self._set(EngineState(self._device, components=(ready,), warmed_up=True))
        report(self.state())

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        self.threads.add(threading.get_ident())
        started = time.perf_counter()
        if self.failures:
            raise self.failures.pop(0)
        for step in range(1, params.steps + 1):
            if cancelled():
                raise GenerationCancelled("cancelled")
            on_step(step, params.steps)
            if step == 1:
                self.first_step_done.set()
                self._hold(cancelled)
        self.generated.append(params)
        image = Image.new("RGB", (params.width, params.height), (params.seed % 256, 80, 160))
        return GenerationResult(
            image=image,
            timings=self.timings or Timings(denoise_s=time.perf_counter() - started),
            profile="test",
            model="step-engine",
        )

    def _hold(self, cancelled: CancelCheck) -> None:
        if self.step_gate is None:
            return
        deadline = time.monotonic() + WAIT_S
        while not self.step_gate.wait(0.005):  # wake up to poll the cancel flag like a step does
            if cancelled():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("step gate never opened")

    def state(self) -> EngineState:
        with self._lock:
            return self._state

    def close(self) -> None:
        self.closed = True

    def _set(self, state: EngineState) -> None:
        with self._lock:
            self._state = state


class Delegating:
    """An ``Engine`` that hands every call to ``inner``; subclasses override ``generate`` to
    steer a real engine's timing through its step callback."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner

    @property
    def device(self) -> str:
        return self.inner.device

    def load(self, report: LoadReport) -> None:
        self.inner.load(report)

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        return self.inner.generate(params, on_step, cancelled)

    def state(self) -> EngineState:
        return self.inner.state()

    def close(self) -> None:
        self.inner.close()
