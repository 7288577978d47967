"""Per-job publish/subscribe of job events, on the event loop.

A subscription starts with the job's current state (the caller passes it in, computed in the same
loop turn as the registration, so nothing falls between), then receives every published event up
to and including the terminal one: ``Started``, ``Progress`` and the terminal event (queue
positions are pulled, see ``backend.positions``). Closing the hub ends every subscription without
a terminal event (the service is stopping; the job stays queued for the next start).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from backend.domain import (
    TERMINAL_EVENTS,
    Cancelled,
    Failed,
    Job,
    JobEvent,
    JobStatus,
    Succeeded,
    Timings,
)

_END = None  # sentinel put in a subscriber's queue when the hub closes


class EventHub:
    """Subscribers per job id, and the last Started/Progress event of each running job."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[asyncio.Queue[JobEvent | None]]] = {}
        self._running_state: dict[str, JobEvent] = {}
        self._closed = False

    def has_subscribers(self, job_id: str) -> bool:
        return bool(self._subscribers.get(job_id))

    def running_state(self, job_id: str) -> JobEvent | None:
        """The latest Started/Progress of a running job, or None."""
        return self._running_state.get(job_id)

    def publish(self, event: JobEvent) -> None:
        """Deliver ``event`` to the job's subscribers; a terminal event ends their iteration."""
        terminal = isinstance(event, TERMINAL_EVENTS)
        if terminal:
            self._running_state.pop(event.job_id, None)
            queues = self._subscribers.pop(event.job_id, [])
        else:
            queues = self._subscribers.get(event.job_id, [])
        for queue in queues:
            queue.put_nowait(event)

    def set_running_state(self, event: JobEvent) -> None:
        """Remember the latest Started/Progress (what a late subscriber sees first)."""
        self._running_state[event.job_id] = event

    def forget_running(self, job_id: str) -> None:
        self._running_state.pop(job_id, None)

    async def subscribe(self, job_id: str, current: JobEvent) -> AsyncIterator[JobEvent]:
        """Yield ``current``, then every event of ``job_id`` until a terminal one."""
        if self._closed:
            return
        queue: asyncio.Queue[JobEvent | None] = asyncio.Queue()
        self._subscribers.setdefault(job_id, []).append(queue)
        try:
            yield current
            if isinstance(current, TERMINAL_EVENTS):
                return
            while (event := await queue.get()) is not _END:
                yield event
                if isinstance(event, TERMINAL_EVENTS):
                    return
        finally:
            self._unsubscribe(job_id, queue)

    def close(self) -> None:
        """End every subscription."""
        self._closed = True
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(_END)
        self._subscribers.clear()

    def _unsubscribe(self, job_id: str, queue: asyncio.Queue[JobEvent | None]) -> None:
        queues = self._subscribers.get(job_id)
        if queues and queue in queues:
            queues.remove(queue)
            if not queues:
                del self._subscribers[job_id]


def terminal_event(job: Job) -> JobEvent | None:
    """The event that ended ``job``, rebuilt from the store; None while it is not over."""
    if job.status is JobStatus.SUCCEEDED and job.result_path is not None:
        return Succeeded(job.id, job.result_path, job.timings or Timings())
    if job.status is JobStatus.FAILED:
        return Failed(job.id, job.error_key or "error.engine", job.error_detail or "")
    if job.status is JobStatus.CANCELLED:
        return Cancelled(job.id)
    return None
