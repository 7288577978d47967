"""The workers: built from the engine factory in a background thread, one per engine.

The factory is blocking (it may import torch to count GPUs), so it runs in its own thread after
the service already accepts jobs; each engine's ``load`` then runs in its worker's thread. The
pool answers what positions and ``/status`` need: warm-up progress, whether any engine can run
jobs at all (and, if none can, a user-safe reason), each engine's state, the running jobs.

Each worker runs under ``_supervise``: an exception that leaves its job loop (a bug; storage
errors are retried where they happen) is logged with its traceback, opens a ``worker`` fault in
``/status``, and the loop starts again after a backoff — no exception ends a worker silently.
A worker the stall watchdog found stuck (``Worker.stuck``) is abandoned at stop, not waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from enum import StrEnum

from backend.domain import Component, EngineState, RunningJob
from backend.engine.protocol import Engine, EngineFactory, EngineSource
from backend.estimates import Rates, mean_rates
from backend.health import Health
from backend.worker import ActiveJob, JobSink, JobSource, Worker

log = logging.getLogger("majicbot.pool")

# After the grace period the running job is told to cancel; how long to wait for its next step.
CANCEL_WAIT_S = 60.0
UNAVAILABLE = "error.engine_unavailable"  # no engine, for a reason users need not know
RESTART_BACKOFF_S = (0.5, 30.0)  # a crashed worker loop restarts after 0.5 s, doubling up to 30


class PoolState(StrEnum):
    """Where the pool stands with the engine factory."""

    BUILDING = "building"  # the factory runs in its thread; no workers yet
    SERVING = "serving"  # the factory returned: one worker per engine (loading, ready or failed)
    FACTORY_FAILED = "factory_failed"  # the factory raised; no worker will come (status says why)
    CLOSED = "closed"  # stopped: workers closed or abandoned, a late factory result is dropped


class WorkerPool:
    """Builds the workers, reports their state, stops them. Lives on the event loop."""

    def __init__(
        self, source: JobSource, sink: JobSink, on_change: Callable[[], None], health: Health
    ) -> None:
        self._source = source
        self._sink = sink
        self._health = health
        self._on_change = on_change  # engines or their availability changed
        self.state = PoolState.BUILDING
        self.workers: list[Worker] = []
        self._tasks: dict[Worker, asyncio.Task[None]] = {}
        self._factory_error: str | None = None
        self._unavailable_logged = False
        self._source_of_engines: EngineSource | None = None
        self._discovery: asyncio.Task[None] | None = None

    def build(self, source: EngineFactory | EngineSource) -> None:
        """Run the factory in a thread; its engines become workers on the loop. A source that
        can ``discover`` more engines is asked every ``every_s`` from then on."""
        loop = asyncio.get_running_loop()
        self._source_of_engines = source if isinstance(source, EngineSource) else None
        factory = source.build if isinstance(source, EngineSource) else source

        def build() -> None:  # factory thread
            try:
                engines, error = list(factory()), None
            except BaseException as exc:  # reported to the loop, shown in status
                engines, error = [], exc
            with contextlib.suppress(RuntimeError):  # the loop closed while the factory ran
                loop.call_soon_threadsafe(self._built, engines, error)

        threading.Thread(target=build, name="majicbot-engine-factory", daemon=True).start()

    def _built(self, engines: list[Engine], error: BaseException | None) -> None:
        if self.state is PoolState.CLOSED:
            return
        if error is not None:
            self._factory_error = repr(error)
            self.state = PoolState.FACTORY_FAILED
            log.error("engine factory failed: %r", error)
        else:
            self.state = PoolState.SERVING
        self._add(engines)
        source = self._source_of_engines
        if error is None and source is not None and source.discover and source.every_s > 0:
            self._discovery = asyncio.get_running_loop().create_task(
                self.discover(source.discover, source.every_s), name="discover-workers"
            )

    def _add(self, engines: Sequence[Engine]) -> None:
        taken = [w.name for w in self.workers]
        names = _worker_names([*taken, *(e.device for e in engines)])[len(taken) :]
        for name, engine in zip(names, engines, strict=True):
            worker = Worker(name, engine, self._source, self._sink)
            self.workers.append(worker)
            task = asyncio.get_running_loop().create_task(
                self._supervise(worker), name=f"worker-{name}"
            )
            task.add_done_callback(_log_crash)
            self._tasks[worker] = task
        self.engine_changed()

    async def discover(self, find: Callable[[], Sequence[Engine]], every_s: float) -> None:
        """Every ``every_s``, ask ``find`` (blocking, in a thread) for engines that appeared
        since (a Ray node with free GPUs joined); each becomes a worker. Runs until cancelled."""
        while self.state is not PoolState.CLOSED:
            await asyncio.sleep(every_s)
            if self.state is not PoolState.SERVING:
                continue
            try:
                found = await asyncio.to_thread(find)
            except Exception as exc:
                log.warning("looking for new GPU workers failed: %r", exc)
                continue
            if found and self.state is PoolState.SERVING:
                log.info("%d new GPU worker(s) found", len(found))
                self._add(found)

    async def _supervise(self, worker: Worker) -> None:
        """Load, then serve; a crash of the job loop is reported and the loop restarted."""
        if not await worker.load():
            return
        crashes = 0
        while True:
            try:
                await worker.serve()
                return
            except Exception as exc:
                crashes += 1
                first, cap = RESTART_BACKOFF_S
                delay = min(cap, first * 2 ** (crashes - 1))
                log.exception("worker %s crashed; restarting it in %.1f s", worker.name, delay)
                detail = f"crashed {crashes} time(s), last: {exc!r}; restarted"
                self._health.failing(Component.WORKER, worker.name, detail)
                await asyncio.sleep(delay)

    def engine_changed(self) -> None:
        """An engine's load state changed: log once if none can serve, tell the listener."""
        reason = self.unavailable()
        if reason is not None and not self._unavailable_logged:
            self._unavailable_logged = True
            log.error(
                "no engine can run jobs (%s): jobs stay queued until a restart with working "
                "weights; `majicbot status` shows each engine's error",
                reason,
            )
        self._on_change()

    # ---- what positions and status read --------------------------------------------------------

    def ready_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.ready]

    def warming_percent(self) -> float | None:
        """0..100 while no engine is ready yet; None once one is (or once all have failed)."""
        if self.state is PoolState.BUILDING:
            return 0.0
        if any(w.ready for w in self.workers):
            return None
        loading = [w.state().load_fraction for w in self.workers if w.load_error is None]
        return round(100 * max(loading), 1) if loading else None

    def unavailable(self) -> str | None:
        """A translation key when no engine can ever run a job in this process, else None."""
        if self.state is PoolState.FACTORY_FAILED:
            return UNAVAILABLE
        if self.state is not PoolState.SERVING or any(w.load_error is None for w in self.workers):
            return None
        keys = [w.load_error_key for w in self.workers]
        key = keys[0] if keys else None
        return key if key not in (None, "error.engine") else UNAVAILABLE

    def rates(self) -> tuple[int, Rates | None]:
        """(ready workers, the mean of their measured rates)."""
        ready = self.ready_workers()
        return len(ready), mean_rates([r for w in ready if (r := w.timer.rates()) is not None])

    def running_left_s(self, fallback: Rates | None) -> float:
        """Seconds left of every running job together (``fallback`` rates if a worker has none)."""
        total = 0.0
        for worker in self.workers:
            active = worker.current
            left = worker.remaining_s()
            if left is None and active is not None and fallback is not None:
                left = fallback.remaining_s(active.job.params.steps, active.step)
            total += left or 0.0
        return total

    def engine_states(self) -> tuple[EngineState, ...]:
        states = [w.state() for w in self.workers]
        if self._factory_error is not None:
            states.append(EngineState(device="(engine factory)", error=self._factory_error))
        return tuple(states)

    def running(self) -> tuple[RunningJob, ...]:
        return tuple(r for w in self.workers if (r := w.running()) is not None)

    def active(self) -> list[tuple[Worker, ActiveJob]]:
        """Every running job with its worker."""
        return [(w, w.current) for w in self.workers if w.current is not None]

    # ---- stop ----------------------------------------------------------------------------------

    async def stop(self, grace_s: float) -> None:
        """Let running jobs finish within ``grace_s``, then cancel them; close every engine.

        The job source must already be closed (no worker takes a new job meanwhile).
        """
        serving = [t for w, t in self._tasks.items() if w.ready and not w.stuck]
        if serving:
            _, late = await asyncio.wait(serving, timeout=grace_s)
            if late:
                await self._cancel_for_stop(late)
        self.state = PoolState.CLOSED
        if self._discovery is not None:
            self._discovery.cancel()
        for worker, task in self._tasks.items():
            task.cancel()
            if worker.ready and not worker.stuck:
                await worker.close()
            else:
                worker.abandon()
        discovery = [self._discovery] if self._discovery is not None else []
        await asyncio.gather(*self._tasks.values(), *discovery, return_exceptions=True)
        source = self._source_of_engines
        if source is not None and source.close is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(source.close), timeout=30)
            except Exception:
                log.exception("closing the engine source failed")

    async def _cancel_for_stop(self, late: set[asyncio.Task[None]]) -> None:
        for _, active in self.active():
            if active.abandoned:
                continue
            log.info("job %s: grace period over, cancelling for the stop", active.job.id)
            active.stopping = True
            active.cancel.set()
        _, stuck = await asyncio.wait(late, timeout=CANCEL_WAIT_S)
        for task in stuck:
            log.error("worker task %s did not stop; its job counts as interrupted", task.get_name())


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:  # load() raised: a bug
        log.error("worker task %s crashed", task.get_name(), exc_info=task.exception())


def _worker_names(devices: list[str]) -> list[str]:
    """Devices as worker names; a device listed twice gets ``#1``, ``#2``... on each."""
    counts = Counter(devices)
    seen: Counter[str] = Counter()
    names = []
    for device in devices:
        seen[device] += 1
        names.append(f"{device}#{seen[device]}" if counts[device] > 1 else device)
    return names
