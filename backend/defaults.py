"""Per-user defaults for ``/imagine`` (``/settings``): validating, storing, applying them.

Order of precedence for each option of a request: the request's own value, then the user's
default, then the configured default. Size counts as one option: a request giving an aspect
ratio or a size ignores the user's default size entirely (so the two never conflict).

Stored form: ``UserRecord.defaults``, pairs of field name and string value
(``("steps", "20")``, ``("aspect", "16:9")``). A stored value that no longer passes validation
(an admin lowered ``max_steps``, removed an aspect ratio) is dropped when read, with a warning in
the log: the user then gets the server's default instead of an error they did not cause.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from backend.config import LimitsConfig
from backend.domain import ImagineRequest, UserDefaults, UserSettings
from backend.errors import InvalidRequest
from backend.validation import check_guidance, check_steps, normalize_aspect, size_of

log = logging.getLogger("majicbot.defaults")


def check_defaults(defaults: UserDefaults, limits: LimitsConfig) -> UserDefaults:
    """``defaults`` validated as a request's options would be (same ``InvalidRequest`` keys)."""
    steps, guidance = defaults.steps, defaults.guidance
    if steps is not None:
        check_steps(steps, limits)
    if guidance is not None:
        guidance = check_guidance(guidance, limits)
    aspect = normalize_aspect(defaults.aspect) if defaults.aspect is not None else None
    if aspect is not None or defaults.width is not None or defaults.height is not None:
        size_of(defaults.width, defaults.height, aspect, limits)
    return replace(defaults, aspect=aspect, guidance=guidance)


def merge_defaults(current: UserDefaults, new: UserDefaults) -> UserDefaults:
    """``current`` with every option ``new`` gives replaced; a new size replaces the old one."""
    steps = new.steps if new.steps is not None else current.steps
    guidance = new.guidance if new.guidance is not None else current.guidance
    width, height, aspect = _size(new) if _has_size(new) else _size(current)
    return UserDefaults(steps, width, height, aspect, guidance)


def apply_defaults(request: ImagineRequest, defaults: UserDefaults) -> ImagineRequest:
    """``request`` with the options it leaves out taken from ``defaults``."""
    if defaults.is_empty:
        return request
    width, height, aspect = request.width, request.height, request.aspect
    if not (width is not None or height is not None or aspect is not None):
        width, height, aspect = _size(defaults)
    return replace(
        request,
        steps=request.steps if request.steps is not None else defaults.steps,
        guidance=request.guidance if request.guidance is not None else defaults.guidance,
        width=width,
        height=height,
        aspect=aspect,
    )


def effective_settings(defaults: UserDefaults, limits: LimitsConfig) -> UserSettings:
    """The values an ``/imagine`` without options will use, given ``defaults``."""
    width, height = (
        size_of(*_size(defaults), limits)
        if _has_size(defaults)
        else (limits.default_side, limits.default_side)
    )
    return UserSettings(
        defaults=defaults,
        steps=check_steps(defaults.steps, limits),
        width=width,
        height=height,
        guidance=check_guidance(defaults.guidance, limits),
    )


# ---- stored form ------------------------------------------------------------------------------


def encode_defaults(defaults: UserDefaults) -> tuple[tuple[str, str], ...]:
    """The pairs kept in ``UserRecord.defaults`` (sorted, only the options that are set)."""
    values = {
        "steps": defaults.steps,
        "width": defaults.width,
        "height": defaults.height,
        "aspect": defaults.aspect,
        "guidance": defaults.guidance,
    }
    return tuple(sorted((name, str(value)) for name, value in values.items() if value is not None))


def decode_defaults(
    pairs: Iterable[tuple[str, str]], limits: LimitsConfig, who: str = ""
) -> UserDefaults:
    """The stored pairs as ``UserDefaults``; options no longer valid are dropped (and logged)."""
    stored = dict(pairs)
    result = UserDefaults()
    for option in (_steps_of, _guidance_of, _size_of_stored):
        try:
            result = merge_defaults(result, check_defaults(option(stored), limits))
        except (InvalidRequest, ValueError) as exc:
            log.warning("ignoring a stored default of %s that is no longer valid: %s", who, exc)
    return result


def _steps_of(stored: dict[str, str]) -> UserDefaults:
    return UserDefaults(steps=int(stored["steps"]) if "steps" in stored else None)


def _guidance_of(stored: dict[str, str]) -> UserDefaults:
    return UserDefaults(guidance=float(stored["guidance"]) if "guidance" in stored else None)


def _size_of_stored(stored: dict[str, str]) -> UserDefaults:
    width, height = stored.get("width"), stored.get("height")
    return UserDefaults(
        width=int(width) if width is not None else None,
        height=int(height) if height is not None else None,
        aspect=stored.get("aspect"),
    )


def _has_size(defaults: UserDefaults) -> bool:
    return any(v is not None for v in _size(defaults))


def _size(defaults: UserDefaults) -> tuple[int | None, int | None, str | None]:
    return defaults.width, defaults.height, defaults.aspect
