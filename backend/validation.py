"""Turning an ``ImagineRequest`` into ``GenerationParams`` (who may ask is ``backend.access``).

Errors: ``InvalidRequest`` for a request out of bounds, ``AccessDenied`` for who may not ask;
their keys and the params each key takes are declared in ``backend.keys``.

Engine unavailable (``Queued.unavailable``; no params): ``error.model_files``,
``error.profile_fit`` or another ``EngineError`` key of the first engine that failed to load, or
``error.engine_unavailable`` when the engines could not be built or loaded for another reason.

Access rules (who is an admin, bans, allowlists, managing jobs) are ``backend.access``'s.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable

from backend import keys
from backend.config import LimitsConfig
from backend.domain import SEED_MAX, GenerationParams, ImagineRequest
from backend.errors import InvalidRequest

__all__ = ["SEED_MAX", "random_seed", "resolve_params"]

SIDE_MULTIPLE = 16

RandomSeed = Callable[[], int]


def random_seed() -> int:
    """A seed in [0, 2**32 - 1]."""
    return secrets.randbelow(SEED_MAX + 1)


def resolve_params(
    request: ImagineRequest, limits: LimitsConfig, new_seed: RandomSeed = random_seed
) -> GenerationParams:
    """Validate ``request`` against ``limits`` and fill in defaults; raises ``InvalidRequest``."""
    options = request.options
    width, height = size_of(options.width, options.height, options.aspect, limits)
    return GenerationParams(
        prompt=check_prompt(request.prompt, limits),
        seed=check_seed(options.seed, new_seed),
        steps=check_steps(options.steps, limits),
        width=width,
        height=height,
        guidance=check_guidance(options.guidance, limits),
    )


def check_prompt(prompt: str, limits: LimitsConfig) -> str:
    """The prompt without surrounding whitespace; text that is not valid Unicode is refused (a
    lone surrogate, as a JSON ``\\ud83d`` escape or undecodable command-line bytes produce)."""
    text = prompt.strip()
    if not text:
        raise InvalidRequest("error.prompt_empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(keys.PROMPT_NOT_TEXT) from None
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


def size_of(
    width: int | None, height: int | None, aspect: str | None, limits: LimitsConfig
) -> tuple[int, int]:
    """(width, height): from the aspect ratio, the explicit sides, or the default square."""
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
