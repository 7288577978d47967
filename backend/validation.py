"""Turning an ``ImagineRequest`` into ``GenerationParams``, and who may ask at all.

Errors: ``InvalidRequest`` for a request out of bounds, ``AccessDenied`` for who may not ask;
their keys and the params each key takes are declared in ``backend.keys``.

Access rules: admins (config ids per platform, or ``Requester.platform_admin``) pass every check
and bypass every cap. Telegram: a user in ``banned_users`` is refused; when ``allowed_users`` or
``allowed_chats`` is non-empty, a request passes if its user is in ``allowed_users`` *or* its chat
is in ``allowed_chats``. Discord: banned users are refused; DMs need ``allow_dms``; in a guild,
``allowed_guilds`` (when non-empty) must list it. Users banned in the store (``users`` table) are
refused on every platform. The CLI platform is always allowed (whoever runs it owns the machine).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable

from backend.config import Config, LimitsConfig
from backend.domain import GenerationParams, ImagineRequest, Platform, Requester
from backend.errors import AccessDenied, InvalidRequest

SEED_MAX = 2**32 - 1
SIDE_MULTIPLE = 16

RandomSeed = Callable[[], int]


def random_seed() -> int:
    """A seed in [0, 2**32 - 1]."""
    return secrets.randbelow(SEED_MAX + 1)


def resolve_params(
    request: ImagineRequest, limits: LimitsConfig, new_seed: RandomSeed = random_seed
) -> GenerationParams:
    """Validate ``request`` against ``limits`` and fill in defaults; raises ``InvalidRequest``."""
    width, height = resolve_size(request, limits)
    return GenerationParams(
        prompt=check_prompt(request.prompt, limits),
        seed=check_seed(request.seed, new_seed),
        steps=check_steps(request.steps, limits),
        width=width,
        height=height,
        guidance=check_guidance(request.guidance, limits),
    )


def check_prompt(prompt: str, limits: LimitsConfig) -> str:
    """The prompt without surrounding whitespace."""
    text = prompt.strip()
    if not text:
        raise InvalidRequest("error.prompt_empty")
    if len(text) > limits.max_prompt_chars:
        raise InvalidRequest("error.prompt_too_long", length=len(text), max=limits.max_prompt_chars)
    return text


def check_steps(steps: int | None, limits: LimitsConfig) -> int:
    value = limits.default_steps if steps is None else steps
    if not 1 <= value <= limits.max_steps:
        raise InvalidRequest("error.steps_range", value=value, min=1, max=limits.max_steps)
    return value


def check_seed(seed: int | None, new_seed: RandomSeed) -> int:
    if seed is None:
        return new_seed()
    if not 0 <= seed <= SEED_MAX:
        raise InvalidRequest("error.seed_range", value=seed, min=0, max=SEED_MAX)
    return seed


def check_guidance(guidance: float | None, limits: LimitsConfig) -> float:
    value = limits.default_guidance if guidance is None else float(guidance)
    if not (math.isfinite(value) and limits.min_guidance <= value <= limits.max_guidance):
        raise InvalidRequest(
            "error.guidance_range", value=value, min=limits.min_guidance, max=limits.max_guidance
        )
    return value


def resolve_size(request: ImagineRequest, limits: LimitsConfig) -> tuple[int, int]:
    """(width, height): from the aspect ratio, the explicit sides, or the default square."""
    return size_of(request.width, request.height, request.aspect, limits)


def size_of(
    width: int | None, height: int | None, aspect: str | None, limits: LimitsConfig
) -> tuple[int, int]:
    """``resolve_size`` for loose values (also used for per-user default sizes)."""
    if aspect is not None:
        if width is not None or height is not None:
            raise _size_invalid(width, height, limits)
        return aspect_size(aspect, limits)
    if width is None and height is None:
        return limits.default_side, limits.default_side
    if width is None or height is None:
        raise _size_invalid(width, height, limits)
    return check_explicit_size(width, height, limits)


def aspect_size(aspect: str, limits: LimitsConfig) -> tuple[int, int]:
    """Sides in multiples of 16 with about ``default_side ** 2`` pixels and the given ratio."""
    normalized = normalize_aspect(aspect)
    if normalized not in limits.aspect_ratios:
        raise InvalidRequest(
            "error.aspect_unknown", value=aspect, allowed=", ".join(limits.aspect_ratios)
        )
    w_part, h_part = (int(p) for p in normalized.split(":"))
    ratio = w_part / h_part
    side = limits.default_side
    return _round_side(side * math.sqrt(ratio)), _round_side(side / math.sqrt(ratio))


def normalize_aspect(aspect: str) -> str:
    """ "16：9 " → "16:9" (the form ``limits.aspect_ratios`` lists)."""
    return aspect.strip().replace("：", ":")


def _round_side(value: float) -> int:
    return max(SIDE_MULTIPLE, round(value / SIDE_MULTIPLE) * SIDE_MULTIPLE)


def check_explicit_size(width: int, height: int, limits: LimitsConfig) -> tuple[int, int]:
    for side in (width, height):
        if side % SIDE_MULTIPLE or not limits.min_side <= side <= limits.max_side:
            raise _size_invalid(width, height, limits)
    if width * height > limits.max_pixels:
        raise InvalidRequest(
            "error.size_too_large",
            width=width,
            height=height,
            pixels=width * height,
            max_pixels=limits.max_pixels,
        )
    return width, height


def _size_invalid(width: int | None, height: int | None, limits: LimitsConfig) -> InvalidRequest:
    return InvalidRequest(
        "error.size_invalid",
        width=width,
        height=height,
        min_side=limits.min_side,
        max_side=limits.max_side,
        multiple=SIDE_MULTIPLE,
    )


# ---- access ------------------------------------------------------------------------------------


def is_admin(requester: Requester, config: Config) -> bool:
    """Configured admins of the requester's platform, or whom the adapter found to be admins.

    ``Requester.platform_admin`` is set by the adapter (Discord admin roles, Manage Server).
    """
    if requester.platform_admin:
        return True
    if requester.platform is Platform.TELEGRAM:
        return requester.user_id in config.telegram.admins
    if requester.platform is Platform.DISCORD:
        return requester.user_id in config.discord.admins
    return requester.platform is Platform.CLI


def check_access(requester: Requester, config: Config, *, banned_in_store: bool = False) -> None:
    """Raise ``AccessDenied`` unless ``requester`` may submit jobs. Admins always may."""
    if is_admin(requester, config):
        return
    if requester.platform is Platform.TELEGRAM:
        _check_telegram(requester, config, banned_in_store)
    elif requester.platform is Platform.DISCORD:
        _check_discord(requester, config, banned_in_store)


def _check_telegram(requester: Requester, config: Config, banned: bool) -> None:
    tg = config.telegram
    if banned or requester.user_id in tg.banned_users:
        raise AccessDenied("error.banned")
    if not (tg.allowed_users or tg.allowed_chats):
        return
    if requester.user_id in tg.allowed_users:
        return
    if requester.chat_id is not None and requester.chat_id in tg.allowed_chats:
        return
    raise AccessDenied("error.not_allowed", where="chat" if tg.allowed_chats else "user")


def _check_discord(requester: Requester, config: Config, banned: bool) -> None:
    dc = config.discord
    if banned or requester.user_id in dc.banned_users:
        raise AccessDenied("error.banned")
    if requester.guild_id is None:
        if not dc.allow_dms:
            raise AccessDenied("error.not_allowed", where="dm")
        return
    if dc.allowed_guilds and requester.guild_id not in dc.allowed_guilds:
        raise AccessDenied("error.not_allowed", where="guild")
