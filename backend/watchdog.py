"""The stall watchdog: a running job that stops making progress is failed, and a stuck engine
ends the process so that its supervisor (systemd, ``deploy/majicbot.service``) starts a new one.

A job *stalls* when no denoising step is reported for ``limits.stall_timeout_s`` (0 = derived:
``STALL_FACTOR`` × the slowest of (text encode + one step, one step, decode) as its worker
measured them, at least ``STALL_FLOOR_S``; ``STALL_UNMEASURED_S`` until the worker finished a
job). Then, in order:

1. the job is told to cancel, and ``/status`` shows the engine of that worker failing;
2. if the engine call returns within ``grace_s`` (a step that honours the cancel), the job fails
   with ``keys.STALLED`` and the worker goes on with the next job;
3. if it does not, the engine thread is stuck in a call that will never return (a hung CUDA
   call): the job is re-queued for the next process (failed if it was interrupted before), and
   ``stuck`` is set: the owner of the service drains it and exits non-zero (``bots.app``).

It only reads what workers publish (``ActiveJob.last_step_at``) and never touches an engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from backend.domain import Component
from backend.estimates import Rates
from backend.health import Health
from backend.pool import WorkerPool
from backend.worker import ActiveJob, Worker

log = logging.getLogger("majicbot.watchdog")

STALL_FLOOR_S = 120.0
STALL_UNMEASURED_S = 600.0  # the first job of a worker may compile or page in weights
STALL_FACTOR = 10.0
GRACE_MAX_S = 60.0  # longest wait for a cancelled engine call to return

StalledOut = Callable[[Worker, ActiveJob, float], Awaitable[None]]


def stall_limit_s(configured_s: float, rates: Rates | None) -> float:
    """Seconds without a step before a job counts as stalled (see the module docstring)."""
    if configured_s > 0:
        return configured_s
    if rates is None:
        return STALL_UNMEASURED_S
    slowest = max(rates.encode_s + rates.s_per_step, rates.s_per_step, rates.decode_s)
    return max(STALL_FLOOR_S, STALL_FACTOR * slowest)


class Watchdog:
    """Checks every running job's progress once per ``poll_s``; run it as a task."""

    def __init__(
        self,
        pool: WorkerPool,
        health: Health,
        configured_s: float,
        stalled_out: StalledOut,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._health = health
        self._configured_s = configured_s
        self._stalled_out = stalled_out
        self.stuck = asyncio.Event()  # set once a worker is stuck: the process must restart
        self.stuck_reason = ""
        self._clock = clock
        self._flagged: set[str] = set()  # workers whose engine fault is open
        self._abandoning: set[asyncio.Task[None]] = set()
        self.poll_s = min(1.0, configured_s / 4) if configured_s > 0 else 1.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            self.check()

    def check(self) -> None:
        """One pass over the running jobs."""
        now = self._clock()
        for worker in self._pool.workers:
            active = worker.current
            if active is None or active.stalled_at is None:
                self._clear(worker)
            if active is None or active.abandoned:
                continue
            limit_s = stall_limit_s(self._configured_s, worker.timer.rates())
            if active.stalled_at is None and now - active.last_step_at > limit_s:
                self._stalled(worker, active, now, limit_s)
            elif active.stalled_at is not None and now - active.stalled_at > grace_s(limit_s):
                self._abandon(worker, active, now)

    def _stalled(self, worker: Worker, active: ActiveJob, now: float, limit_s: float) -> None:
        active.stalled_at = now
        active.cancel.set()
        self._flagged.add(worker.name)
        idle_s = now - active.last_step_at
        self._health.failing(
            Component.ENGINE,
            worker.name,
            f"job {active.job.id}: no denoising step for {idle_s:.0f} s (limit {limit_s:.0f} s, "
            f"at step {active.step}/{active.job.params.steps}); cancelling it",
        )

    def _abandon(self, worker: Worker, active: ActiveJob, now: float) -> None:
        active.abandoned = True
        waited_s = now - (active.stalled_at or now)
        reason = (
            f"worker {worker.name} is stuck: job {active.job.id}'s engine call did not return "
            f"{waited_s:.0f} s after it was cancelled"
        )
        self._health.failing(Component.ENGINE, worker.name, f"{reason}; restarting the process")
        log.critical("%s: draining and exiting for a restart", reason)

        async def give_up() -> None:
            try:
                await self._stalled_out(worker, active, now - active.last_step_at)
            finally:
                self.stuck_reason = reason
                self.stuck.set()

        task = asyncio.get_running_loop().create_task(give_up(), name=f"stuck-{worker.name}")
        self._abandoning.add(task)
        task.add_done_callback(self._abandoning.discard)

    def _clear(self, worker: Worker) -> None:
        if worker.name in self._flagged:
            self._flagged.discard(worker.name)
            self._health.recovered(Component.ENGINE, worker.name)


def grace_s(limit_s: float) -> float:
    """How long a cancelled, stalled engine call may take to return."""
    return min(GRACE_MAX_S, limit_s)
