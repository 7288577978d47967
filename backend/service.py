"""The backend facade: adapters import it and ``domain``, ``errors``, ``config``, nothing else.

Lifecycle: ``async with Service.open(config, engine_factory) as service:`` (one composition root).
Opening: the data directory's instance lock (``backend.instance``), the store, recovery, then
jobs are accepted; engines build in a background thread; the stall watchdog starts. Closing:
refuse new jobs, let the running step finish within ``service.stop_grace_s``, stop workers, end
subscriptions, close the store, release the lock. ``state`` says where it stands; ``stuck`` is
set when an engine call never returned (the owner should stop and exit non-zero).

INTERFACE CONTRACT (adapters rely on exactly this; see docstrings):
- ``submit(request) -> Submission``: checks access and limits (``UserError`` subclasses with a
  message key), commits the job to SQLite, then returns it with its queue position and ETA. A
  request whose ``idempotency_key`` was seen before returns that job's ``Submission`` instead.
- ``reroll``, ``cancel`` (queued: at once; running: at the next step), ``cancel_latest``,
  ``delete`` (forgets the prompt and the image); ``where`` is the ``MessageRef`` a button was
  pressed on (None: a command), checked by ``job_for_action`` against the job's messages.
- Retention (``backend.retention``): finished jobs older than ``storage.keep_days`` lose their
  prompt, name and image; Discord tokens are dropped on delivery and after 15 minutes.
- ``subscribe(job_id)``: the current state, then ``Started``, ``Progress``, the terminal event.
- Queue positions are pulled (``backend.positions``): ``queue_version``, ``queue_moved(after)``,
  ``waiting(job_id)``, ``queue_departures`` and ``availability()``.
- ``job``, ``history`` (at most ``HISTORY_MAX``), ``status`` (admins only); ``check_access``,
  ``is_admin``, ``check_can_manage`` (``backend.access``'s rules).
- Sub-facades: ``deliveries`` (``backend.deliveries``: re-attach, attach messages, count
  uploads), ``accounts`` (``backend.accounts``: defaults, bans, quotas), ``content``
  (``backend.content``: prompt rules, the image check, per-chat policies).

Behaviour (user-facing keys: ``backend.keys``): engines that cannot load leave jobs queued with
``Queued.unavailable``; recovery (``backend.recovery``) re-queues an interrupted job first; faults
(``backend.health``, ``backend.watchdog``) show in ``status()``; a stop re-queues a late job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

from backend.access import Access
from backend.accounts import Accounts
from backend.admission import Admission, reroll_request
from backend.cancels import Cancels
from backend.config import Config
from backend.content.controls import ContentControls
from backend.deliveries import Deliveries
from backend.domain import (
    Availability,
    HistoryScope,
    ImagineRequest,
    Job,
    JobAction,
    JobEvent,
    MessageRef,
    Queued,
    ReplyTarget,
    Requester,
    StatusSnapshot,
    Submission,
)
from backend.engine.protocol import EngineFactory, EngineSource
from backend.errors import ServiceStopping
from backend.events import EventHub, terminal_event
from backend.health import Health
from backend.instance import hold_instance
from backend.pool import WorkerPool
from backend.positions import Board
from backend.queries import Queries
from backend.recovery import recover
from backend.results import Results, describe
from backend.retention import Retention
from backend.store import Store
from backend.users import Users
from backend.watchdog import Watchdog

log = logging.getLogger("majicbot.service")


class ServiceState(StrEnum):
    """The service's lifecycle; it only ever moves forward."""

    OPEN = "open"  # accepting jobs (engines may still be building or loading)
    STOPPING = "stopping"  # refusing new jobs; running ones get the grace period, then cancel
    STOPPED = "stopped"  # workers closed, subscriptions ended; queries still answer until close


class Service:
    """Facade over admission, positions, workers, results and queries. Open with ``open``."""

    def __init__(self, config: Config, store: Store) -> None:
        self._config = config
        self._store = store
        self.state = ServiceState.OPEN
        self._hub = EventHub()
        self.health = Health()
        self._users = Users(store, config.limits)
        self._access = Access(config, self._users)
        self._board = Board()
        self.content = ContentControls(config, store, self._access)
        self.results = Results(
            config, store, self._hub, lambda: self._pool.engine_changed(), self._board.bump,
            self.health, self._board.put_back,
        )  # fmt: skip
        self.results.content = self.content
        self._pool = WorkerPool(self._board, self.results, self._board.bump, self.health)
        self._board.attach(self._pool)
        self._admission = Admission(
            config, store, self._users, self._access, self._board, self._pool, self.health,
            self.content,
        )  # fmt: skip
        self._cancels = Cancels(store, self._hub, self._access, self._board, self._pool)
        self._queries = Queries(
            store, self._access, self._board, self._pool, self.health, self.content
        )
        self.accounts = Accounts(config, self._users, self._access)
        self.deliveries = Deliveries(store)
        self._retention = Retention(config, store)
        stall_s = config.limits.stall_timeout_s
        self.watchdog = Watchdog(self._pool, self.health, stall_s, self.results.stalled_out)
        self._background: list[asyncio.Task[None]] = []  # the watchdog and the retention purge

    @classmethod
    @asynccontextmanager
    async def open(
        cls, config: Config, engine_factory: EngineFactory | EngineSource
    ) -> AsyncIterator[Service]:
        """Lock the data, open the store, recover, accept jobs; engines build in a thread."""
        with hold_instance(config.storage.data_dir, config.outputs_dir):
            async with Store.open(config.db_path) as store:
                service = cls(config, store)
                await service._users.load()
                await service._admission.load()
                await recover(store, service._board)
                await service.content.open()
                service._pool.build(engine_factory)
                for name, work in (
                    ("watchdog", service.watchdog),
                    ("retention", service._retention),
                ):
                    service._background.append(asyncio.create_task(work.run(), name=name))
                log.info("service open: %d job(s) queued from the last run", len(service._board))
                try:
                    yield service
                finally:
                    await service._stop()

    async def _stop(self) -> None:
        self.state = ServiceState.STOPPING
        grace_s = self._config.service.stop_grace_s
        log.info("stopping: no new jobs; waiting up to %.0f s for running jobs", grace_s)
        self._board.close()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._pool.stop(grace_s)
        await self.content.close()
        self.state = ServiceState.STOPPED
        self._hub.close()
        log.info("stopped")

    # ---- jobs ------------------------------------------------------------------------------------

    async def submit(self, request: ImagineRequest) -> Submission:
        """Check, commit to SQLite, queue; the stored job with its position and ETA."""
        if self.state is not ServiceState.OPEN:
            raise ServiceStopping()
        admitted = await self._admission.admit(request)
        job, existing = admitted.job, admitted.seq is None
        if admitted.seq is not None:
            position = self._board.add(job, admitted.seq)
            p = job.params
            log.info("job %s queued at position %d %s steps=%d size=%dx%d", job.id, position,
                     describe(job), p.steps, p.width, p.height)  # fmt: skip
            log.debug("job %s prompt %r", job.id, p.prompt)  # prompts: DEBUG only
        waiting = self._board.waiting(job.id)  # None: an earlier submit of the key, running/done
        if waiting is None:
            return Submission(job, 0, None, existing)
        return Submission(job, waiting.position, waiting.eta_s, existing)

    async def reroll(
        self,
        job_id: str,
        requester: Requester,
        reply_to: ReplyTarget,
        *,
        variation: bool,
        where: MessageRef | None = None,
    ) -> Submission:
        """Submit ``job_id``'s prompt and settings again for ``requester``: new seed or seed + 1.

        From a button (``where``): anyone in the chat of one of the job's result messages; else
        the owner or a global admin (``AccessDenied`` otherwise).
        """
        action = JobAction.VARIATION if variation else JobAction.REROLL
        job = await self.job_for_action(job_id, requester, action, where)
        return await self.submit(reroll_request(job, requester, reply_to, variation=variation))

    async def cancel(
        self, job_id: str, requester: Requester, where: MessageRef | None = None
    ) -> Job:
        """Cancel a queued job now, or a running one at its next step (``Cancelled`` follows).

        Owners, admins, and guild admins of the job's guild may; ``AccessDenied`` otherwise.
        From a button (``where``), only on the job's own status message.
        """
        if where is not None:
            await self.job_for_action(job_id, requester, JobAction.CANCEL, where)
        return await self._cancels.cancel(job_id, requester)

    async def delete(self, job_id: str, requester: Requester, where: MessageRef | None) -> Job:
        """Forget ``job_id``'s prompt and delete its image (owner, admins, guild admins).

        The row stays for quotas and statistics; returns the job as it was before.
        """
        job = await self.job_for_action(job_id, requester, JobAction.DELETE, where)
        await self._retention.forget(job_id)
        return job

    async def job_for_action(
        self, job_id: str, requester: Requester, action: JobAction, where: MessageRef | None
    ) -> Job:
        """The job, once ``requester`` may do ``action`` to it from ``where`` (the message the
        button is on; None: a command). ``JobNotFound``, or ``AccessDenied`` with a sentence.
        """
        job = await self.job(job_id, requester)
        results = await self._store.deliveries.posted(job_id) if where is not None else frozenset()
        self._access.check_action(job, requester, action, where, results)
        return job

    async def cancel_latest(self, requester: Requester) -> Job:
        """Cancel the requester's newest queued or running job; ``NothingToCancel`` if none."""
        return await self._cancels.cancel_latest(requester)

    # ---- events and positions --------------------------------------------------------------------

    async def subscribe(self, job_id: str) -> AsyncIterator[JobEvent]:
        """The job's current state, then ``Started``, ``Progress`` and the terminal event."""
        current = self._board.waiting(job_id) or self._hub.running_state(job_id)
        if current is None:
            terminal = terminal_event(await self.job(job_id))
            if terminal is not None:
                yield terminal
            return
        # No await between computing ``current`` and registering: nothing can fall between.
        async for event in self._hub.subscribe(job_id, current):
            yield event

    @property
    def queue_version(self) -> int:
        """Bumps (at most once per loop turn) when positions, estimates or engines change."""
        return self._board.version

    async def queue_moved(self, after: int) -> int:
        """Wait until ``queue_version > after``; returns the new version."""
        return await self._board.moved(after)

    def waiting(self, job_id: str) -> Queued | None:
        """The job's position, estimate and warm-up state; None once it is no longer queued."""
        return self._board.waiting(job_id)

    @property
    def queue_departures(self) -> int:
        """Jobs that have left the queue so far (taken or cancelled)."""
        return self._board.departures

    def availability(self) -> Availability:
        """Warm-up (in steps of 25 %) and availability of the engines, shared by every job."""
        return self._board.availability()

    # ---- queries ---------------------------------------------------------------------------------

    async def job(self, job_id: str, requester: Requester | None = None) -> Job:
        """The stored job (``JobNotFound``); with ``requester``, their access is checked first."""
        return await self._queries.job(job_id, requester)

    async def history(
        self, requester: Requester, scope: HistoryScope = HistoryScope.USER, limit: int = 10
    ) -> list[Job]:
        """Newest first, at most ``HISTORY_MAX``: one's own jobs, or (admins) a chat's or all."""
        return await self._queries.history(requester, scope, limit)

    async def status(self, requester: Requester) -> StatusSnapshot:
        """Everything /status shows; admins only (``AccessDenied("status.admin_only")``)."""
        return await self._queries.status(requester, accepting=self.state is ServiceState.OPEN)

    # ---- access ----------------------------------------------------------------------------------

    def check_access(self, requester: Requester) -> None:
        """Raise ``AccessDenied`` if ``requester`` may not use the bot (stored bans included)."""
        self._access.check(requester)

    def is_admin(self, requester: Requester) -> bool:
        """A global admin: a configured admin id of its platform, or the CLI."""
        return self._access.is_admin(requester)

    def check_can_manage(self, job: Job, requester: Requester) -> None:
        """Raise ``AccessDenied`` unless ``requester`` may act on ``job`` (access checked too)."""
        self._access.check_can_manage(job, requester)
