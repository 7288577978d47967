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
- ``active_jobs(platform)``: queued/running jobs of a platform (to re-attach progress after a
  restart).
- ``undelivered(platform)``: terminal jobs whose result the adapter has not delivered yet;
  ``mark_delivered(job_id)`` after a successful send. Adapters retry the rest.
- ``user_settings(requester)``, ``set_defaults(requester, defaults)``,
  ``reset_defaults(requester)``: per-user defaults for /imagine (``backend.defaults``); ``submit``
  fills the options a request leaves out from them.
- ``set_banned(requester, user_id, banned=...)``: admins ban/unban a user of their platform.

Behaviour worth knowing (all user-facing keys are listed in ``backend.validation``):
- Engines: until the factory has returned and one engine is ready, jobs wait and their ``Queued``
  events carry ``warming_percent``. If every engine failed to load, jobs are still accepted and
  stay queued (they run after a restart with working weights); ``status()`` shows each engine's
  error and ``Queued.warming_percent`` is None.
- Restart recovery: ``queued`` jobs re-enter in their original order; a job found ``running`` was
  interrupted by a crash: the first time it goes back to the front of the queue with
  ``attempts + 1``, the second time it fails with ``error.interrupted_twice``.
- Stop: a running job still going after ``stop_grace_s`` is cancelled at its next step and goes
  back to ``queued`` (not failed, attempts unchanged) for the next start; subscriptions end without
  a terminal event.
- Hourly quota counts every job accepted in the last hour, including cancelled ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import string
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

from backend.config import Config
from backend.defaults import (
    apply_defaults,
    check_defaults,
    decode_defaults,
    effective_settings,
    encode_defaults,
    merge_defaults,
)
from backend.domain import (
    Cancelled,
    EngineState,
    Failed,
    GenerationParams,
    HistoryScope,
    ImagineRequest,
    Job,
    JobEvent,
    JobStatus,
    Platform,
    Progress,
    Queued,
    ReplyTarget,
    Requester,
    Started,
    StatusSnapshot,
    Submission,
    Succeeded,
    Timings,
    UserDefaults,
    UserSettings,
)
from backend.engine.protocol import Engine, GenerationResult
from backend.errors import (
    AccessDenied,
    InvalidRequest,
    JobNotCancellable,
    JobNotFound,
    LimitReached,
    ServiceStopping,
)
from backend.events import EventHub
from backend.images import output_path, parameters_text, write_png
from backend.scheduler import FairQueue, UserKey, queue_eta_s
from backend.status import process_rss_bytes, versions
from backend.store import DuplicateJobId, Store, UserRecord
from backend.validation import SEED_MAX, check_access, random_seed, resolve_params
from backend.validation import is_admin as config_admin
from backend.worker import ActiveJob, Worker

log = logging.getLogger("majicbot.service")

JOB_ID_ALPHABET = string.ascii_letters + string.digits
JOB_ID_LENGTH = 9  # 62**9 ≈ 1.3e16: collisions are retried, and practically never happen
HOUR_S = 3600.0
# After the grace period the running job is told to cancel; how long to wait for its next step.
CANCEL_WAIT_S = 60.0


def new_job_id() -> str:
    """A short, URL-safe, unguessable job id (base62)."""
    return "".join(secrets.choice(JOB_ID_ALPHABET) for _ in range(JOB_ID_LENGTH))


def user_key(requester: Requester) -> UserKey:
    return (requester.platform.value, requester.user_id)


def _describe(job: Job) -> str:
    return f"user={job.requester.platform.value}:{job.requester.user_id}"


class Service:
    """Facade over store, scheduler and workers. Construct only through ``Service.open``."""

    def __init__(self, config: Config, store: Store) -> None:
        self._config = config
        self._store = store
        self._queue = FairQueue()
        self._queued: dict[str, Job] = {}
        self._hub = EventHub()
        self._workers: list[Worker] = []
        self._worker_tasks: dict[Worker, asyncio.Task[None]] = {}
        self._engines_built = False
        self._factory_error: str | None = None
        self._accepting = True
        self._stopped = False
        self._recent: dict[UserKey, deque[float]] = {}
        self._reserved: Counter[UserKey] = Counter()
        self._users: dict[UserKey, UserRecord] = {}
        self._defaults: dict[UserKey, UserDefaults] = {}  # decoded ``UserRecord.defaults``
        self._started_monotonic = time.monotonic()
        self._broadcast_pending = False
        self._queued_sent: dict[str, tuple[int, float | None, int | None]] = {}

    # ---- lifecycle ---------------------------------------------------------------------------

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
        async with Store.open(config.db_path) as store:
            service = cls(config, store)
            await service._recover()
            service._build_engines(engine_factory)
            log.info("service open: %d job(s) queued from the last run", len(service._queue))
            try:
                yield service
            finally:
                await service._stop()

    async def _recover(self) -> None:
        now = time.time()
        interrupted: list[tuple[int, Job]] = []
        for seq, job in await self._store.jobs_in([JobStatus.RUNNING, JobStatus.QUEUED]):
            if job.status is JobStatus.QUEUED:
                self._enqueue(job, seq)
            elif job.attempts >= 1:
                detail = f"interrupted twice while running (attempts={job.attempts})"
                await self._store.mark_failed(job.id, "error.interrupted_twice", detail, now)
                log.warning("job %s failed: interrupted twice %s", job.id, _describe(job))
            else:
                interrupted.append((seq, job))
        for seq, job in reversed(interrupted):  # each goes to the front: oldest ends up first
            await self._store.requeue(job.id, job.attempts + 1)
            self._enqueue(
                replace(job, status=JobStatus.QUEUED, attempts=job.attempts + 1), seq, first=True
            )
            log.warning("job %s re-queued after an interruption %s", job.id, _describe(job))
        for platform, user_id, created_at in await self._store.recent_submissions(now - HOUR_S):
            self._recent.setdefault((platform.value, user_id), deque()).append(created_at)
        for record in await self._store.users():
            self._remember(record)

    def _build_engines(self, factory: Callable[[], Sequence[Engine]]) -> None:
        loop = asyncio.get_running_loop()

        def build() -> None:  # factory thread
            try:
                engines, error = list(factory()), None
            except BaseException as exc:  # reported to the loop, shown in status
                engines, error = [], exc
            with contextlib.suppress(RuntimeError):  # the loop closed while the factory ran
                loop.call_soon_threadsafe(self._engines_ready, engines, error)

        threading.Thread(target=build, name="majicbot-engine-factory", daemon=True).start()

    def _engines_ready(self, engines: list[Engine], error: BaseException | None) -> None:
        self._engines_built = True
        if error is not None:
            self._factory_error = repr(error)
            log.error("engine factory failed: %r", error)
        if self._stopped:
            return
        names = _worker_names([engine.device for engine in engines])
        load_lock = threading.Lock()
        for name, engine in zip(names, engines, strict=True):
            worker = Worker(name, engine, self, self, load_lock)
            self._workers.append(worker)
            task = asyncio.get_running_loop().create_task(worker.run(), name=f"worker-{name}")
            task.add_done_callback(self._worker_done)
            self._worker_tasks[worker] = task
        self._positions_changed()

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("worker task %s crashed", task.get_name(), exc_info=task.exception())

    async def _stop(self) -> None:
        self._accepting = False
        self._queue.close()
        log.info(
            "stopping: no new jobs; waiting up to %.0f s for running jobs",
            self._config.service.stop_grace_s,
        )
        serving = [t for w, t in self._worker_tasks.items() if w.ready]
        if serving:
            _, late = await asyncio.wait(serving, timeout=self._config.service.stop_grace_s)
            if late:
                await self._cancel_for_stop(late)
        self._stopped = True
        for worker, task in self._worker_tasks.items():
            task.cancel()
            if worker.ready:
                await worker.close()
            else:
                worker.abandon()
        await asyncio.gather(*self._worker_tasks.values(), return_exceptions=True)
        self._hub.close()
        log.info("stopped")

    async def _cancel_for_stop(self, late: set[asyncio.Task[None]]) -> None:
        for worker in self._workers:
            if worker.current is not None:
                log.info(
                    "job %s: grace period over, cancelling for the stop", worker.current.job.id
                )
                worker.current.stopping = True
                worker.current.cancel.set()
        _, stuck = await asyncio.wait(late, timeout=CANCEL_WAIT_S)
        for task in stuck:
            log.error("worker task %s did not stop; its job counts as interrupted", task.get_name())

    # ---- submitting --------------------------------------------------------------------------

    async def submit(self, request: ImagineRequest) -> Submission:
        """Validate, commit to SQLite, queue; returns the stored job with position and ETA."""
        if not self._accepting:
            raise ServiceStopping()
        requester = request.requester
        user = user_key(requester)
        self._check_user(requester)
        request = apply_defaults(request, self._defaults.get(user, UserDefaults()))
        params = resolve_params(request, self._config.limits)
        now = time.time()
        if not self.is_admin(requester):
            self._check_limits(user, now)
        self._reserved[user] += 1
        try:
            job, seq = await self._insert(request, params, now)
        finally:
            self._reserved[user] -= 1
            if not self._reserved[user]:
                del self._reserved[user]
        self._recent.setdefault(user, deque()).append(now)
        position = self._enqueue(job, seq)
        log.info(
            "job %s queued at position %d %s steps=%d size=%dx%d",
            job.id,
            position,
            _describe(job),
            params.steps,
            params.width,
            params.height,
        )
        return Submission(job, position, self._eta_for(position, params.steps))

    async def reroll(
        self, job_id: str, requester: Requester, reply_to: ReplyTarget, *, variation: bool
    ) -> Submission:
        """Submit ``job_id``'s prompt and settings again for ``requester``: new seed or seed + 1."""
        parent = await self.job(job_id)
        p = parent.params
        seed = (p.seed + 1) % (SEED_MAX + 1) if variation else random_seed()
        return await self.submit(
            ImagineRequest(
                prompt=p.prompt,
                requester=requester,
                reply_to=reply_to,
                seed=seed,
                steps=p.steps,
                width=p.width,
                height=p.height,
                guidance=p.guidance,
                parent_job_id=parent.id,
            )
        )

    def _check_limits(self, user: UserKey, now: float) -> None:
        limits = self._config.limits
        active = self._queue.count_for(user) + self._running_count(user) + self._reserved[user]
        if active >= limits.per_user_queue:
            raise LimitReached("error.user_queue_full", limit=limits.per_user_queue)
        recent = self._recent.get(user, deque())
        while recent and recent[0] <= now - HOUR_S:
            recent.popleft()
        record = self._users.get(user)
        quota = record.hourly_quota if record and record.hourly_quota else limits.per_user_hourly
        if len(recent) + self._reserved[user] >= quota:
            retry_after = round(recent[0] + HOUR_S - now) if recent else 0
            raise LimitReached("error.hourly_quota", limit=quota, retry_after_s=retry_after)
        if len(self._queue) + self._reserved.total() >= limits.queue_max:
            raise LimitReached("error.queue_full", limit=limits.queue_max)

    def _running_count(self, user: UserKey) -> int:
        return sum(
            1 for w in self._workers if w.current and user_key(w.current.job.requester) == user
        )

    async def _insert(
        self, request: ImagineRequest, params: GenerationParams, now: float
    ) -> tuple[Job, int]:
        for _ in range(5):
            job = Job(
                id=new_job_id(),
                params=params,
                requester=request.requester,
                reply_to=request.reply_to,
                status=JobStatus.QUEUED,
                created_at=now,
                parent_job_id=request.parent_job_id,
            )
            try:
                return job, await self._store.insert_job(job)
            except DuplicateJobId:
                log.warning("job id %s already taken; drawing another", job.id)
        raise RuntimeError("could not draw a free job id")  # 5 collisions in 62**9: a bug

    def _enqueue(self, job: Job, seq: int, *, first: bool = False) -> int:
        self._queued[job.id] = job
        position = self._queue.push(
            job.id, user_key(job.requester), seq, job.params.steps, first=first
        )
        self._positions_changed()
        return position

    # ---- the worker seam (JobSource and JobSink) ------------------------------------------------

    async def take(self) -> Job:
        """The next queued job in fair order (called by idle workers)."""
        job_id = await self._queue.take()
        self._queued_sent.pop(job_id, None)
        self._positions_changed()
        return self._queued.pop(job_id)

    async def started(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        # Publish before the first await: from ``take`` to here the job is neither queued nor
        # running for a new subscriber, and this keeps that gap inside one loop turn.
        event = Started(job.id, worker.name)
        self._hub.set_running_state(event)
        self._hub.publish(event)
        await self._store.mark_running(job.id, worker.name, active.started_at)
        log.info("job %s started on %s %s", job.id, worker.name, _describe(job))

    def progressed(self, worker: Worker, active: ActiveJob, step: int, total: int) -> None:
        event = Progress(active.job.id, step, total, worker.eta_s(active))
        self._hub.set_running_state(event)
        self._hub.publish(event)

    async def succeeded(self, worker: Worker, active: ActiveJob, result: GenerationResult) -> None:
        job = active.job
        path = output_path(self._config.outputs_dir, job.id, job.created_at)
        text = parameters_text(
            job.params,
            result.model or self._config.engine.model,
            result.profile,
            f"majicbot {dict(versions())['majicbot']}",
        )
        try:
            await write_png(result.image, path, text)
        except OSError as exc:
            log.error("job %s: writing %s failed: %s", job.id, path, exc)
            await self.failed(worker, active, "error.engine", f"writing the image failed: {exc}")
            return
        timings = replace(result.timings, wait_s=max(0.0, active.started_at - job.created_at))
        finished = time.time()
        await self._store.mark_succeeded(job.id, path, timings, finished, result.prompt_truncated)
        log.info(
            "job %s succeeded on %s in %.2f s %s",
            job.id,
            worker.name,
            timings.generate_s,
            _describe(job),
        )
        self._hub.publish(Succeeded(job.id, path, timings))

    async def failed(self, worker: Worker, active: ActiveJob, key: str, detail: str) -> None:
        job = active.job
        await self._store.mark_failed(job.id, key, detail, time.time())
        log.warning(
            "job %s failed on %s: %s (%s) %s", job.id, worker.name, key, detail, _describe(job)
        )
        self._hub.publish(Failed(job.id, key, detail))

    async def cancelled(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        await self._store.mark_cancelled(job.id, time.time())
        log.info("job %s cancelled while running on %s %s", job.id, worker.name, _describe(job))
        self._hub.publish(Cancelled(job.id))

    async def interrupted(self, worker: Worker, active: ActiveJob) -> None:
        job = active.job
        await self._store.requeue(job.id, job.attempts)
        self._hub.forget_running(job.id)
        log.info("job %s back to the queue for the next start %s", job.id, _describe(job))

    def engine_changed(self, worker: Worker) -> None:
        self._positions_changed()

    # ---- cancelling --------------------------------------------------------------------------

    async def cancel(self, job_id: str, requester: Requester) -> Job:
        """Cancel a queued job now, or a running one at its next step (``Cancelled`` follows)."""
        queued = self._queued.get(job_id)
        if queued is not None:
            self.check_can_manage(queued, requester)
            self._queue.remove(job_id)
            del self._queued[job_id]
            self._queued_sent.pop(job_id, None)
            self._positions_changed()
            finished = time.time()
            await self._store.mark_cancelled(job_id, finished)
            log.info("job %s cancelled while queued %s", job_id, _describe(queued))
            self._hub.publish(Cancelled(job_id))
            return replace(queued, status=JobStatus.CANCELLED, finished_at=finished)
        for worker in self._workers:
            active = worker.current
            if active is not None and active.job.id == job_id:
                self.check_can_manage(active.job, requester)
                active.cancel.set()
                log.info("job %s cancel requested while running %s", job_id, _describe(active.job))
                return replace(
                    active.job,
                    status=JobStatus.RUNNING,
                    started_at=active.started_at,
                    worker=worker.name,
                )
        job = await self.job(job_id)
        self.check_can_manage(job, requester)
        if not job.status.is_terminal:
            raise ServiceStopping()  # queued or running in the store but not live: stopping
        raise JobNotCancellable(job_id=job_id, status=job.status.value)

    # ---- events ------------------------------------------------------------------------------

    async def subscribe(self, job_id: str) -> AsyncIterator[JobEvent]:
        """First the job's current state, then its events until the terminal one."""
        current = self._live_event(job_id)
        if current is None:
            job = await self.job(job_id)
            terminal = _terminal_event(job)
            if terminal is not None:
                yield terminal
            return
        # No await between computing ``current`` and registering: nothing can fall between.
        async for event in self._hub.subscribe(job_id, current):
            yield event

    def _live_event(self, job_id: str) -> JobEvent | None:
        if job_id in self._queued:
            event = self._queued_event(job_id, self._warming_percent())
            self._note_shown(event)
            return event
        return self._hub.running_state(job_id)

    def _queued_event(self, job_id: str, warming: float | None) -> Queued:
        position = self._queue.position(job_id) or 0
        steps = self._queued[job_id].params.steps
        return Queued(job_id, position, self._eta_for(position, steps), warming)

    def _eta_for(self, position: int, steps: int) -> float | None:
        ready = [w for w in self._workers if w.ready]
        timings = [w.timer.s_per_step for w in ready if w.timer.s_per_step is not None]
        running_left = sum(w.steps_left() for w in ready)
        return queue_eta_s(position, steps, self._queue, running_left, timings)

    def _warming_percent(self) -> float | None:
        """0..100 while no engine is ready yet; None once one is (or once all have failed)."""
        if not self._engines_built:
            return 0.0
        if any(w.ready for w in self._workers):
            return None
        loading = [w.state().load_fraction for w in self._workers if w.load_error is None]
        return round(100 * max(loading), 1) if loading else None

    def _positions_changed(self) -> None:
        """Coalesce position updates: one broadcast per loop turn however many jobs moved."""
        if self._broadcast_pending or self._stopped:
            return
        self._broadcast_pending = True
        asyncio.get_running_loop().call_soon(self._broadcast_positions)

    def _broadcast_positions(self) -> None:
        self._broadcast_pending = False
        warming = self._warming_percent()
        for job_id in self._hub.subscribed_job_ids():
            if job_id in self._queued:
                event = self._queued_event(job_id, warming)
                if self._note_shown(event):
                    self._hub.publish(event)

    def _note_shown(self, event: Queued) -> bool:
        """Remember what subscribers of the job saw last; False if ``event`` shows nothing new."""
        eta = round(event.eta_s) if event.eta_s is not None else None
        shown = (event.position, event.warming_percent, eta)
        if self._queued_sent.get(event.job_id) == shown:
            return False
        self._queued_sent[event.job_id] = shown
        return True

    # ---- queries -----------------------------------------------------------------------------

    async def job(self, job_id: str) -> Job:
        """The stored job; raises ``JobNotFound``."""
        job = await self._store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id=job_id)
        return job

    async def history(
        self, requester: Requester, scope: HistoryScope = HistoryScope.USER, limit: int = 10
    ) -> list[Job]:
        """Newest first: the requester's own jobs, or (admins) a chat's or the platform's."""
        platform = requester.platform
        if scope is HistoryScope.USER:
            return await self._store.history(platform, user_id=requester.user_id, limit=limit)
        if not self.is_admin(requester):
            raise AccessDenied("error.admin_only")
        if scope is HistoryScope.CHAT:
            return await self._store.history(platform, chat_id=requester.chat_id, limit=limit)
        return await self._store.history(platform, limit=limit)

    def is_admin(self, requester: Requester) -> bool:
        """Configured admin of its platform, or marked ``platform_admin`` by the adapter."""
        return config_admin(requester, self._config)

    def check_can_manage(self, job: Job, requester: Requester) -> None:
        """Raise ``AccessDenied`` unless ``requester`` owns ``job`` or is an admin."""
        if user_key(job.requester) == user_key(requester) or self.is_admin(requester):
            return
        raise AccessDenied("error.not_your_job", job_id=job.id)

    async def status(self) -> StatusSnapshot:
        """Everything /status shows."""
        stats = await self._store.stats(time.time() - HOUR_S)
        return StatusSnapshot(
            engines=self._engine_states(),
            queue_length=len(self._queue),
            running=tuple(r for w in self._workers if (r := w.running()) is not None),
            done_last_hour=stats.succeeded,
            failed_last_hour=stats.failed,
            mean_s_per_image_last_hour=stats.mean_s_per_image,
            uptime_s=time.monotonic() - self._started_monotonic,
            process_rss_bytes=process_rss_bytes(),
            accepting=self._accepting,
            versions=versions(),
        )

    def _engine_states(self) -> tuple[EngineState, ...]:
        states = [w.state() for w in self._workers]
        if self._factory_error is not None:
            states.append(EngineState(device="(engine factory)", error=self._factory_error))
        return tuple(states)

    async def active_jobs(self, platform: Platform) -> list[Job]:
        """Queued and running jobs of ``platform``, oldest first."""
        rows = await self._store.jobs_in([JobStatus.QUEUED, JobStatus.RUNNING], platform)
        return [job for _, job in rows]

    async def undelivered(self, platform: Platform) -> list[Job]:
        """Succeeded or failed jobs of ``platform`` whose result was not delivered yet."""
        return await self._store.undelivered(platform)

    async def mark_delivered(self, job_id: str) -> None:
        """Record that the adapter delivered ``job_id``'s result; raises ``JobNotFound``."""
        if not await self._store.mark_delivered(job_id, time.time()):
            raise JobNotFound(job_id=job_id)

    async def set_user(self, record: UserRecord) -> None:
        """Ban/unban a user or set their hourly quota (admin tooling)."""
        await self._store.put_user(record)
        self._remember(record)

    def _remember(self, record: UserRecord) -> None:
        key = (record.platform.value, record.user_id)
        self._users[key] = record
        who = f"{record.platform.value}:{record.user_id}"
        self._defaults[key] = decode_defaults(record.defaults, self._config.limits, who)

    def _record(self, platform: Platform, user_id: str) -> UserRecord:
        return self._users.get((platform.value, user_id)) or UserRecord(platform, user_id)

    # ---- per-user settings and moderation ------------------------------------------------------

    def user_settings(self, requester: Requester) -> UserSettings:
        """The requester's own defaults and the values a bare ``/imagine`` will use."""
        self._check_user(requester)
        defaults = self._defaults.get(user_key(requester), UserDefaults())
        return effective_settings(defaults, self._config.limits)

    async def set_defaults(self, requester: Requester, defaults: UserDefaults) -> UserRecord:
        """Merge ``defaults`` (the options given) into the requester's defaults and store them.

        Validated exactly like a request's options (raises ``InvalidRequest`` with the same keys);
        a new size (aspect or width/height) replaces the old one.
        """
        self._check_user(requester)
        checked = check_defaults(defaults, self._config.limits)
        current = self._defaults.get(user_key(requester), UserDefaults())
        return await self._store_defaults(requester, merge_defaults(current, checked))

    async def reset_defaults(self, requester: Requester) -> UserRecord:
        """Forget the requester's defaults: ``/imagine`` uses the configured ones again."""
        self._check_user(requester)
        return await self._store_defaults(requester, UserDefaults())

    async def _store_defaults(self, requester: Requester, defaults: UserDefaults) -> UserRecord:
        current = self._record(requester.platform, requester.user_id)
        record = replace(current, defaults=encode_defaults(defaults))
        await self.set_user(record)
        who = f"{requester.platform.value}:{requester.user_id}"
        log.info("defaults of %s set to %s", who, dict(record.defaults))
        return record

    def _check_user(self, requester: Requester) -> None:
        record = self._users.get(user_key(requester))
        check_access(requester, self._config, banned_in_store=bool(record and record.banned))

    async def set_banned(self, requester: Requester, user_id: str, *, banned: bool) -> UserRecord:
        """Ban (or unban) ``user_id`` of the requester's platform; admins only.

        Raises ``AccessDenied("error.admin_only")`` for non-admins and
        ``InvalidRequest("error.cannot_ban_admin")`` for a configured admin (who passes every
        check, so the ban would do nothing). Their queued jobs are left as they are.
        """
        if not self.is_admin(requester):
            raise AccessDenied("error.admin_only")
        target = Requester(requester.platform, user_id)
        if banned and self.is_admin(target):
            raise InvalidRequest("error.cannot_ban_admin", user_id=user_id)
        record = replace(self._record(requester.platform, user_id), banned=banned)
        await self.set_user(record)
        action = "banned" if banned else "unbanned"
        log.info("%s:%s %s by %s", target.platform.value, user_id, action, requester.user_id)
        return record


def _worker_names(devices: list[str]) -> list[str]:
    """Devices as worker names; a device listed twice gets ``#1``, ``#2``... on each."""
    counts = Counter(devices)
    seen: Counter[str] = Counter()
    names = []
    for device in devices:
        seen[device] += 1
        names.append(f"{device}#{seen[device]}" if counts[device] > 1 else device)
    return names


def _terminal_event(job: Job) -> JobEvent | None:
    if job.status is JobStatus.SUCCEEDED and job.result_path is not None:
        return Succeeded(job.id, job.result_path, job.timings or Timings())
    if job.status is JobStatus.FAILED:
        return Failed(job.id, job.error_key or "error.engine", job.error_detail or "")
    if job.status is JobStatus.CANCELLED:
        return Cancelled(job.id)
    return None
