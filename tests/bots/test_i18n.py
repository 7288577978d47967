"""``bots.i18n``: the locale files agree, every key the code uses exists, plurals pick a form."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

import bots.parsing
from backend import errors, keys
from bots.i18n import (
    LANGUAGES,
    MESSAGES,
    PLURAL_CATEGORIES,
    Plural,
    echo,
    message_params,
    parse_catalog,
    pick_language,
    placeholders,
    plural_category,
    translate,
)

ROOT = Path(__file__).resolve().parents[2]
# A value of the plural parameter that selects each category.
SAMPLE_NUMBER = {"one": 1, "other": 7}


def _subclasses(cls: type[Any]) -> list[type[Any]]:
    found: list[type[Any]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _keys_used_in_source() -> set[str]:
    """Literal keys passed to translate()/raised in bots/ (f-strings are checked elsewhere)."""
    pattern = re.compile(
        r"""["']((?:job|cb|button|cmd|status|history|cancel|help|caption|delivery|"""
        r"""parse|error|unit|settings|ban)\.[a-z_.]+)["']"""
    )
    used: set[str] = set()
    for path in (ROOT / "bots").rglob("*.py"):
        if path.name != "i18n.py":
            used |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return used


def _error_keys_in_source() -> set[str]:
    """Keys raised as literals (``raise X("key", …)``) in backend/ and bots/, and every
    ``"error.*"`` literal in backend/ (failure keys handed to the store)."""
    raised = re.compile(r"""(?:raise|return) [A-Z]\w*\(\s*["']([a-z]+\.[a-z_.]+)["']""")
    error_literal = re.compile(r"""["'](error\.[a-z_]+)["']""")
    found: set[str] = set()
    for path in [*(ROOT / "backend").rglob("*.py"), *(ROOT / "bots").rglob("*.py")]:
        if path.name == "keys.py" and path.parent.name == "backend":
            continue
        text = path.read_text(encoding="utf-8")
        found |= set(raised.findall(text))
        if path.is_relative_to(ROOT / "backend"):
            found |= set(error_literal.findall(text))
    return found


# ---- the locale files ---------------------------------------------------------------------------


def test_both_languages_have_the_same_keys_and_params() -> None:
    assert set(MESSAGES["en"]) == set(MESSAGES["zh"])
    for key, english in MESSAGES["en"].items():
        chinese = MESSAGES["zh"][key]
        assert message_params(chinese) == message_params(english), key
        plural_param = {m.param if isinstance(m, Plural) else None for m in (english, chinese)}
        assert len(plural_param) == 1, (key, plural_param)  # plural in both, on the same param


@pytest.mark.parametrize("lang", LANGUAGES)
def test_plural_tables_list_exactly_the_languages_categories(lang: str) -> None:
    assert PLURAL_CATEGORIES == {"en": ("one", "other"), "zh": ("other",)}
    tables = {k: m for k, m in MESSAGES[lang].items() if isinstance(m, Plural)}
    assert len(tables) >= 8
    for key, table in tables.items():
        assert sorted(table.forms) == sorted(PLURAL_CATEGORIES[lang]), key


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_sentence_formats_with_its_params(lang: str) -> None:
    for key, message in MESSAGES[lang].items():
        forms = message.forms if isinstance(message, Plural) else {"other": message}
        for category, template in forms.items():
            params: dict[str, Any] = {name: f"«{name}»" for name in placeholders(template)}
            if isinstance(message, Plural):
                params[message.param] = SAMPLE_NUMBER[category]
            text = translate(key, lang, **params)
            assert "{" not in text.replace("{{", ""), key
            assert all(str(params[name]) in text for name in placeholders(template)), key


def test_english_sentences_with_a_count_use_plural_forms() -> None:
    """No "1 steps": every en sentence that puts a count before a plural noun is a plural table."""
    plain = {k: m for k, m in MESSAGES["en"].items() if isinstance(m, str)}
    counted_noun = re.compile(r"\{\w+\} (?:jobs|steps|images|characters|pixels)\b")
    assert [k for k, m in plain.items() if counted_noun.search(m)] == []


@pytest.mark.parametrize(
    ("text", "lang", "message"),
    [
        ('"error.generic" = "x"\n"a" = 1', "en", r"x\.toml: 'a': expected a string or a plural"),
        ('"error.generic" = "x"\n"a" = { other = "b" }', "en", "names its numeric parameter"),
        ('"error.generic" = "x"\n"a" = { plural = "n", other = "b" }', "en", "exactly"),
        ('"error.generic" = "x"\n"a" = { plural = "n", one = "", other = "" }', "zh", "exactly"),
        ('"error.generic" = "x"\n"a" = { plural = "n", one = 1, other = "" }', "en", "exactly"),
        ('"a" = "b"', "en", "'error.generic' must be a plain sentence"),
        ('"a" = ', "en", "not valid TOML"),
    ],
)
def test_a_malformed_locale_file_is_refused_naming_file_and_key(
    text: str, lang: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_catalog(text, lang, "x.toml")


# ---- error keys are declared constants ----------------------------------------------------------


def test_every_declared_error_key_is_translated_with_its_declared_params() -> None:
    assert keys.PARAMS[keys.HOURLY_QUOTA] == {"limit", "retry_after_s"}
    for key, params in keys.PARAMS.items():
        for lang in LANGUAGES:
            assert key in MESSAGES[lang], (key, lang)
            assert message_params(MESSAGES[lang][key]) <= params, (key, lang)


def test_every_error_class_default_key_is_a_declared_constant() -> None:
    classes: list[type[Any]] = [errors.UserError, errors.EngineError]
    classes += _subclasses(errors.UserError) + _subclasses(errors.EngineError)
    assert bots.parsing.ParseError in classes
    assert {cls.__name__: cls.key for cls in classes if cls.key not in keys.PARAMS} == {}


def test_every_error_key_raised_as_a_literal_is_declared() -> None:
    found = _error_keys_in_source()
    assert {"error.steps_range", "error.prompt_empty", "parse.bad_value"} <= found
    assert sorted(found - set(keys.PARAMS)) == []


def test_every_key_used_by_the_adapters_exists() -> None:
    used = _keys_used_in_source()
    assert "job.queued" in used
    missing = sorted(k for k in used if k not in MESSAGES["en"] and not k.endswith("."))
    assert missing == []


# ---- translate ----------------------------------------------------------------------------------


def test_examples() -> None:
    assert translate("job.queued", "en", position=3, eta="40 s") == "Queued, position 3, about 40 s"
    assert translate("job.warming", "zh", percent=63) == "模型预热中：63 %"
    assert translate("job.finishing", "en", step=28, total=28) == "Step 28/28 · finishing…"
    assert translate("cancel.already_finishing", "zh", job_id="ab12") == (
        "任务 #ab12 正在收尾，现在无法取消。"
    )


@pytest.mark.parametrize(
    ("steps", "lang", "expected"),
    [
        (0, "en", "Seed 7 · 0 steps · 512×512 · #j1"),
        (1, "en", "Seed 7 · 1 step · 512×512 · #j1"),
        (2, "en", "Seed 7 · 2 steps · 512×512 · #j1"),
        (1, "zh", "种子 7 · 1 步 · 512×512 · #j1"),
        (2, "zh", "种子 7 · 2 步 · 512×512 · #j1"),
    ],
)
def test_the_plural_parameter_picks_the_form(steps: int, lang: str, expected: str) -> None:
    params = {"seed": 7, "width": 512, "height": 512, "job_id": "j1"}
    assert translate("caption.params_no_time", lang, steps=steps, **params) == expected


@pytest.mark.parametrize(
    ("key", "params", "expected"),
    [
        ("history.header", {"count": 1}, "Your last job:"),
        ("history.header", {"count": 3}, "Your last 3 jobs:"),
        ("job.queued_far", {"ahead": 1}, "Queued, about 1 job ahead of you"),
        ("job.queued_far", {"ahead": 190}, "Queued, about 190 jobs ahead of you"),
        ("error.queue_full", {"limit": 1}, "The queue is full (1 job). Please try again later."),
        (
            "error.hourly_quota",
            {"limit": 1, "retry_after_s": 1234.567},
            "You have used your one image for this hour. Try again in 1235 s.",
        ),
    ],
)
def test_english_plural_sentences(key: str, params: dict[str, Any], expected: str) -> None:
    assert translate(key, "en", **params) == expected


@pytest.mark.parametrize(
    ("value", "category"),
    [
        (1, "one"),
        (-1, "one"),
        ("1", "one"),
        (1.0, "one"),  # shown as "1"
        (0, "other"),
        (2, "other"),
        (11, "other"),
        (21, "other"),
        (1.5, "other"),
        ("1.0", "other"),  # visible decimals: "1.0 steps"
        ("12.3", "other"),
        ("many", "other"),
        (None, "other"),
        (True, "other"),
        (float("nan"), "other"),
    ],
)
def test_english_plural_category(value: object, category: str) -> None:
    assert plural_category("en", value) == category


def test_chinese_has_one_plural_category() -> None:
    assert {plural_category("zh", n) for n in (0, 1, 2, 1.5)} == {"other"}


def test_missing_plural_param_uses_other_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="majicbot.i18n"):
        text = translate("history.header", "en")
    assert text == "Your last ? jobs:"
    assert "'count'" in caplog.text


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


# ---- echo: what users typed, bounded and inert -------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("16:9", "16:9"),
        ("9" * 4078, "9" * 40 + "…"),
        ("<@123> <@!45> <@&6> <#7>", "@123 @45 @6 #7"),
        ("@everyone @here", "everyone here"),
        ("</imagine:1> <:cat:2> <a:dog:3>", "/imagine :cat: :dog:"),
        ("**bold** `code` ~~x~~ ||spoiler|| [a](http://b)", "bold code x spoiler a(http://b)"),
        ("a\x00b\x1b[31m\nc\u200bd", "a b 31m c d"),
    ],
)
def test_echo_shortens_and_neutralises(typed: str, shown: str) -> None:
    assert echo(typed) == shown


def test_user_values_are_echoed_in_every_sentence_and_others_are_not() -> None:
    long = "--" + "x" * 4083
    sentence = translate("parse.unknown_option", "en", option=long, known="--seed, --steps")
    shown = "--" + "x" * 38 + "…"
    assert sentence == f"I don't know the option {shown}. Valid options: --seed, --steps."
    params = {"status": "done", "seed": 1, "age": "1 s", "prompt": "<@1> a cat"}
    line = translate("history.line", "en", job_id="abc", **params)
    assert line == "#abc · done · seed 1 · 1 s ago · <@1> a cat"  # a prompt is not a user value
