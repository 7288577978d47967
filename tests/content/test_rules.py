"""Prompt rules: folding, whole-word matching, obfuscations caught, ordinary words spared."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backend.config import ContentConfig, load_config
from backend.content.rules import DEFAULT_TERMS, PromptRules, RuleMatch, fold
from backend.errors import ConfigError

RULES = PromptRules.of(ContentConfig(blocked_terms=("cunt", "anal", "rapist")))
NUDE = DEFAULT_TERMS.index("nude")

# A blocked prompt and the spellings people use to get it past a filter.
OBFUSCATED = [
    "a nude woman on a beach",
    "a n.u.d.e woman on a beach",  # punctuation inside the word
    "a n u d e woman on a beach",  # spelled out
    "a ｎｕｄｅ woman on a beach",  # full-width letters
    "a nudе woman on a beach",  # Cyrillic е
    "a NÜDE woman on a beach",  # accent, capitals
    "a nud3 woman on a beach",  # leetspeak
    "a nu\u200bde woman on a beach",  # zero-width space
    "a n-u_d*e woman on a beach",
    "A NUDES collection",  # plural
]


@pytest.mark.parametrize("prompt", OBFUSCATED)
def test_obfuscated_spellings_of_a_blocked_term_are_refused(prompt: str) -> None:
    assert RULES.match(prompt) == RuleMatch("term", NUDE)


@pytest.mark.parametrize(
    "prompt",
    [
        "Scunthorpe town hall at dusk",
        "a bunch of grapes on a vine",
        "my therapist's office, watercolour",
        "data analysis dashboard",
        "a sextant on an old map of Essex",
        "a canal in Venice",
        "a red fox in the snow, 4k, 1990s film",
        "a nudibranch under the sea",
        "Sussex countryside",
    ],
)
def test_ordinary_words_containing_a_term_are_not_refused(prompt: str) -> None:
    assert RULES.match(prompt) is None


def test_chinese_terms_match_inside_a_sentence() -> None:
    assert RULES.match("画一个裸体的人") == RuleMatch("term", DEFAULT_TERMS.index("裸体"))
    assert RULES.match("画一个裸 体的人") is not None  # spaced out
    assert RULES.match("画一只可爱的猫") is None


def test_leetspeak_1_is_read_as_i_and_as_l() -> None:
    assert RULES.match("p0rn") == RuleMatch("term", DEFAULT_TERMS.index("porn"))
    assert RULES.match("1oli") == RuleMatch("term", DEFAULT_TERMS.index("loli"))
    assert RULES.match("$ex") == RuleMatch("term", DEFAULT_TERMS.index("sex"))


def test_fold_gives_lower_case_words_and_single_spaces() -> None:
    assert fold("  Ｈéllo,   W.O.R.L.D  n u d e ") == "hello world nude"


def test_admin_terms_extend_or_replace_the_default_list() -> None:
    extended = PromptRules.of(ContentConfig(blocked_terms=("clown",)))
    assert extended.match("a sad clown") == RuleMatch("term", len(DEFAULT_TERMS))
    assert extended.match("nude") is not None
    replaced = PromptRules.of(ContentConfig(use_default_terms=False, blocked_terms=("clown",)))
    assert replaced.match("nude") is None
    assert replaced.match("c l o w n s") == RuleMatch("term", 0)
    assert len(PromptRules.of(ContentConfig(use_default_terms=False))) == 0


def test_patterns_are_searched_in_the_folded_prompt() -> None:
    rules = PromptRules.of(
        ContentConfig(use_default_terms=False, blocked_patterns=(r"\bsecret (plan|base)\b",))
    )
    assert rules.match("the SECRET  B.A.S.E on the moon") == RuleMatch("pattern", 0)
    assert rules.match("a secretary") is None


def _config_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"[content]\n{body}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'blocked_patterns = ["(unclosed"]',
            "content.blocked_patterns[0] = '(unclosed': not a valid regular expression",
        ),
        ('blocked_patterns = ["x*"]', "matches an empty prompt"),
        ('blocked_terms = ["ok", "!!!"]', "content.blocked_terms[1] = '!!!': has no letters"),
        ('default_policy = "maybe"', "content.default_policy = 'maybe': must be one of"),
        ("threshold = 1.5", "content.threshold = 1.5: must be between 0 and 1"),
        ('classifier_device = "tpu"', "content.classifier_device = 'tpu'"),
        ("flagged_labels = []", "content.flagged_labels: name at least one label"),
    ],
)
def test_bad_content_config_is_refused_with_the_key(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"^" + _escape_start(message)):
        load_config(_config_file(tmp_path, body), env={})


def _escape_start(message: str) -> str:
    import re

    return ".*" + re.escape(message) if not message.startswith("content.") else re.escape(message)


def test_good_content_config_loads(tmp_path: Path) -> None:
    config = load_config(
        _config_file(
            tmp_path,
            'blocked_terms = ["clown"]\nblocked_patterns = ["a+b"]\nunchecked = "policy"',
        ),
        env={},
    )
    assert config.content == dataclasses.replace(
        ContentConfig(), blocked_terms=("clown",), blocked_patterns=("a+b",), unchecked="policy"
    )


def test_spoiler_is_a_flag_without_a_value() -> None:
    from backend.domain import Options
    from bots.parsing import ParsedImagine, ParseError, format_options, parse_imagine

    assert parse_imagine("a fox --spoiler --seed 3") == ParsedImagine(
        "a fox", Options(seed=3, spoiler=True)
    )
    assert parse_imagine("a fox ——spoiler").options.spoiler is True
    assert parse_imagine("a fox").options.spoiler is None
    assert format_options(parse_imagine("a fox --spoiler --seed 3")) == "--seed 3 --spoiler"
    with pytest.raises(ParseError) as refused:
        parse_imagine("a fox --spoiler=yes")
    assert (refused.value.key, refused.value.params["option"]) == ("parse.bad_value", "--spoiler")
