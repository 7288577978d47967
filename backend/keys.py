"""Every message key a ``UserError`` or ``EngineError`` can carry, one constant each.

Raise with a constant, never a string literal: ``raise InvalidRequest(keys.STEPS_RANGE, value=v,
min=1, max=limits.max_steps)``. Each constant is declared with the names of the params its raise
sites pass (``PARAMS`` maps key → names); the comment says what they hold. A translation may show
fewer of them (``where`` and ``status`` are for logs), never others: ``tests/bots/test_i18n.py``
checks every key against ``bots/locales/*.toml``, every error class's default key against this
module, and that every key still raised as a literal (older raise sites) is declared here.

Keys of job failures (``Failed.reason_key``, ``Job.error_key``) are stored in SQLite; renaming one
strands the jobs that carry it (they would show ``error.generic``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

_PARAMS: dict[str, frozenset[str]] = {}


def _key(key: str, *params: str) -> str:
    """Declare ``key`` with the names of the params its raise sites pass."""
    if key in _PARAMS:
        raise ValueError(f"{key!r} is declared twice")
    _PARAMS[key] = frozenset(params)
    return key


# ---- error class defaults (backend.errors; ParseError's is in bots.parsing) ---------------------
GENERIC: Final = _key("error.generic")  # UserError; also the fallback for an unknown key
INVALID: Final = _key("error.invalid")  # InvalidRequest
ACCESS_DENIED: Final = _key("error.access_denied")  # AccessDenied
LIMIT: Final = _key("error.limit")  # LimitReached
ENGINE: Final = _key("error.engine")  # EngineError, and any other generation failure

# ---- the request (InvalidRequest, backend.validation) -------------------------------------------
PROMPT_EMPTY: Final = _key("error.prompt_empty")  # no params
PROMPT_NOT_TEXT: Final = _key("error.prompt_not_text")  # no params: a lone surrogate and the like
PROMPT_TOO_LONG: Final = _key("error.prompt_too_long", "length", "max")  # chars given, allowed
STEPS_RANGE: Final = _key("error.steps_range", "value", "min", "max")  # asked; 1; limits.max_steps
SEED_RANGE: Final = _key("error.seed_range", "value", "min", "max")  # given; 0; 2**32 - 1
GUIDANCE_RANGE: Final = _key("error.guidance_range", "value", "min", "max")  # given; limits
# width, height (given; either may be None), min_side, max_side, multiple (16); also raised when
# only one side, or both a size and an aspect, are given
SIZE_INVALID: Final = _key(
    "error.size_invalid", "width", "height", "min_side", "max_side", "multiple"
)
# width, height, pixels (their product), max_pixels (limits.max_pixels)
SIZE_TOO_LARGE: Final = _key("error.size_too_large", "width", "height", "pixels", "max_pixels")
ASPECT_UNKNOWN: Final = _key("error.aspect_unknown", "value", "allowed")  # "1:1, 16:9, …"

# ---- access (AccessDenied) ----------------------------------------------------------------------
BANNED: Final = _key("error.banned")  # no params: config ban list or /ban
NOT_ALLOWED: Final = _key("error.not_allowed", "where")  # "user", "chat", "guild" or "dm"; for logs
NOT_YOUR_JOB: Final = _key("error.not_your_job", "job_id")
# a button whose job is not shown on the message it was pressed on (forged or misplaced)
WRONG_MESSAGE: Final = _key("error.wrong_message", "job_id")
ADMIN_ONLY: Final = _key("error.admin_only")  # no params: /history chat|all, /ban, /unban
STATUS_ADMIN_ONLY: Final = _key("status.admin_only")  # no params: /status
CANNOT_BAN_ADMIN: Final = _key("error.cannot_ban_admin", "user_id")  # raised as InvalidRequest

# ---- limits (LimitReached) ----------------------------------------------------------------------
USER_QUEUE_FULL: Final = _key("error.user_queue_full", "limit")  # jobs a user may have at once
# limit: jobs per user per hour; retry_after_s: until the oldest of them leaves the window
HOURLY_QUOTA: Final = _key("error.hourly_quota", "limit", "retry_after_s")
QUEUE_FULL: Final = _key("error.queue_full", "limit")  # jobs queued in total

# ---- jobs and lifecycle -------------------------------------------------------------------------
JOB_NOT_FOUND: Final = _key("error.job_not_found", "job_id")  # JobNotFound
# JobNotCancellable; status: "succeeded", "failed" or "cancelled", for logs
JOB_NOT_CANCELLABLE: Final = _key("error.job_not_cancellable", "job_id", "status")
ALREADY_FINISHING: Final = _key("cancel.already_finishing", "job_id")  # past the last step
NOTHING_TO_CANCEL: Final = _key("cancel.nothing")  # no params: no queued or running job
STOPPING: Final = _key("error.stopping")  # ServiceStopping; no params
# LimitReached: the job database or the image folder is failing (``backend.health``); no params
STORAGE_UNAVAILABLE: Final = _key("error.storage_unavailable")

# ---- job failures (EngineError subclasses; stored as Job.error_key) ----------------------------
INTERRUPTED_TWICE: Final = _key("error.interrupted_twice")  # stored by older versions only
# Job failures are stored as a bare key (no params): the numbers are in ``Job.error_detail``.
# Crashes or lost workers interrupted the job's runs ``results.MAX_INTERRUPTED_RUNS`` times.
INTERRUPTED_REPEATEDLY: Final = _key("error.interrupted_repeatedly")
STALLED: Final = _key("error.stalled")  # no denoising step within limits.stall_timeout_s
STORAGE: Final = _key("error.storage")  # the image was made but could not be written to disk
OOM: Final = _key("error.oom", "width", "height")  # OutOfMemory; the size that did not fit
MODEL_FILES: Final = _key("error.model_files", "files", "command")  # ModelFilesMissing; for logs
PROFILE_FIT: Final = _key("error.profile_fit", "profile", "needed_gib")  # ProfileDoesNotFit
ENGINE_UNAVAILABLE: Final = _key("error.engine_unavailable")  # Queued.unavailable; no params
CANCELLED: Final = _key("error.cancelled")  # GenerationCancelled; no params

# ---- command arguments the adapters refuse (InvalidRequest) ------------------------------------
HISTORY_USAGE: Final = _key("history.usage")  # no params: /history with arguments it can't read
BAN_USAGE: Final = _key("ban.usage")  # no params: /ban without a user id or a reply
UNBAN_USAGE: Final = _key("ban.unban_usage")  # no params: /unban without a user id or a reply

# ---- command text (bots.parsing.ParseError) -----------------------------------------------------
PARSE_USAGE: Final = _key("parse.usage")  # no params: no prompt at all
PARSE_UNKNOWN_OPTION: Final = _key("parse.unknown_option", "option", "known")  # "--foo"
PARSE_MISSING_VALUE: Final = _key("parse.missing_value", "option", "example")  # "--seed" at end
PARSE_BAD_VALUE: Final = _key("parse.bad_value", "option", "value", "example")  # "--seed abc"
PARSE_DUPLICATE: Final = _key("parse.duplicate", "option")  # "--seed 1 --seed 2"
PARSE_CONFLICT: Final = _key("parse.conflict", "first", "second")  # "--ar 16:9 --size 512x512"
PARSE_SETTINGS_USAGE: Final = _key("parse.settings_usage")  # no params: no option at all
PARSE_SETTINGS_PROMPT: Final = _key("parse.settings_prompt", "text")  # words that are not options
PARSE_SETTINGS_SEED: Final = _key("parse.settings_seed")  # no params: a default seed is refused

# ---- Discord interactions the adapter refuses before any command runs (InvalidRequest) ---------
DISCORD_BAD_OPTION: Final = _key("discord.bad_option", "option")  # a wrong, missing or extra option
DISCORD_STALE_COMMAND: Final = _key("discord.stale_command")  # no params: unknown/changed command
BUTTON_EXPIRED: Final = _key("cb.expired")  # no params: a button (custom_id) we did not make
# ---- content controls (issue 16; backend.content) ----------------------------------------------
PROMPT_REFUSED: Final = _key("error.prompt_refused")  # PromptRefused; no params (never the term)
# InvalidRequest: /policy allow in a Discord channel that is not age-restricted; no params
POLICY_NEEDS_NSFW: Final = _key("error.policy_needs_nsfw")
POLICY_USAGE: Final = _key("policy.usage")  # InvalidRequest: /policy with a word it can't read
# The sentence for a withheld image (render_final), and AccessDenied when it is asked for again
WITHHELD: Final = _key("content.withheld", "job_id")
# AccessDenied: the original file of a spoilered image (a file cannot be blurred)
SPOILER_ONLY: Final = _key("content.spoiler_only", "job_id")

PARAMS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(_PARAMS)
