"""Parse the text of an ``/imagine`` command into a prompt and its options.

Accepted option forms (anywhere in the text, case-insensitive names):

    --seed 42    --seed=42    seed=42    ——seed 42    —seed ４２    --steps 20
    --ar 16:9    --ar 16：9   --size 1024x768   --size 1024×768   1024x768 (a bare token)
    --guidance 3.5    --spoiler (a flag: no value)

The dash may be ``--`` or one or two of the dashes Chinese and smart-punctuation input methods
produce (``—`` ``——`` ``–`` ``－``); values are NFKC-normalised so full-width digits, colons and
``＝`` work. The prompt is the rest of the text with whitespace collapsed; nothing inside the
prompt is normalised. Bounds (steps ≤ max, allowed ratios, …) are the backend's business: this
module only checks the *form* of each value.

Errors are ``ParseError`` (a ``UserError``) with one of these keys and params:

    parse.usage           (no params)                 no prompt at all
    parse.unknown_option  option, known               ``--foo``
    parse.missing_value   option, example             ``--seed`` at the very end
    parse.bad_value       option, value, example      ``--seed abc``
    parse.duplicate       option                      ``--seed 1 --seed 2``
    parse.conflict        first, second               ``--ar 16:9 --size 512x512``

``parse_settings`` reads ``/settings`` options with the same rules, plus:

    parse.settings_usage   (no params)                no option at all
    parse.settings_prompt  text                       words that are not options
    parse.settings_seed    (no params)                ``--seed`` (a default seed makes no sense)
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.domain import ImagineRequest, Options, ReplyTarget, Requester
from backend.errors import UserError

__all__ = [
    "EXAMPLES",
    "ParseError",
    "ParsedImagine",
    "format_options",
    "parse_imagine",
    "parse_settings",
    "to_request",
]


class ParseError(UserError):
    """The command text is malformed; ``key``/``params`` select a translated sentence."""

    key = "parse.usage"

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key, **params)


@dataclass(frozen=True)
class ParsedImagine:
    """The prompt and the options a user typed (``None`` in ``options``: not given)."""

    prompt: str
    options: Options = field(default_factory=Options)


# Canonical option name -> example shown in error messages.
EXAMPLES: dict[str, str] = {
    "seed": "--seed 42",
    "steps": "--steps 28",
    "ar": "--ar 16:9",
    "size": "--size 1024x768",
    "guidance": "--guidance 3.5",
    "spoiler": "--spoiler",
}
_ALIASES: dict[str, str] = {
    "seed": "seed",
    "steps": "steps",
    "step": "steps",
    "ar": "ar",
    "aspect": "ar",
    "size": "size",
    "guidance": "guidance",
    "cfg": "guidance",
    "spoiler": "spoiler",
}
FLAGS = frozenset({"spoiler"})  # options without a value (issue 16)
KNOWN_OPTIONS = ", ".join(f"--{name}" for name in EXAMPLES)

# One or two of these make an option prefix (a single ASCII "-" does not: "-5 degrees").
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d\u2e3a\u2e3b"
_DASH_OPTION = re.compile(
    rf"(?P<dash>--|-?[{_DASHES}]{{1,2}})(?P<name>[A-Za-zＡ-Ｚａ-ｚ][A-Za-zＡ-Ｚａ-ｚ_]*)(?P<rest>.*)",
    re.DOTALL,
)
_KEY_VALUE = re.compile(
    r"(?P<name>[A-Za-zＡ-Ｚａ-ｚ]+)[=＝](?P<value>.*)",
    re.DOTALL,
)
_INT = re.compile(r"\d{1,12}")
_RATIO = re.compile(r"(\d{1,4})[:/](\d{1,4})")
_SIZE = re.compile(r"(\d{1,5})\s*[xX×*]\s*(\d{1,5})")
# A bare size token needs three or four digits a side so that "a 4x4 grid" stays in the prompt.
_BARE_SIZE = re.compile(r"(\d{3,4})[xX×*](\d{3,4})")


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def _canonical(name: str) -> str | None:
    return _ALIASES.get(_norm(name).lower())


def _bad(option: str, value: str) -> ParseError:
    return ParseError(
        "parse.bad_value", option=f"--{option}", value=value, example=EXAMPLES[option]
    )


def _parse_int(option: str, raw: str) -> int:
    value = _norm(raw)
    if not _INT.fullmatch(value):
        raise _bad(option, raw)
    return int(value)


def _parse_steps(option: str, raw: str) -> int:
    steps = _parse_int(option, raw)
    if steps == 0:
        raise _bad(option, raw)
    return steps


def _parse_guidance(option: str, raw: str) -> float:
    value = _norm(raw).replace(",", ".")
    try:
        guidance = float(value)
    except ValueError:
        raise _bad(option, raw) from None
    if not math.isfinite(guidance) or guidance < 0 or "_" in value:
        raise _bad(option, raw)
    return guidance


def _parse_ratio(option: str, raw: str) -> str:
    match = _RATIO.fullmatch(_norm(raw))
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise _bad(option, raw)
    return f"{int(match[1])}:{int(match[2])}"


def _parse_size(option: str, raw: str) -> tuple[int, int]:
    match = _SIZE.fullmatch(_norm(raw))
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise _bad(option, raw)
    return int(match[1]), int(match[2])


_VALUE_PARSERS: dict[str, Callable[[str, str], object]] = {
    "seed": _parse_int,
    "steps": _parse_steps,
    "guidance": _parse_guidance,
    "ar": _parse_ratio,
    "size": _parse_size,
    "spoiler": lambda option, raw: True,
}


class _Collector:
    """Accumulates options while the tokens are scanned; rejects duplicates and conflicts."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.words: list[str] = []

    def add(self, option: str, raw: str) -> None:
        if option in self.values:
            raise ParseError("parse.duplicate", option=f"--{option}")
        other = {"ar": "size", "size": "ar"}.get(option)
        if other in self.values:
            raise ParseError("parse.conflict", first=f"--{other}", second=f"--{option}")
        self.values[option] = _VALUE_PARSERS[option](option, raw)

    def result(self, *, need_prompt: bool = True) -> ParsedImagine:
        prompt = " ".join(" ".join(self.words).split())
        if not prompt and need_prompt:
            raise ParseError("parse.usage")
        size = self.values.get("size")
        width, height = size if isinstance(size, tuple) else (None, None)
        seed, steps = self.values.get("seed"), self.values.get("steps")
        aspect, guidance = self.values.get("ar"), self.values.get("guidance")
        options = Options(
            seed=seed if isinstance(seed, int) else None,
            steps=steps if isinstance(steps, int) else None,
            width=width,
            height=height,
            aspect=aspect if isinstance(aspect, str) else None,
            guidance=guidance if isinstance(guidance, float) else None,
            spoiler=True if self.values.get("spoiler") else None,
        )
        return ParsedImagine(prompt, options)


def _split_glued(token: str) -> tuple[str, str]:
    """Split "猫——seed" into ("猫", "——seed") when a known option is glued to a word."""
    for match in re.finditer(rf"(?:--|[{_DASHES}]{{1,2}})", token):
        if match.start() == 0:
            continue
        option = _DASH_OPTION.match(token, match.start())
        if option and _canonical(option["name"]) is not None:
            return token[: match.start()], token[match.start() :]
    return token, ""


def _option_token(token: str) -> tuple[str, str | None] | None:
    """``(canonical option, inline value or None)`` if ``token`` starts an option."""
    dashed = _DASH_OPTION.fullmatch(token)
    if dashed:
        name = _canonical(dashed["name"])
        if name is None and len(dashed["dash"]) == 1:
            return None  # a lone dash before a word is punctuation ("a cat —the best")
        if name is None:
            raise ParseError(
                "parse.unknown_option", option=dashed["dash"] + dashed["name"], known=KNOWN_OPTIONS
            )
        rest = dashed["rest"]
        if rest[:1] in ("=", "＝"):
            rest = rest[1:]
        return name, rest or None
    keyed = _KEY_VALUE.fullmatch(token)
    if keyed and (name := _canonical(keyed["name"])) is not None:
        return name, keyed["value"] or None
    return None


def parse_imagine(text: str) -> ParsedImagine:
    """Split ``text`` (the command's argument) into a prompt and options; raise ``ParseError``."""
    return _collect(text).result()


def parse_settings(text: str) -> Options:
    """The options of ``/settings --steps 20 --ar 16:9``: no prompt and no seed allowed."""
    parsed = _collect(text).result(need_prompt=False)
    if parsed.prompt:
        raise ParseError("parse.settings_prompt", text=parsed.prompt)
    if parsed.options.seed is not None:
        raise ParseError("parse.settings_seed")
    if parsed.options.is_empty:
        raise ParseError("parse.settings_usage")
    return parsed.options


def _collect(text: str) -> _Collector:
    tokens = text.split()
    collector = _Collector()
    index = 0
    while index < len(tokens):
        word, glued = _split_glued(tokens[index])
        if glued:
            collector.words.append(word)
            tokens[index] = glued
        token = tokens[index]
        index += 1
        option = _option_token(token)
        if option is None:
            bare = _BARE_SIZE.fullmatch(_norm(token))
            if bare and "size" not in collector.values and "ar" not in collector.values:
                collector.add("size", token)
            else:
                collector.words.append(token)
            continue
        name, value = option
        if name in FLAGS:
            if value is not None:
                raise _bad(name, value)
            collector.add(name, "")
            continue
        if value is None:
            if index >= len(tokens):
                raise ParseError("parse.missing_value", option=f"--{name}", example=EXAMPLES[name])
            value = tokens[index]
            index += 1
        collector.add(name, value)
    return collector


def format_options(parsed: ParsedImagine) -> str:
    """The options of ``parsed`` in canonical ``--name value`` form (the inverse of parsing)."""
    options = parsed.options
    parts: list[str] = []
    if options.seed is not None:
        parts.append(f"--seed {options.seed}")
    if options.steps is not None:
        parts.append(f"--steps {options.steps}")
    if options.aspect is not None:
        parts.append(f"--ar {options.aspect}")
    if options.width is not None and options.height is not None:
        parts.append(f"--size {options.width}x{options.height}")
    if options.guidance is not None:
        parts.append(f"--guidance {options.guidance!r}")
    if options.spoiler:
        parts.append("--spoiler")
    return " ".join(parts)


def to_request(
    parsed: ParsedImagine,
    requester: Requester,
    reply_to: ReplyTarget,
    parent_job_id: str | None = None,
    idempotency_key: str | None = None,
) -> ImagineRequest:
    """Build the backend request from a parsed command and where it came from."""
    return ImagineRequest(
        parsed.prompt,
        requester,
        reply_to,
        parsed.options,
        parent_job_id=parent_job_id,
        idempotency_key=idempotency_key,
    )
