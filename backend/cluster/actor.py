"""The GPU worker actor: one engine in one Ray worker process (``ray_cluster`` makes it remote).

The actor is threaded (``max_concurrency`` > 1) so that ``cancel``, ``state`` and ``describe``
are answered while ``generate`` runs; the engine itself is only ever called from the actor's one
engine thread, as ``backend.engine.protocol`` requires. ``load`` and ``generate`` are streaming
methods: they yield events, plain tuples of picklable values, as they happen —

- load: ``("state", EngineState)``… then ``("ready", EngineState)`` or ``("failed", key, detail)``
- generate: ``("step", done, total)``… then ``("done", Outcome)``, ``("cancelled",)``,
  ``("failed", key, detail)``, or ``("not_loaded",)`` (Ray restarted the process: load first).

Results travel as PNG bytes (``Outcome.png``); the service adds the parameters chunk and writes
them. Nothing here imports ray at module level, so the module loads in the service process too.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backend import keys
from backend.config import EngineSettings
from backend.domain import EngineState, GenerationParams, Timings
from backend.engine.protocol import Engine
from backend.errors import EngineError, GenerationCancelled
from backend.images import encode_png

# Builds the engine inside the actor: (settings, device) → Engine. Must be importable by name in
# the actor's process (a module-level function or class), as Ray pickles it by reference.
EngineBuilder = Callable[[EngineSettings, str], Engine]
_ENDED = object()  # put after an engine call's last item (by the call's done callback)


def diffsynth_engine(settings: EngineSettings, device: str) -> Engine:
    """The product's engine (the default builder)."""
    from backend.engine.diffsynth_engine import DiffsynthEngine

    return DiffsynthEngine(settings, device)


@dataclass(frozen=True)
class WorkerInfo:
    """Where an actor runs: shown in ``/status`` and used to notice restarts (a new pid)."""

    host: str
    ip: str
    node_id: str
    gpu_ids: tuple[str, ...]  # the node's GPU numbers Ray gave this actor; () = CPU
    pid: int

    @property
    def device(self) -> str:
        """The engine's device inside the actor: Ray sets CUDA_VISIBLE_DEVICES to its GPUs."""
        return "cuda:0" if self.gpu_ids else "cpu"


@dataclass(frozen=True)
class Outcome:
    """A finished generation as it crosses the process boundary."""

    png: bytes
    timings: Timings
    prompt_truncated: bool
    profile: str
    model: str
    state: EngineState  # the engine after the job (VRAM, optimization)


class GpuWorker:
    """Owns one engine in this process; every engine call runs on one thread, in order."""

    def __init__(self, settings: EngineSettings, build: EngineBuilder = diffsynth_engine) -> None:
        self._settings = settings
        self._build = build
        self._engine: Engine | None = None
        self._loaded = False
        self._calls = ThreadPoolExecutor(1, thread_name_prefix="majicbot-engine")
        self._cancel = threading.Event()

    def describe(self) -> WorkerInfo:
        import ray

        context = ray.get_runtime_context()
        gpus = tuple(str(g) for g in ray.get_gpu_ids())
        ip = ray.util.get_node_ip_address()
        return WorkerInfo(socket.gethostname(), ip, context.get_node_id(), gpus, os.getpid())

    def state(self) -> EngineState | None:
        return self._engine.state() if self._engine is not None else None

    def load(self) -> Iterator[tuple[Any, ...]]:
        """Build and load the engine (once per process), streaming its state as it loads."""
        if self._engine is None:
            self._engine = self._build(self._settings, self.describe().device)
        engine = self._engine
        if not self._loaded:
            reports: queue.SimpleQueue[EngineState] = queue.SimpleQueue()
            loading = self._calls.submit(engine.load, reports.put)
            yield from _drain(loading, reports, lambda state: ("state", state))
            error = loading.exception()
            if error is not None:
                yield ("failed", *_reason(error))
                return
            self._loaded = True
        yield ("ready", engine.state())

    def generate(self, params: GenerationParams) -> Iterator[tuple[Any, ...]]:
        """One job: its steps as they complete, then how it ended."""
        engine = self._engine
        if engine is None or not self._loaded:
            yield ("not_loaded",)
            return
        self._cancel.clear()
        steps: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        running = self._calls.submit(
            self._generate_png, engine, params, lambda done, total: steps.put((done, total))
        )
        yield from _drain(running, steps, lambda step: ("step", *step))
        error = running.exception()
        if isinstance(error, GenerationCancelled):
            yield ("cancelled",)
        elif error is not None:
            yield ("failed", *_reason(error))
        else:
            yield ("done", running.result())

    def cancel(self) -> None:
        """The running job stops at its next step (``GenerationCancelled`` in the engine)."""
        self._cancel.set()

    def _generate_png(
        self, engine: Engine, params: GenerationParams, on_step: Callable[[int, int], None]
    ) -> Outcome:  # the engine thread
        result = engine.generate(params, on_step, self._cancel.is_set)
        return Outcome(
            encode_png(result.picture()), result.timings, result.prompt_truncated, result.profile,
            result.model, engine.state(),
        )  # fmt: skip


def _drain(
    call: Future[Any], items: queue.SimpleQueue[Any], event: Callable[[Any], tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """Yield ``event(item)`` for each item the call puts in ``items`` until it has ended (its
    done callback queues ``_ENDED`` after everything the call itself put there)."""
    call.add_done_callback(lambda _: items.put(_ENDED))
    while (item := items.get()) is not _ENDED:
        yield event(item)


def _reason(error: BaseException) -> tuple[str, str]:
    """(user-facing key, detail for the log) of an engine call's error."""
    if isinstance(error, EngineError):
        return error.key, error.detail
    return keys.ENGINE, repr(error)
