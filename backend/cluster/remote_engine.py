"""``RayEngine``: the ``Engine`` a local ``Worker`` drives, over one ``GpuWorker`` actor.

Every method blocks (the worker calls it from its own engine thread, never the event loop).
``load`` and ``generate`` read the actor's event streams (``backend.cluster.actor``); a cancel
asked for on this side reaches the actor within ``POLL_S`` and the engine stops at its next step.
When the actor's process dies (or is killed: a cancelled job whose actor stays silent for
``CANCEL_KILL_S``, a hung GPU), the call raises ``WorkerLost``: the worker hands the job back to
the queue and calls ``load`` again, which waits for Ray to restart the actor (``max_restarts``)
and loads the model there. ``state`` is the actor's last reported state, refreshed every
``REFRESH_S`` by a small thread (a restart, a finished background compile) and labelled with the
actor's node and GPU for ``/status``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from backend import keys
from backend.cluster.actor import Outcome, WorkerInfo
from backend.domain import EngineState, GenerationParams
from backend.engine.protocol import CancelCheck, GenerationResult, LoadReport, StepCallback
from backend.errors import EngineError, GenerationCancelled, WorkerLost

log = logging.getLogger("majicbot.cluster")

POLL_S = 0.05  # how often a running job's cancel flag is looked at between steps
REFRESH_S = 2.0  # how often the idle state is asked for
CALL_TIMEOUT_S = 10.0  # a small call (state, describe of a placed actor) that takes longer: skip
RESTART_POLL_S = 0.5  # how often a restarting actor is asked whether it is back
LOAD_ATTEMPTS = 3  # an actor that dies while loading is waited for and asked again this often
# A cancelled job whose actor sends nothing for this long is hung: the actor is killed (Ray
# restarts it). Below the stall watchdog's grace (60 s), which would restart the whole service.
CANCEL_KILL_S = 30.0


class RayEngine:
    """One actor seen as an engine. ``name`` ("ray-1") is its worker's name."""

    def __init__(self, name: str, actor: Any) -> None:
        self._name = name
        self._actor = actor
        self._lock = threading.Lock()
        self._state = EngineState(device=name)
        self._info: WorkerInfo | None = None
        self._restarts = 0
        self._closed = threading.Event()
        self._refresher: threading.Thread | None = None

    @property
    def device(self) -> str:
        return self._name

    @property
    def info(self) -> WorkerInfo | None:
        """Where the actor runs now (None until it was placed)."""
        return self._info

    # ---- Engine ---------------------------------------------------------------------------------

    def load(self, report: LoadReport) -> None:
        """Wait for the actor (placed, or restarted), then load its engine, streaming states.

        An actor whose process dies while loading is waited for and asked again, up to
        ``LOAD_ATTEMPTS`` times (a model that kills its host each time must not loop forever).
        """
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                self._load_once(report)
                break
            except WorkerLost as exc:
                if attempt == LOAD_ATTEMPTS:
                    detail = f"the actor died {attempt} times while loading: {exc}"
                    raise EngineError(detail) from None
                log.warning("%s: the actor died while loading (%s); again", self._name, exc)
        if self._refresher is None:
            self._refresher = threading.Thread(
                target=self._refresh, name=f"majicbot-{self._name}-state", daemon=True
            )
            self._refresher.start()

    def _load_once(self, report: LoadReport) -> None:
        info = self._placed()
        with self._lock:
            if self._info is not None and info.pid != self._info.pid:
                self._restarts += 1
            self._info = info
        log.info("%s: actor on %s (%s), pid %d", self._name, info.host, info.ip, info.pid)
        stream = self._actor.load.options(num_returns="streaming").remote()
        for event in _events(stream, ran=False):
            if event[0] in ("state", "ready"):
                self._set_state(event[1])
                report(self.state())
            elif event[0] == "failed":
                _, key, detail = event
                self._set_state(replace(self._state, error=detail))
                report(self.state())
                raise EngineError(detail, key)

    def _placed(self) -> WorkerInfo:
        """Where the actor runs, once Ray has placed (or restarted) it. Waits as long as that
        takes (no node with a free GPU yet: the worker shows as loading); an actor Ray gave up
        on (``max_restarts`` used up, or killed) raises ``EngineError``."""
        import ray

        while True:
            try:
                info: WorkerInfo = ray.get(self._actor.describe.remote())
                return info
            except ray.exceptions.ActorUnavailableError:  # restarting: ask again shortly
                if self._closed.wait(RESTART_POLL_S):
                    raise EngineError("closed while waiting for the actor") from None
            except ray.exceptions.RayActorError as exc:  # dead for good
                raise EngineError(f"the actor is gone: {_first_line(exc)}") from None

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        import ray

        stream = self._actor.generate.options(num_returns="streaming").remote(params)
        asked_at: float | None = None
        for event in _events(stream, ran=True, idle=lambda: None):
            if asked_at is None and cancelled():
                self._actor.cancel.remote()
                asked_at = time.monotonic()
            kind = event[0]
            if kind == "idle":
                if asked_at is not None and time.monotonic() - asked_at > CANCEL_KILL_S:
                    # A hung engine (a stuck CUDA call): restart its process, not the service.
                    log.error("%s: no answer %.0f s after a cancel; killing the actor",
                              self._name, CANCEL_KILL_S)  # fmt: skip
                    ray.kill(self._actor, no_restart=False)
                    raise WorkerLost("killed: it did not stop after a cancel", ran=True)
                continue
            if kind == "step":
                on_step(event[1], event[2])
            elif kind == "done":
                return self._result(event[1])
            elif kind == "cancelled":
                raise GenerationCancelled("cancelled")
            elif kind == "failed":
                raise EngineError(event[2], event[1])
            elif kind == "not_loaded":
                raise WorkerLost("the actor was restarted and has no model yet", ran=False)
        raise WorkerLost("the actor's stream ended without a result", ran=True)

    def state(self) -> EngineState:
        with self._lock:
            state, info, restarts = self._state, self._info, self._restarts
        if info is None:
            return replace(state, device=self._name, restarts=restarts)
        where = f"GPU {','.join(info.gpu_ids)}" if info.gpu_ids else "CPU"
        return replace(
            state, device=f"{self._name} ({where})", node=f"{info.host} {info.ip}",
            restarts=restarts,
        )  # fmt: skip

    def close(self) -> None:
        """End the actor for good (no restart): its process exits, which frees its GPU."""
        import ray

        self._closed.set()
        try:
            ray.kill(self._actor, no_restart=True)
        except Exception as exc:  # the cluster is already gone
            log.debug("%s: kill failed: %r", self._name, exc)

    # ---- inside ------------------------------------------------------------------------------

    def _result(self, outcome: Outcome) -> GenerationResult:
        self._set_state(outcome.state)
        return GenerationResult(  # decoded only if the image check runs (``picture``)
            None, outcome.timings, outcome.prompt_truncated, outcome.profile, outcome.model,
            png=outcome.png,
        )  # fmt: skip

    def _set_state(self, state: EngineState) -> None:
        with self._lock:
            self._state = state

    def _refresh(self) -> None:
        """Keep the shown state current while idle; a dead actor shows as not warmed up."""
        import ray

        while not self._closed.wait(REFRESH_S):
            try:
                state = ray.get(self._actor.state.remote(), timeout=CALL_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                continue  # busy placing or restarting: keep the last state
            except Exception:
                with self._lock:
                    self._state = replace(self._state, warmed_up=False)
                continue
            if state is not None:
                self._set_state(state)


def _events(stream: Any, *, ran: bool, idle: Any = None) -> Any:
    """The events of an actor stream; ``("idle",)`` every ``POLL_S`` without one if ``idle``.

    A dead actor or a lost object raises ``WorkerLost`` (``ran``: the job had started there); an
    error raised inside the actor method itself (a bug) raises ``EngineError``.
    """
    import ray

    while True:
        if idle is not None:
            ready, _ = ray.wait([stream], timeout=POLL_S)
            if not ready:
                yield ("idle",)
                continue
        try:
            ref = _lost_if_dead(lambda: next(stream), ran)
        except StopIteration:
            return
        yield _lost_if_dead(lambda ref=ref: ray.get(ref), ran)


def _lost_if_dead(call: Any, ran: bool) -> Any:
    import ray

    try:
        return call()
    except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
        raise WorkerLost(f"{type(exc).__name__}: {_first_line(exc)}", ran=ran) from None
    except ray.exceptions.RayTaskError as exc:
        raise EngineError(f"the actor failed: {_first_line(exc)}", keys.ENGINE) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
