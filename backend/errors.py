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
    │   └── ServiceStopping            the service is shutting down and refuses new jobs
    ├── EngineError                    generation failed; carries a message key for the user
    │   ├── ModelFilesMissing          weights absent or not recognised; lists them
    │   ├── ProfileDoesNotFit          the placement profile needs more memory than there is
    │   ├── OutOfMemory                CUDA OOM during a job (the worker keeps serving)
    │   └── GenerationCancelled        raised inside the engine when a job is cancelled mid-run
    ├── AdapterUnavailable             a chat platform cannot be reached at start (network, URL)
    └── DownloadError                  `majicbot download` could not fetch or verify a file

User-facing errors carry ``key`` (a translation key in ``bots.i18n``) and ``params`` (values that
the translated sentence interpolates). Adapters map errors to replies in exactly one place each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MajicbotError(Exception):
    """Base class of every error majicbot raises on purpose."""


class ConfigError(MajicbotError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""


class UserError(MajicbotError):
    """A request that cannot be accepted; ``key`` selects the sentence shown to the user."""

    key: str = "error.generic"

    def __init__(self, key: str | None = None, detail: str = "", **params: Any) -> None:
        self.key = key or type(self).key
        self.params: Mapping[str, Any] = params
        self.detail = detail or f"{self.key} {params}"
        super().__init__(self.detail)


class InvalidRequest(UserError):
    key = "error.invalid"


class AccessDenied(UserError):
    key = "error.access_denied"


class LimitReached(UserError):
    key = "error.limit"


class JobNotFound(UserError):
    key = "error.job_not_found"


class JobNotCancellable(UserError):
    key = "error.job_not_cancellable"


class NothingToCancel(UserError):
    key = "cancel.nothing"


class ServiceStopping(UserError):
    key = "error.stopping"


class EngineError(MajicbotError):
    """Generation failed; ``key`` is the user-facing reason, the message is for the log."""

    key: str = "error.engine"

    def __init__(self, detail: str, key: str | None = None, **params: Any) -> None:
        self.key = key or type(self).key
        self.params: Mapping[str, Any] = params
        self.detail = detail
        super().__init__(detail)


class ModelFilesMissing(EngineError):
    key = "error.model_files"


class ProfileDoesNotFit(EngineError):
    key = "error.profile_fit"


class OutOfMemory(EngineError):
    key = "error.oom"


class GenerationCancelled(EngineError):
    key = "error.cancelled"


class AdapterUnavailable(MajicbotError):
    """A chat platform could not be reached at start; the message says where and what to check."""


class DownloadError(MajicbotError):
    """Fetching or verifying weights failed."""
