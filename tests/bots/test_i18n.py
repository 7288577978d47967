"""``bots.i18n``: every key the code uses exists in both languages and formats with its params."""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path
from typing import Any

import pytest

import backend.validation
import bots.parsing
from backend import errors
from bots.i18n import LANGUAGES, MESSAGES, pick_language, placeholders, translate

ROOT = Path(__file__).resolve().parents[2]


def _subclasses(cls: type[Any]) -> list[type[Any]]:
    found: list[type[Any]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _backend_documented_keys() -> dict[str, set[str]]:
    """Keys and params listed in backend/validation.py's docstring (``key`` — ``param``, …)."""
    doc = inspect.getdoc(backend.validation) or ""
    keys: dict[str, set[str]] = {}
    for block in re.split(r"\n- ", doc):
        match = re.match(r"``(error\.[a-z_]+)``(.*)", block, re.DOTALL)
        if not match:
            continue
        rest = match[2].split("—", 1)[1] if "—" in match[2] else ""
        keys[match[1]] = set(re.findall(r"``([a-z_]+)``", rest))
    return keys


def _parse_keys() -> dict[str, set[str]]:
    doc = inspect.getdoc(bots.parsing) or ""
    return {
        key: set(re.findall(r"[a-z_]+", params.split("(")[0])) - {"no", "params"}
        for key, params in re.findall(r"^\s*(parse\.[a-z_]+)\s+(.*?)\s{2,}", doc, re.M)
    }


def _keys_used_in_source() -> set[str]:
    """Literal keys passed to translate()/raised in bots/ (f-strings are checked elsewhere)."""
    pattern = re.compile(
        r"""["']((?:job|cb|button|cmd|status|history|cancel|help|caption|"""
        r"""parse|error|unit|settings|ban)\.[a-z_.]+)["']"""
    )
    used: set[str] = set()
    for path in (ROOT / "bots").rglob("*.py"):
        if path.name != "i18n.py":
            used |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return used


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    assert set(MESSAGES["en"]) == set(MESSAGES["zh"])
    for key, english in MESSAGES["en"].items():
        assert placeholders(MESSAGES["zh"][key]) == placeholders(english), key


def test_every_backend_error_key_is_translated_with_its_documented_params() -> None:
    documented = _backend_documented_keys()
    assert len(documented) >= 20  # the docstring format changed if this fails
    classes: list[type[Any]] = [errors.UserError, errors.EngineError]
    classes += _subclasses(errors.UserError) + _subclasses(errors.EngineError)
    for cls in classes:
        documented.setdefault(cls.key, set())
    for key, params in documented.items():
        for lang in LANGUAGES:
            assert key in MESSAGES[lang], (key, lang)
            assert placeholders(MESSAGES[lang][key]) <= params, (key, lang)


def test_every_parse_error_key_is_translated_with_its_params() -> None:
    documented = _parse_keys()
    assert set(documented) == {
        "parse.usage",
        "parse.unknown_option",
        "parse.missing_value",
        "parse.bad_value",
        "parse.duplicate",
        "parse.conflict",
        "parse.settings_usage",
        "parse.settings_prompt",
        "parse.settings_seed",
    }
    for key, params in documented.items():
        for lang in LANGUAGES:
            assert placeholders(MESSAGES[lang][key]) <= params, (key, lang)


def test_every_key_used_by_the_adapters_exists() -> None:
    used = _keys_used_in_source()
    assert "job.queued" in used
    missing = sorted(k for k in used if k not in MESSAGES["en"] and not k.endswith("."))
    assert missing == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_sentence_formats_with_its_params(lang: str) -> None:
    for key, template in MESSAGES[lang].items():
        params = {name: f"<{name}>" for name in placeholders(template)}
        text = translate(key, lang, **params)
        assert "{" not in text.replace("{{", ""), key
        assert all(value in text for value in params.values()), key


def test_examples() -> None:
    assert translate("job.queued", "en", position=3, eta="40 s") == "Queued, position 3, about 40 s"
    assert translate("job.warming", "zh", percent=63) == "模型预热中：63 %"


def test_missing_key_falls_back_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="majicbot.i18n"):
        text = translate("no.such.key", "zh", x=1)
    assert text == MESSAGES["zh"]["error.generic"]
    assert "no.such.key" in caplog.text


def test_missing_param_shows_a_question_mark_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="majicbot.i18n"):
        text = translate("job.queued", "en", position=2)
    assert text == "Queued, position 2, about ?"
    assert "eta" in caplog.text


def test_unknown_language_is_english() -> None:
    assert translate("job.cancelled", "fr") == "Cancelled."


@pytest.mark.parametrize(
    ("code", "default", "expected"),
    [
        ("zh", "en", "zh"),
        ("zh-hans", "en", "zh"),
        ("zh-CN", "en", "zh"),
        ("zh_TW", "en", "zh"),
        ("en-US", "zh", "en"),
        ("en", "zh", "en"),
        ("de", "zh", "zh"),
        (None, "zh", "zh"),
        ("", "en", "en"),
        ("fr", "xx", "en"),
    ],
)
def test_pick_language(code: str | None, default: str, expected: str) -> None:
    assert pick_language(code, default) == expected
