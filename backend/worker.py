"""One worker per engine: load it, then take jobs in fair order and run them one at a time.

The engine is touched only from the worker's own thread (``EngineThread``): ``load`` and every
``generate`` run there, never on the event loop. Step progress and load reports cross back to the
loop with ``call_soon_threadsafe``. A job that fails (engine error, OOM, a bug) fails alone; the
worker takes the next one. If recording a job's end itself raises (a bug: storage errors are
retried by the sink), the job is failed best effort and the error leaves ``serve``: the pool logs
it, shows it in ``/status`` and starts ``serve`` again. A job the stall watchdog cancelled
(``ActiveJob.stalled_at``) fails with ``keys.STALLED`` when its engine call returns; one whose
call never returns is ``abandoned`` (the pool's watchdog has the rules). An engine whose process
died (``WorkerLost``: a Ray actor) hands its job back to the queue (``JobSink.lost``) and is
loaded again — Ray restarts the process — before the worker takes another job.

The seam to the rest of the backend is narrow: ``JobSource.take`` gives the next job, and
``JobSink`` stores results and publishes events. A GPU on another host is an ``Engine`` over a Ray
actor (``backend.cluster``), so the queue, the store and delivery stay here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from backend import keys
from backend.domain import EngineState, Job, RunningJob
from backend.engine.protocol import Engine, GenerationResult
from backend.errors import EngineError, GenerationCancelled, WorkerLost
from backend.estimates import JobTimer, running_remaining_s

log = logging.getLogger("majicbot.worker")

T = TypeVar("T")


class EngineThread:
    """A single dedicated thread that runs submitted calls in order.

    Not a ThreadPoolExecutor: its thread is a daemon, so a process told to stop while a model is
    still loading (minutes, not interruptible) exits instead of waiting for the load to finish.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._calls = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the thread and await its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((lambda: fn(*args), future))
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        """Let the thread finish after the calls already submitted."""
        self._calls.put((_stop_marker, concurrent.futures.Future()))

    def _serve(self) -> None:
        while True:
            fn, future = self._calls.get()
            if fn is _stop_marker:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)


def _stop_marker() -> None:
    """Identity marker queued by ``EngineThread.stop``."""


@dataclass
class ActiveJob:
    """The job a worker is running now. ``cancel`` is polled by the engine once per step."""

    job: Job
    started_at: float
    step: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False  # cancelled by a service stop: goes back to the queue, not cancelled
    last_step_at: float = field(default_factory=time.monotonic)  # start, then each step
    stalled_at: float | None = None  # monotonic time the watchdog cancelled it for a stall
    abandoned: bool = False  # the engine call never returned after the stall: the worker is stuck


class JobSource(Protocol):
    async def take(self) -> Job:
        """The next job in fair order; raises ``scheduler.QueueClosed`` when stopping."""
        ...


class JobSink(Protocol):
    """Where a worker reports; implemented by the service (store + events)."""

    async def started(self, worker: Worker, active: ActiveJob) -> None: ...

    def progressed(self, worker: Worker, active: ActiveJob, step: int, total: int) -> None: ...

    async def succeeded(
        self, worker: Worker, active: ActiveJob, result: GenerationResult
    ) -> None: ...

    async def failed(self, worker: Worker, active: ActiveJob, key: str, detail: str) -> None: ...

    async def cancelled(self, worker: Worker, active: ActiveJob) -> None: ...

    async def interrupted(self, worker: Worker, active: ActiveJob) -> None: ...

    async def stalled_out(self, worker: Worker, active: ActiveJob, stalled_s: float) -> None: ...

    async def lost(self, worker: Worker, active: ActiveJob, ran: bool, detail: str) -> None: ...

    def engine_changed(self, worker: Worker) -> None: ...


class Worker:
    """Loads one engine in its own thread, then serves jobs until the source closes."""

    def __init__(
        self,
        name: str,
        engine: Engine,
        source: JobSource,
        sink: JobSink,
    ) -> None:
        self.name = name
        self.engine = engine
        self.timer = JobTimer()
        self.current: ActiveJob | None = None
        self.ready = False
        self.load_error: str | None = None  # for /status (may name paths)
        self.load_error_key: str | None = None  # for users: an ``EngineError`` key
        self.lost = False  # the engine's process died: load again before the next job
        self._source = source
        self._sink = sink
        self._thread = EngineThread(f"majicbot-{name}")

    async def run(self) -> None:
        """Load, then serve jobs until the job source closes."""
        if await self.load():
            await self.serve()

    @property
    def stuck(self) -> bool:
        """Its engine call never returned after a stall: no job will run here again."""
        active = self.current
        return active is not None and active.abandoned

    async def serve(self) -> None:
        """Take and run jobs until the job source closes (the engine is loaded)."""
        from backend.scheduler import QueueClosed

        while True:
            try:
                job = await self._source.take()
            except QueueClosed:
                return
            await self._run_job(job)
            if self.lost and not await self.reload():
                return

    def state(self) -> EngineState:
        """The engine's snapshot, with this worker's load error if the engine did not record it."""
        state = self.engine.state()
        if self.load_error and not state.error:
            state = replace(state, error=self.load_error)
        return state

    def running(self) -> RunningJob | None:
        active = self.current
        if active is None:
            return None
        return RunningJob(
            active.job.id, self.name, active.step, active.job.params.steps, active.job.requester
        )

    def remaining_s(self) -> float | None:
        """Seconds until the current job finishes, decode included (0 when idle).

        From this worker's measured rates, else from the job's own pace (None while unknown).
        """
        active = self.current
        if active is None:
            return 0.0
        steps = active.job.params.steps
        return running_remaining_s(self.timer.rates(), steps, active.step, active.started_at)

    async def close(self) -> None:
        """Release the engine (in its thread) and end the thread."""
        try:
            await asyncio.wait_for(self._thread.run(self.engine.close), timeout=30)
        except Exception:
            log.exception("worker %s: closing the engine failed", self.name)
        finally:
            self._thread.stop()

    def abandon(self) -> None:
        """End the thread after whatever it is doing now (used when a load never finishes)."""
        self._thread.stop()

    async def load(self) -> bool:
        """Load the engine in the worker's thread; False (and ``load_error``) if it failed."""
        loop = asyncio.get_running_loop()

        def report(_: EngineState) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the process is stopping
                loop.call_soon_threadsafe(self._sink.engine_changed, self)

        log.info("worker %s: loading engine on %s", self.name, self.engine.device)
        try:
            await self._thread.run(self.engine.load, report)
        except Exception as exc:
            self.load_error = exc.detail if isinstance(exc, EngineError) else repr(exc)
            self.load_error_key = exc.key if isinstance(exc, EngineError) else "error.engine"
            log.error("worker %s: engine failed to load: %s", self.name, self.load_error)
            self._sink.engine_changed(self)
            return False
        self.ready = True
        log.info("worker %s: engine ready", self.name)
        self._sink.engine_changed(self)
        return True

    async def reload(self) -> bool:
        """Load the engine again after its process died (Ray restarted it, or will)."""
        log.warning("worker %s: its engine process was lost; loading it again", self.name)
        self.lost, self.ready = False, False
        self._sink.engine_changed(self)
        return await self.load()

    async def _run_job(self, job: Job) -> None:
        active = ActiveJob(job, started_at=time.time())
        self.current = active
        try:
            await self._sink.started(self, active)
            await self._generate(active)
        except Exception as exc:  # recording the job's end raised: a bug, not a job failure
            log.exception("job %s: recording it failed on worker %s", job.id, self.name)
            with contextlib.suppress(Exception):
                await self._sink.failed(self, active, keys.ENGINE, f"recording failed: {exc!r}")
            raise
        finally:
            self.current = None

    async def _generate(self, active: ActiveJob) -> None:
        job = active.job
        try:
            result = await self._thread.run(
                self.engine.generate, job.params, self._step_reporter(active), active.cancel.is_set
            )
        except GenerationCancelled:
            if active.stalled_at is not None:
                stalled_s = active.stalled_at - active.last_step_at
                detail = f"no denoising step for {stalled_s:.0f} s"
                await self._sink.failed(self, active, keys.STALLED, detail)
            elif active.stopping:
                await self._sink.interrupted(self, active)
            else:
                await self._sink.cancelled(self, active)
        except WorkerLost as exc:
            self.lost = True
            if active.cancel.is_set() and not active.stopping and active.stalled_at is None:
                await self._sink.cancelled(self, active)  # a user's cancel, then it died
            else:
                await self._sink.lost(self, active, exc.ran, exc.detail)
        except EngineError as exc:
            await self._sink.failed(self, active, exc.key, exc.detail)
        except Exception as exc:
            log.exception("job %s: generation failed on worker %s", job.id, self.name)
            await self._sink.failed(self, active, keys.ENGINE, repr(exc))
        else:
            self.timer.record(result.timings, job.params.steps)
            await self._sink.succeeded(self, active, result)

    def _step_reporter(self, active: ActiveJob) -> Callable[[int, int], None]:
        loop = asyncio.get_running_loop()

        def on_step(step: int, total: int) -> None:  # engine thread
            with contextlib.suppress(RuntimeError):  # the loop is gone: the process is stopping
                loop.call_soon_threadsafe(self._on_step, active, step, total)

        return on_step

    def _on_step(self, active: ActiveJob, step: int, total: int) -> None:
        if self.current is not active:
            return  # a late report from a job that already ended
        active.step = step
        active.last_step_at = time.monotonic()
        self._sink.progressed(self, active, step, total)
