"""The backend facade the adapters talk to: submit, cancel, subscribe, status, history.

Lifecycle (one composition root opens it):

    async with Service.open(config, engines) as service:
        ...   # adapters call service.submit(...) etc.

Opening: open the store, recover jobs from the last run, start one worker per engine (each
loads its engine in a background thread), start the scheduler. Closing: refuse new jobs
(``ServiceStopping``), let the running step finish within ``service.stop_grace_s``, persist, stop
workers, close the store.

INTERFACE CONTRACT (adapters rely on exactly this; see docstrings):
- ``submit(request) -> Submission``: validates (raises ``UserError`` subclasses with a message key),
  commits the job to SQLite, then returns it with its queue position and ETA.
- ``reroll(job_id, requester, reply_to, variation) -> Submission``: same prompt/steps/size/guidance;
  ``variation=False`` → new random seed, ``True`` → seed + 1.
- ``cancel(job_id, requester) -> Job``: own jobs; admins any. Queued: instantly. Running: at the
  next denoising step (returns at once; the ``Cancelled`` event follows).
- ``subscribe(job_id) -> AsyncIterator[JobEvent]``: first the current state as an event, then every
  event until (and including) the terminal one. Many subscribers per job.
- ``job(job_id) -> Job`` (raises ``JobNotFound``), ``history(requester, scope, limit)``.
- ``is_admin(requester)``, ``check_can_manage(job, requester)`` (raises ``AccessDenied``).
- ``status() -> StatusSnapshot``.
- ``active_jobs(platform)``: queued/running jobs of a platform (to re-attach progress after restart).
- ``undelivered(platform)``: terminal jobs whose result the adapter has not delivered yet;
  ``mark_delivered(job_id)`` after a successful send. Adapters retry the rest.
"""

from __future__ import annotations


from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from backend.config import Config
from backend.domain import (
    HistoryScope,
    ImagineRequest,
    Job,
    JobEvent,
    Platform,
    ReplyTarget,
    Requester,
    StatusSnapshot,
    Submission,
)
from backend.engine.protocol import Engine


class Service:
    """Facade over store, scheduler and workers. Construct only through ``Service.open``."""

    @classmethod
    @asynccontextmanager
    async def open(
        cls, config: Config, engine_factory: Callable[[], Sequence[Engine]]
    ) -> AsyncIterator[Service]:
        """Open the store, recover, start accepting jobs at once.

        ``engine_factory`` is blocking (it may import torch to count GPUs): it runs in a background
        thread after the service already accepts jobs; each engine's ``load`` then runs in its
        worker's thread. Jobs wait in the queue meanwhile.
        """
        raise NotImplementedError
        yield  # pragma: no cover

    async def submit(self, request: ImagineRequest) -> Submission:
        raise NotImplementedError

    async def reroll(
        self, job_id: str, requester: Requester, reply_to: ReplyTarget, *, variation: bool
    ) -> Submission:
        raise NotImplementedError

    async def cancel(self, job_id: str, requester: Requester) -> Job:
        raise NotImplementedError

    def subscribe(self, job_id: str) -> AsyncIterator[JobEvent]:
        raise NotImplementedError

    async def job(self, job_id: str) -> Job:
        raise NotImplementedError

    async def history(
        self, requester: Requester, scope: HistoryScope = HistoryScope.USER, limit: int = 10
    ) -> list[Job]:
        raise NotImplementedError

    def is_admin(self, requester: Requester) -> bool:
        raise NotImplementedError

    def check_can_manage(self, job: Job, requester: Requester) -> None:
        raise NotImplementedError

    async def status(self) -> StatusSnapshot:
        raise NotImplementedError

    async def active_jobs(self, platform: Platform) -> list[Job]:
        raise NotImplementedError

    async def undelivered(self, platform: Platform) -> list[Job]:
        raise NotImplementedError

    async def mark_delivered(self, job_id: str) -> None:
        raise NotImplementedError
