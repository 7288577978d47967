"""What is failing now, and retrying the writes that record a job's fate.

``Health`` keeps one ``Fault`` per (component, where): the first failure opens it (one ERROR log
line), later failures count, the next success of the same kind clears it (one INFO line).
``/status`` shows the open faults; admission refuses new jobs while the store or the image folder
fails (``keys.STORAGE_UNAVAILABLE``: a sentence, not a job that could never be recorded), each
refusal preceded by a fresh try (the INSERT itself, a probe file in the image folder).

``retrying`` runs one write until it succeeds, backing off exponentially, or (``attempts``)
gives up by re-raising the last error. The writes that record a job's state use it without a
bound (``STORE_RETRY``): a job stays ``running`` (true: its result is not recorded yet) while the
store is locked or full, and its worker waits there rather than take jobs it could not record
either. A PNG write is tried ``PNG_RETRY.attempts`` times, then the job fails with
``keys.STORAGE``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from backend.domain import Component, Fault

log = logging.getLogger("majicbot.health")

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between tries; ``attempts`` None = until it succeeds."""

    first_delay_s: float = 0.2
    max_delay_s: float = 10.0
    attempts: int | None = None

    def delay_s(self, failures: int) -> float:
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** (failures - 1)))


STORE_RETRY = RetryPolicy()
PNG_RETRY = RetryPolicy(attempts=3)
STORAGE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)


class Health:
    """The open faults of this process, by (component, where)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._faults: dict[tuple[Component, str], Fault] = {}

    def failing(self, component: Component, where: str, detail: str) -> None:
        """Open (or count) the fault of ``component`` at ``where``."""
        key = (component, where)
        fault = self._faults.get(key)
        if fault is None:
            log.error("degraded: %s %s failing: %s", component.value, where or "service", detail)
            self._faults[key] = Fault(component, where, detail, self._clock())
        else:
            self._faults[key] = replace(fault, detail=detail, count=fault.count + 1)

    def recovered(self, component: Component, where: str) -> None:
        """Close the fault of ``component`` at ``where``, if open."""
        fault = self._faults.pop((component, where), None)
        if fault is not None:
            log.info(
                "recovered: %s %s works again after %d failure(s) in %.0f s",
                component.value,
                where or "service",
                fault.count,
                self._clock() - fault.since,
            )

    def recovered_all(self, component: Component) -> None:
        """Close every fault of ``component`` (a probe showed it works again)."""
        for fault in self.faults():
            if fault.component is component:
                self.recovered(component, fault.where)

    def is_failing(self, *components: Component) -> bool:
        return any(component in components for component, _ in self._faults)

    def faults(self) -> tuple[Fault, ...]:
        """Open faults, oldest first."""
        return tuple(sorted(self._faults.values(), key=lambda f: f.since))


async def retrying(
    write: Callable[[], Awaitable[T]],
    health: Health,
    component: Component,
    where: str,
    what: str,
    policy: RetryPolicy = STORE_RETRY,
) -> T:
    """``await write()`` until it succeeds; storage errors open a fault and are retried."""
    failures = 0
    while True:
        try:
            result = await write()
        except STORAGE_ERRORS as exc:
            failures += 1
            health.failing(component, where, f"{what}: {exc}")
            if policy.attempts is not None and failures >= policy.attempts:
                raise
            delay = policy.delay_s(failures)
            log.warning("%s failed (%s); try %d in %.1f s", what, exc, failures + 1, delay)
            await asyncio.sleep(delay)
            continue
        health.recovered(component, where)
        return result
