"""Parse the text of an ``/imagine`` command into a prompt and its options.

One grammar for Telegram, Discord (the ``prompt`` option) and the CLI; the README's table
"Command text" states the same rules and ``tests/bots/test_parsing.py`` checks each row.

What is an option (a whitespace-separated token; names are case-insensitive):

    --seed 42  --seed=42  --seed42  seed=42     two ASCII hyphens, then a name
    ——seed 42  －－seed 42  ––seed 42            two long dashes (Chinese / smart punctuation)
    —seed 42  –seed 42                          one long dash: only before a *known* name
                                                ("a cat —the best" stays prompt text)

``--`` followed by any letter (``--é``, ``--种子``), two long dashes followed by a Latin letter,
and three or more dashes of any kind followed by a letter (``---seed``) are options too: an
unknown name is an error that lists the known ones, never silent prompt text. A token that has
no letter right after its dashes (``--``, ``—``, ``-->``, ``-5``) is prompt text.

Names: ``seed``, ``steps`` (``step``), ``ar`` (``aspect``), ``size``, ``guidance`` (``cfg``).
A value is the rest of the token after ``=``/``＝`` (or glued: ``--seed42``), else the next
token; a next token that is itself an option means the value is missing. Values use ASCII or
full-width characters only (``４２``, ``16：9``, ``１０２４ｘ７６８``); other digits (``²``,
``٣``, ``①``) are refused:

    seed      0–12 digits (range checked by the backend)      --seed 42
    steps     digits, not 0                                    --steps 28
    ar        W:H or W/H, 1–4 digits a side, not 0            --ar 16:9
    size      WxH (x, X, ×, *), 1–5 digits a side, not 0      --size 1024x768
    guidance  digits with an optional . or , fraction         --guidance 3.5

The prompt is every other token, joined by single spaces. Text that merely looks like a value
(``1024x768``, ``16:9``) stays prompt text. Cleaning, then the one check:

- ANSI escape sequences are removed whole (``\\x1b[31m``), then every control character (NUL
  included) and every invisible format character except ZWJ/ZWNJ (emoji and Indic scripts need
  them): zero-width space, BOM, word joiner, bidi overrides.
- What is left must contain a letter, a digit or a symbol such as an emoji; an empty,
  whitespace-, control-, zero-width- or punctuation-only prompt is ``parse.usage``.

Bounds (steps ≤ max, allowed ratios, prompt length…) are the backend's business.

Errors are ``ParseError`` (a ``UserError``) with one of these keys and params:

    parse.usage           (no params)                 no prompt (after cleaning)
    parse.unknown_option  option, known               ``--foo``, ``---seed``, ``--种子``
    parse.missing_value   option, example             ``--seed`` at the very end
    parse.bad_value       option, value, example      ``--seed abc``, ``--steps ²``
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
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from backend.domain import ImagineRequest, Options, ReplyTarget, Requester
from backend.errors import UserError

__all__ = [
    "EXAMPLES",
    "KNOWN_OPTIONS",
    "ParseError",
    "ParsedImagine",
    "clean_prompt",
    "format_options",
    "merge_options",
    "parse_imagine",
    "parse_settings",
    "parse_value",
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
}
KNOWN_OPTIONS = ", ".join(f"--{name}" for name in EXAMPLES)

# Long dashes that Chinese and smart-punctuation input methods produce for "-".
_LONG_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d\u2e3a\u2e3b"
_PREFIX = re.compile(rf"[-{_LONG_DASHES}]+")
_ANY_NAME = re.compile(r"[^\W\d_][^\W\d]*")  # letters of any script, then letters or "_"
_LATIN_NAME = re.compile(r"[A-Za-zＡ-Ｚａ-ｚ][A-Za-zＡ-Ｚａ-ｚ_]*")
_KEY_VALUE = re.compile(r"(?P<name>[A-Za-zＡ-Ｚａ-ｚ]+)[=＝](?P<value>.*)", re.DOTALL)
# Full-width ASCII (U+FF01..U+FF5E) and the ideographic space map to ASCII; nothing else does.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_INT = re.compile(r"[0-9]{1,12}")
_DECIMAL = re.compile(r"[0-9]+(?:[.,][0-9]+)?|[.,][0-9]+")
_RATIO = re.compile(r"([0-9]{1,4})[:/]([0-9]{1,4})")
_SIZE = re.compile(r"([0-9]{1,5})[xX×*]([0-9]{1,5})")
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[@-_]"  # other two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the 8-bit CSI
)
_KEPT_FORMAT = frozenset("\u200c\u200d")  # ZWNJ and ZWJ: emoji sequences, Indic scripts


def _ascii(text: str) -> str:
    """Full-width forms as ASCII ("４２" -> "42", "１６：９" -> "16:9"); nothing else changes."""
    return text.translate(_FULL_WIDTH).strip()


def _canonical(name: str) -> str | None:
    return _ALIASES.get(_ascii(name).lower())


def _bad(option: str, value: str) -> ParseError:
    return ParseError(
        "parse.bad_value", option=f"--{option}", value=value, example=EXAMPLES[option]
    )


def _parse_int(option: str, raw: str) -> int:
    value = _ascii(raw)
    if not _INT.fullmatch(value):
        raise _bad(option, raw)
    return int(value)


def _parse_steps(option: str, raw: str) -> int:
    steps = _parse_int(option, raw)
    if steps == 0:
        raise _bad(option, raw)
    return steps


def _parse_guidance(option: str, raw: str) -> float:
    value = _ascii(raw)
    if not _DECIMAL.fullmatch(value):
        raise _bad(option, raw)
    guidance = float(value.replace(",", "."))
    if not math.isfinite(guidance):
        raise _bad(option, raw)
    return guidance


def _parse_ratio(option: str, raw: str) -> str:
    match = _RATIO.fullmatch(_ascii(raw))
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise _bad(option, raw)
    return f"{int(match[1])}:{int(match[2])}"


def _parse_size(option: str, raw: str) -> tuple[int, int]:
    match = _SIZE.fullmatch(_ascii(raw))
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise _bad(option, raw)
    return int(match[1]), int(match[2])


_VALUE_PARSERS: dict[str, Callable[[str, str], object]] = {
    "seed": _parse_int,
    "steps": _parse_steps,
    "guidance": _parse_guidance,
    "ar": _parse_ratio,
    "size": _parse_size,
}


def parse_value(option: str, raw: str) -> object:
    """One option's value by the rules above (``option``: a canonical name); ``ParseError``."""
    return _VALUE_PARSERS[option](option, raw)


# ---- the prompt ---------------------------------------------------------------------------------


def _visible(char: str) -> bool:
    category = unicodedata.category(char)
    if category == "Cf":
        return char in _KEPT_FORMAT
    return category not in ("Cc", "Cs")


def _drawable(char: str) -> bool:
    """A letter, a digit or a symbol such as an emoji (punctuation alone draws nothing)."""
    category = unicodedata.category(char)
    return category[0] in "LN" or category == "So"


def clean_prompt(text: str) -> str:
    """``text`` without ANSI escapes, control and invisible characters, whitespace collapsed.

    Raises ``ParseError("parse.usage")`` when nothing drawable is left (no letter, digit or
    symbol: empty, whitespace, control, zero-width or punctuation only).
    """
    text = _ANSI.sub(" ", text)
    text = "".join(char if _visible(char) else " " for char in text)
    prompt = " ".join(text.split())
    if not any(map(_drawable, prompt)):
        raise ParseError("parse.usage")
    return prompt


# ---- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flag:
    """A token that is an option: as typed, its canonical name (None: unknown), inline value."""

    written: str
    name: str | None
    inline: str | None


def _flag(token: str) -> _Flag | None:
    """The option ``token`` starts, or None when it is prompt text (see the module docstring)."""
    prefix = _PREFIX.match(token)
    if prefix is None:
        return _key_value(token)
    dashes = prefix.group()
    body = token[len(dashes) :]
    ascii_only = set(dashes) == {"-"}
    name_match = (_ANY_NAME if ascii_only or len(dashes) > 2 else _LATIN_NAME).match(body)
    if name_match is None or (ascii_only and len(dashes) == 1):
        return None
    name = name_match.group()
    canonical = _canonical(name) if len(dashes) <= 2 else None
    if canonical is None and len(dashes) == 1:
        return None  # one long dash before a word is punctuation ("a cat —the best")
    rest = body[len(name) :]
    if rest[:1] in ("=", "＝"):
        rest = rest[1:]
    return _Flag(dashes + name, canonical, rest or None)


def _key_value(token: str) -> _Flag | None:
    keyed = _KEY_VALUE.fullmatch(token)
    if keyed is None or (name := _canonical(keyed["name"])) is None:
        return None  # "e=mc2" is prompt text
    return _Flag(keyed["name"], name, keyed["value"] or None)


def _split_glued(token: str) -> tuple[str, str]:
    """Split "猫——seed" into ("猫", "——seed") when a known option is glued to a word."""
    for match in _PREFIX.finditer(token):
        if match.start() == 0:
            continue
        flag = _flag(token[match.start() :])
        if flag is not None and flag.name is not None and len(match.group()) <= 2:
            return token[: match.start()], token[match.start() :]
    return token, ""


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
        self.values[option] = parse_value(option, raw)

    def options(self) -> Options:
        size = self.values.get("size")
        width, height = size if isinstance(size, tuple) else (None, None)
        seed, steps = self.values.get("seed"), self.values.get("steps")
        aspect, guidance = self.values.get("ar"), self.values.get("guidance")
        return Options(
            seed=seed if isinstance(seed, int) else None,
            steps=steps if isinstance(steps, int) else None,
            width=width,
            height=height,
            aspect=aspect if isinstance(aspect, str) else None,
            guidance=guidance if isinstance(guidance, float) else None,
        )


def _collect(text: str) -> _Collector:
    tokens = text.split()
    collector = _Collector()
    index = 0
    while index < len(tokens):
        word, glued = _split_glued(tokens[index])
        if glued:
            collector.words.append(word)
            tokens[index] = glued
        flag = _flag(tokens[index])
        index += 1
        if flag is None:
            collector.words.append(tokens[index - 1])
            continue
        if flag.name is None:
            raise ParseError("parse.unknown_option", option=flag.written, known=KNOWN_OPTIONS)
        value = flag.inline
        if value is None:
            if index >= len(tokens) or _flag(tokens[index]) is not None:
                raise ParseError(
                    "parse.missing_value", option=f"--{flag.name}", example=EXAMPLES[flag.name]
                )
            value = tokens[index]
            index += 1
        collector.add(flag.name, value)
    return collector


# ---- entry points -------------------------------------------------------------------------------


def parse_imagine(text: str) -> ParsedImagine:
    """Split ``text`` (the command's argument) into a prompt and options; raise ``ParseError``."""
    collector = _collect(text)
    return ParsedImagine(clean_prompt(" ".join(collector.words)), collector.options())


def parse_settings(text: str) -> Options:
    """The options of ``/settings --steps 20 --ar 16:9``: no prompt and no seed allowed."""
    collector = _collect(text)
    words = " ".join(" ".join(collector.words).split())
    if words:
        raise ParseError("parse.settings_prompt", text=words)
    options = collector.options()
    if options.seed is not None:
        raise ParseError("parse.settings_seed")
    if options.is_empty:
        raise ParseError("parse.settings_usage")
    return options


def merge_options(parsed: ParsedImagine, **options: Any) -> ParsedImagine:
    """Typed options (Discord's, the CLI's) on top of the prompt's flags; the same option
    given both ways is ``parse.duplicate``, ``aspect`` with a ``--size`` ``parse.conflict``."""
    values = {name: value for name, value in options.items() if value is not None}
    for name in values:
        if getattr(parsed.options, name) is not None:
            raise ParseError("parse.duplicate", option=f"--{'ar' if name == 'aspect' else name}")
    if "aspect" in values and parsed.options.width is not None:
        raise ParseError("parse.conflict", first="--size", second="--ar")
    if "width" in values and parsed.options.aspect is not None:
        raise ParseError("parse.conflict", first="--ar", second="--size")
    return replace(parsed, options=replace(parsed.options, **values))


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
        # Positional, never "1e-05": the shortest repr's digits, so it parses back exactly.
        parts.append(f"--guidance {Decimal(repr(options.guidance)):f}")
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
