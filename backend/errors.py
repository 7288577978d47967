"""The one error tree of majicbot.

    MajicbotError                      base of everything we raise on purpose
    ├── ConfigError                    bad config file or environment (CLI exits with status 2)
    ├── UserError                      the user's request cannot be accepted; carries a message key
    │   ├── InvalidRequest             prompt/steps/seed/size/guidance out of bounds
    │   ├── AccessDenied               banned, not allowlisted, not an admin
    │   ├── LimitReached               per-user queue cap, hourly quota, global queue full
    │   ├── JobNotFound                no job with that id (or not visible to this user)
    │   ├── JobNotCancellable          the job has already finished
    │   ├── NothingToCancel            ``cancel_latest``: the user has no queued or running job
    │   ├── PromptRefused              the prompt breaks a content rule (issue 16)
    │   └── ServiceStopping            the service is shutting down and refuses new jobs
    ├── EngineError                    generation failed; carries a message key for the user
    │   ├── ModelFilesMissing          weights absent or not recognised; lists them
    │   ├── ProfileDoesNotFit          the placement profile needs more memory than there is
    │   ├── OutOfMemory                CUDA OOM during a job (the worker keeps serving)
    │   ├── GenerationCancelled        raised inside the engine when a job is cancelled mid-run
    │   └── WorkerLost                 the engine's process (a Ray actor) died: re-queue the job
    ├── AdapterUnavailable             a chat platform cannot be reached at start (network, URL)
    ├── StartupError                   the machine refuses what serving needs (CLI exits with 2):
    │   └── InstanceLocked               another instance holds the data directory
    ├── EngineStuck                    an engine call never returned: the process exits non-zero
    └── DownloadError                  `majicbot download` could not fetch or verify a file

User-facing errors carry ``key`` (a constant of ``backend.keys``, translated by ``bots.i18n``) and
``params`` (values the translated sentence interpolates). Adapters map errors to replies in exactly
one place each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend import keys


class MajicbotError(Exception):
    """Base class of every error majicbot raises on purpose."""


class ConfigError(MajicbotError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""


class UserError(MajicbotError):
    """A request that cannot be accepted; ``key`` selects the sentence shown to the user."""

    key: str = keys.GENERIC

    def __init__(self, key: str | None = None, detail: str = "", **params: Any) -> None:
        self.key = key or type(self).key
        self.params: Mapping[str, Any] = params
        self.detail = detail or f"{self.key} {_capped(params)}"
        super().__init__(self.detail)


LOGGED_VALUE_CHARS = 80  # a parameter's repr in a log line (user values can be 100 kB)


def _capped(params: Mapping[str, Any]) -> str:
    """``{'value': '9999…'}``: every value's repr cut to ``LOGGED_VALUE_CHARS``."""
    return "{" + ", ".join(f"{name!r}: {_cut(repr(v))}" for name, v in params.items()) + "}"


def _cut(text: str) -> str:
    return text if len(text) <= LOGGED_VALUE_CHARS else text[: LOGGED_VALUE_CHARS - 1] + "…"


class InvalidRequest(UserError):
    key = keys.INVALID


class AccessDenied(UserError):
    key = keys.ACCESS_DENIED


class LimitReached(UserError):
    key = keys.LIMIT


class JobNotFound(UserError):
    key = keys.JOB_NOT_FOUND


class JobNotCancellable(UserError):
    key = keys.JOB_NOT_CANCELLABLE


class NothingToCancel(UserError):
    key = "cancel.nothing"


class PromptRefused(UserError):
    """The prompt breaks a content rule; the sentence never repeats the term."""

    key = keys.PROMPT_REFUSED


class ServiceStopping(UserError):
    key = keys.STOPPING


class EngineError(MajicbotError):
    """Generation failed; ``key`` is the user-facing reason, the message is for the log."""

    key: str = keys.ENGINE

    def __init__(self, detail: str, key: str | None = None, **params: Any) -> None:
        self.key = key or type(self).key
        self.params: Mapping[str, Any] = params
        self.detail = detail
        super().__init__(detail)


class ModelFilesMissing(EngineError):
    key = keys.MODEL_FILES


class ProfileDoesNotFit(EngineError):
    key = keys.PROFILE_FIT


class OutOfMemory(EngineError):
    key = keys.OOM


class GenerationCancelled(EngineError):
    key = keys.CANCELLED


class WorkerLost(EngineError):
    """The engine's process (a Ray actor, ``backend.cluster``) died or cannot be reached.

    ``ran``: the job had started there (it counts as one interrupted run); False when the actor
    was found restarted, without its model, before the job began (the job is not charged).
    """

    def __init__(self, detail: str, *, ran: bool) -> None:
        super().__init__(detail)
        self.ran = ran


class AdapterUnavailable(MajicbotError):
    """A chat platform could not be reached at start; the message says where and what to check."""


class StartupError(MajicbotError):
    """Serving cannot start here: the message names the path, port or host and the fix."""


class InstanceLocked(StartupError):
    """Another majicbot process holds the data directory's lock (it is named in the message)."""


class EngineStuck(MajicbotError):
    """An engine call stopped making progress and never returned; only a new process helps."""


class DownloadError(MajicbotError):
    """Fetching or verifying weights failed."""
