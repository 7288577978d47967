"""Every user-facing sentence of majicbot, in English and Simplified Chinese.

The sentences are data, one TOML file per language: ``bots/locales/en.toml`` (the reference) and
``bots/locales/zh.toml``, with the same keys and the same ``{placeholders}`` per key. Both are read
once, when this module is first imported; a malformed file fails that import with a message naming
the file and the key.

An entry is a sentence, or a plural table::

    "job.cancelled" = "Cancelled."
    "history.header" = { plural = "count", one = "Your last job:", other = "Last {count} jobs:" }

Plural rule: the table's ``plural`` field names the numeric parameter that picks the form; the
other fields are CLDR cardinal categories, exactly those of the language (``PLURAL_CATEGORIES``):
English ``one`` and ``other``, Chinese ``other`` only. The category is computed from the parameter
*as shown* (floats with 4 significant digits, anything else with ``str``): English is ``one`` for
a 1 shown without decimals ("1 step", "-1 step") and ``other`` for everything else ("0 steps",
"2 steps", "1.0 steps", "1.5 steps"). A missing or non-numeric value selects ``other``.

``translate(key, lang, **params)`` never raises: an unknown key gives a generic sentence, a
missing parameter shows as ``?``, and both are logged.

Echo: parameters that carry what a user typed (``ECHOED_PARAMS``: ``value``, ``option``,
``text``, ``job_id``, …) pass through :func:`echo` here, the one place for every platform and
every sentence: at most ``ECHO_CHARS`` characters plus "…", on one line, without control
characters, mentions (``<@id>`` → ``@id``, ``@everyone`` → ``everyone``) or markup characters
(backticks, ``*``, ``~``, ``|``, brackets, ``<``, ``>``, backslashes). So every sentence stays far
below the platforms' limits (Telegram 4,096, Discord 2,000) whatever was typed.

Keys are grouped by prefix:

    parse.*     command-text errors raised by ``bots.parsing``
    error.*     ``UserError`` / ``EngineError`` keys, declared as constants in ``backend.keys``
    job.*       status-message lines while a job waits and runs
    delivery.*  notes sent with or about a delivered image
    caption.*   the photo caption
    status.*    the /status snapshot
    history.*   /history
    cancel.*    /cancel
    settings.*  /settings (per-user defaults)
    ban.*       /ban and /unban (admins)
    help.*      /start and /help
    cmd.*       command descriptions registered with the platforms
    button.*    inline/message buttons
    cb.*        short answers to button presses
    unit.*      durations (abbreviations, so no plural forms)
    discord.*   Discord-only: localized command/option names, access, delivery notes
"""

from __future__ import annotations

import logging
import re
import string
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from types import MappingProxyType
from typing import Any

log = logging.getLogger("majicbot.i18n")

LANGUAGES = ("en", "zh")
FALLBACK_KEY = "error.generic"
# CLDR cardinal plural categories each language's plural tables list, no more, no fewer.
PLURAL_CATEGORIES: Mapping[str, tuple[str, ...]] = {"en": ("one", "other"), "zh": ("other",)}


@dataclass(frozen=True)
class Plural:
    """A sentence in several forms; the value of the parameter ``param`` picks the form."""

    param: str
    forms: Mapping[str, str]  # CLDR category ("one", "other", …) → template


Message = str | Plural


def _english_category(number: Decimal) -> str:
    """CLDR English: ``one`` for 1 with no visible decimals (i = 1 and v = 0), else ``other``."""
    return "one" if abs(number) == 1 and number.as_tuple().exponent == 0 else "other"


_PLURAL_RULES: Mapping[str, Callable[[Decimal], str]] = {
    "en": _english_category,
    "zh": lambda _: "other",
}


def _shown(value: Any) -> Any:
    # Floats such as retry_after_s=1234.567 or guidance=3.5 read best with 4 significant digits.
    return f"{value:.4g}" if isinstance(value, float) else value


def plural_category(lang: str, value: Any) -> str:
    """The CLDR category of ``value`` as shown in ``lang``; ``other`` when it is not a number."""
    if isinstance(value, bool):
        return "other"
    try:
        number = Decimal(str(_shown(value)).strip())
    except InvalidOperation:
        return "other"
    if not number.is_finite():
        return "other"
    return _PLURAL_RULES.get(lang, _PLURAL_RULES["en"])(number)


# ---- loading ------------------------------------------------------------------------------------


def parse_catalog(text: str, lang: str, origin: str) -> dict[str, Message]:
    """The entries of one locale file; ``ValueError`` naming ``origin`` and the key if malformed."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{origin}: not valid TOML: {exc}") from exc
    catalog = {key: _entry(value, lang, f"{origin}: {key!r}") for key, value in raw.items()}
    if not isinstance(catalog.get(FALLBACK_KEY), str):
        raise ValueError(f"{origin}: {FALLBACK_KEY!r} must be a plain sentence")
    return catalog


def _entry(value: object, lang: str, where: str) -> Message:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a string or a plural table, got {value!r}")
    fields = dict(value)
    param = fields.pop("plural", None)
    if not isinstance(param, str) or not param.isidentifier():
        raise ValueError(f'{where}: a plural table names its numeric parameter: plural = "n"')
    expected = PLURAL_CATEGORIES[lang]
    if set(fields) != set(expected) or not all(isinstance(v, str) for v in fields.values()):
        raise ValueError(f"{where}: a {lang} plural table has exactly {expected}, got {fields!r}")
    return Plural(param, MappingProxyType(fields))


def _load(lang: str) -> Mapping[str, Message]:
    path = resources.files("bots") / "locales" / f"{lang}.toml"
    return MappingProxyType(parse_catalog(path.read_text(encoding="utf-8"), lang, str(path)))


MESSAGES: Mapping[str, Mapping[str, Message]] = MappingProxyType(
    {lang: _load(lang) for lang in LANGUAGES}
)


# ---- queries ------------------------------------------------------------------------------------


def placeholders(template: str) -> set[str]:
    """Names of the ``{fields}`` a template interpolates."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def message_params(message: Message) -> set[str]:
    """The parameters a message uses: its placeholders in every form, plus the plural parameter."""
    if isinstance(message, str):
        return placeholders(message)
    return {message.param}.union(*(placeholders(form) for form in message.forms.values()))


def pick_language(code: str | None, default: str) -> str:
    """Map a platform language tag ("zh-hans", "zh-CN", "en-US", None) to "en" or "zh"."""
    fallback = default if default in LANGUAGES else "en"
    if not code:
        return fallback
    primary = code.strip().lower().replace("_", "-").split("-")[0]
    return primary if primary in LANGUAGES else fallback


def has_key(key: str) -> bool:
    """Whether ``key`` is translated (in English, the reference language)."""
    return key in MESSAGES["en"]


# ---- echoing what users typed -------------------------------------------------------------------

# Parameters whose values come from the user's own text (the rest come from the bot or config).
ECHOED_PARAMS = frozenset({"value", "option", "text", "job_id", "first", "second", "user_id"})
ECHO_CHARS = 40
_MENTION = re.compile(r"<(@[!&]?|#)(\d+)>|<a?(:\w+:)\d+>|</([^:>\s]+):\d+>")
_BROADCAST = re.compile(r"@+(everyone|here)\b", re.IGNORECASE)
_MARKUP = str.maketrans("", "", "`*~|[]<>\\")


def _unmention(match: re.Match[str]) -> str:
    if match[2]:
        return ("#" if match[1] == "#" else "@") + match[2]
    return match[3] or f"/{match[4]}"


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """What a user typed, safe to show: one line, no mentions or markup, ``limit`` chars + "…"."""
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in str(value))
    text = _BROADCAST.sub(r"\1", _MENTION.sub(_unmention, " ".join(text.split())))
    text = text.translate(_MARKUP)
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


# ---- translating --------------------------------------------------------------------------------


class _Params(dict[str, Any]):
    """Format mapping that shows ``?`` for a missing parameter instead of raising."""

    def __init__(self, key: str, params: Mapping[str, Any]) -> None:
        shown = {k: _shown(v) for k, v in params.items()}
        super().__init__({k: echo(v) if k in ECHOED_PARAMS else v for k, v in shown.items()})
        self.key = key

    def __missing__(self, name: str) -> str:
        log.warning("translation %r lacks parameter %r", self.key, name)
        return "?"


def _template(message: Message, lang: str, key: str, params: Mapping[str, Any]) -> str:
    """The sentence itself, or the plural form that the value of its parameter selects."""
    if isinstance(message, str):
        return message
    if message.param not in params:
        log.warning("translation %r lacks its plural parameter %r", key, message.param)
        return message.forms["other"]
    category = plural_category(lang, params[message.param])
    return message.forms.get(category) or message.forms["other"]


def translate(key: str, lang: str, **params: Any) -> str:
    """The sentence ``key`` in ``lang`` with ``params`` filled in; never raises."""
    lang = lang if lang in MESSAGES else "en"
    message = MESSAGES[lang].get(key)
    if message is None and key in MESSAGES["en"]:
        lang, message = "en", MESSAGES["en"][key]
    if message is None:
        log.warning("missing translation key %r (lang %s, params %s)", key, lang, sorted(params))
        message = MESSAGES[lang][FALLBACK_KEY]
    try:
        return _template(message, lang, key, params).format_map(_Params(key, params))
    except (ValueError, IndexError, AttributeError, KeyError, TypeError) as exc:
        log.warning("translation %r failed to format: %s", key, exc)
        return _template(MESSAGES[lang][FALLBACK_KEY], lang, FALLBACK_KEY, {})
