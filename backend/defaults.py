"""Per-user defaults for ``/imagine`` (``/settings``): validating, storing, applying them.

Defaults are an ``Options`` without a seed. Order of precedence for each option of a request:
the request's own value, then the user's default, then the configured default
(``request.options.over(defaults)``). Size counts as one option: a request giving an aspect ratio
or a size ignores the user's default size entirely (so the two never conflict).

Stored form: ``UserRecord.defaults``, pairs of ``Options`` field name and string value
(``("steps", "20")``, ``("aspect", "16:9")``), for every field but ``seed`` — derived from the
dataclass's own fields, so a new option needs no change here. A stored value that no longer
passes validation (an admin lowered ``max_steps``, removed an aspect ratio) is dropped when read,
with a warning in the log: the user then gets the server's default instead of an error they did
not cause.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from typing import Any

from backend.config import LimitsConfig
from backend.domain import Options, UserSettings
from backend.errors import InvalidRequest
from backend.validation import check_guidance, check_steps, normalize_aspect, size_of

log = logging.getLogger("majicbot.defaults")

_SIZE_FIELDS = ("width", "height", "aspect")
STORED_FIELDS = tuple(f.name for f in fields(Options) if f.name != "seed")
# Options checked together when read back: the size as a whole, every other field alone.
_GROUPS = (*((name,) for name in STORED_FIELDS if name not in _SIZE_FIELDS), _SIZE_FIELDS)


def check_defaults(defaults: Options, limits: LimitsConfig) -> Options:
    """``defaults`` validated as a request's options would be (same ``InvalidRequest`` keys).

    A seed is dropped: a default seed would make every image the same.
    """
    steps, guidance = defaults.steps, defaults.guidance
    if steps is not None:
        check_steps(steps, limits)
    if guidance is not None:
        guidance = check_guidance(guidance, limits)
    aspect = normalize_aspect(defaults.aspect) if defaults.aspect is not None else None
    if defaults.has_size:
        size_of(defaults.width, defaults.height, aspect, limits)
    return replace(defaults, seed=None, aspect=aspect, guidance=guidance)


def effective_settings(defaults: Options, limits: LimitsConfig) -> UserSettings:
    """The values an ``/imagine`` without options will use, given ``defaults``."""
    width, height = size_of(defaults.width, defaults.height, defaults.aspect, limits)
    return UserSettings(
        defaults=defaults,
        steps=check_steps(defaults.steps, limits),
        width=width,
        height=height,
        guidance=check_guidance(defaults.guidance, limits),
    )


# ---- stored form ------------------------------------------------------------------------------


def encode_defaults(defaults: Options) -> tuple[tuple[str, str], ...]:
    """The pairs kept in ``UserRecord.defaults`` (sorted, only the options that are set)."""
    given = defaults.given()
    return tuple(sorted((name, str(given[name])) for name in STORED_FIELDS if name in given))


def decode_defaults(
    pairs: Iterable[tuple[str, str]], limits: LimitsConfig, who: str = ""
) -> Options:
    """The stored pairs as ``Options``; options no longer valid are dropped (and logged)."""
    stored = dict(pairs)
    result = Options()
    for group in _GROUPS:
        try:
            part = Options(**{name: _parse(name, stored[name]) for name in group if name in stored})
            result = check_defaults(part, limits).over(result)
        except (InvalidRequest, ValueError) as exc:
            log.warning("ignoring a stored default of %s that is no longer valid: %s", who, exc)
    return result


def _parse(name: str, text: str) -> Any:
    return _FIELD_TYPES[name](text)


def _field_type(hint: Any) -> Callable[[str], Any]:
    """``int | None`` → ``int``."""
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    parse: Callable[[str], Any] = options[0] if options else hint
    return parse


_FIELD_TYPES = {
    name: _field_type(hint)
    for name, hint in typing.get_type_hints(Options).items()
    if name in STORED_FIELDS
}
