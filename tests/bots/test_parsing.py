"""``bots.parsing``: examples of every accepted form and error, then properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from backend.domain import ImagineRequest, Options, Platform, ReplyTarget, Requester
from backend.errors import UserError
from bots.parsing import ParsedImagine, ParseError, format_options, parse_imagine, to_request


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a red fox", ParsedImagine("a red fox")),
        ("  a\n red\tfox  ", ParsedImagine("a red fox")),
        ("a cat --seed 42 --steps 20", ParsedImagine("a cat", Options(seed=42, steps=20))),
        ("--seed=7 a cat --steps=3", ParsedImagine("a cat", Options(seed=7, steps=3))),
        ("seed=5 a cat steps=9", ParsedImagine("a cat", Options(seed=5, steps=9))),
        ("a cat --ar 16:9", ParsedImagine("a cat", Options(aspect="16:9"))),
        ("a cat --AR 16：9", ParsedImagine("a cat", Options(aspect="16:9"))),
        ("a cat --size 1024x768", ParsedImagine("a cat", Options(width=1024, height=768))),
        ("a cat --size 1024×768", ParsedImagine("a cat", Options(width=1024, height=768))),
        ("a cat --size １０２４ｘ７６８", ParsedImagine("a cat", Options(width=1024, height=768))),
        ("a cat --size 512*512", ParsedImagine("a cat", Options(width=512, height=512))),
        ("a cat --guidance 3.5", ParsedImagine("a cat", Options(guidance=3.5))),
        ("a cat --guidance 4", ParsedImagine("a cat", Options(guidance=4.0))),
        ("a cat --cfg 2,5", ParsedImagine("a cat", Options(guidance=2.5))),
        ("一只猫 ——seed 42", ParsedImagine("一只猫", Options(seed=42))),
        ("一只猫——seed ４２ —steps=８", ParsedImagine("一只猫", Options(seed=42, steps=8))),
        ("一只猫 ——ar １６：９ ——size", None),
        ("a cat –seed 3", ParsedImagine("a cat", Options(seed=3))),
        ("a cat －－seed 3", ParsedImagine("a cat", Options(seed=3))),
        ("a cat --seed42", ParsedImagine("a cat", Options(seed=42))),
        ("a cat -—seed 3", ParsedImagine("a cat", Options(seed=3))),
        ("a cat ––seed 3", ParsedImagine("a cat", Options(seed=3))),
        ("a cat --ar=16:9", ParsedImagine("a cat", Options(aspect="16:9"))),
        ("a cat ——ＳＥＥＤ ４２", ParsedImagine("a cat", Options(seed=42))),
        ("a cat --ar 16／9", ParsedImagine("a cat", Options(aspect="16:9"))),
        ("a cat --guidance .5", ParsedImagine("a cat", Options(guidance=0.5))),
        ("a cat --guidance 0.00001", ParsedImagine("a cat", Options(guidance=1e-05))),
        # Things that look like options but are prompt text.
        ("a 4x4 grid of tiles", ParsedImagine("a 4x4 grid of tiles")),
        ("a cat — the best", ParsedImagine("a cat — the best")),
        ("a cat —the best", ParsedImagine("a cat —the best")),
        ("rock--steady -5 degrees", ParsedImagine("rock--steady -5 degrees")),
        ("e=mc2 on a blackboard", ParsedImagine("e=mc2 on a blackboard")),
        ("a cat 1024x768", ParsedImagine("a cat 1024x768")),
        ("a 16:9 poster", ParsedImagine("a 16:9 poster")),
        ("a cat -- the best", ParsedImagine("a cat -- the best")),
        ("a --> b", ParsedImagine("a --> b")),
        ("from 1 --5 degrees", ParsedImagine("from 1 --5 degrees")),
        ("a cat -seed 5", ParsedImagine("a cat -seed 5")),
        ("一只猫 ——可爱的", ParsedImagine("一只猫 ——可爱的")),
        ("一只猫——可爱的", ParsedImagine("一只猫——可爱的")),
        # Cleaning: escapes, controls and invisible characters go; ZWJ stays (emoji).
        ("a \x1b[31mred\x1b[0m fox", ParsedImagine("a red fox")),
        ("a\x00cat", ParsedImagine("a cat")),
        ("a\u200bcat\ufeff \u202eevil", ParsedImagine("a cat evil")),
        ("👩\u200d🚀", ParsedImagine("👩\u200d🚀")),
        ("²", ParsedImagine("²")),
    ],
)
def test_accepted_forms(text: str, expected: ParsedImagine | None) -> None:
    if expected is None:
        with pytest.raises(ParseError):
            parse_imagine(text)
    else:
        assert parse_imagine(text) == expected


@pytest.mark.parametrize(
    ("text", "key", "params"),
    [
        ("", "parse.usage", {}),
        ("   ", "parse.usage", {}),
        ("--seed 4", "parse.usage", {}),
        ("--", "parse.usage", {}),
        ("—", "parse.usage", {}),
        ("——", "parse.usage", {}),
        ("\u200b", "parse.usage", {}),
        ("\x00", "parse.usage", {}),
        ("\x1b[31m", "parse.usage", {}),
        ("... !!! ？", "parse.usage", {}),
        ("\u200d\u200c", "parse.usage", {}),
        ("a cat ---seed 5", "parse.unknown_option", {"option": "---seed"}),
        ("a cat --é 5", "parse.unknown_option", {"option": "--é"}),
        ("a cat --种子 5", "parse.unknown_option", {"option": "--种子"}),
        ("a cat —————seed 5", "parse.unknown_option", {"option": "—————seed"}),
        ("a cat --seedling", "parse.unknown_option", {"option": "--seedling"}),
        ("a cat --seed --steps 4", "parse.missing_value", {"option": "--seed"}),
        ("a cat --steps ²", "parse.bad_value", {"option": "--steps", "value": "²"}),
        ("a cat --seed ٣", "parse.bad_value", {"option": "--seed", "value": "٣"}),
        ("a cat --seed ①", "parse.bad_value", {"option": "--seed", "value": "①"}),
        ("a cat --seed 1e3", "parse.bad_value", {"option": "--seed", "value": "1e3"}),
        ("a cat --guidance 1e3", "parse.bad_value", {"option": "--guidance", "value": "1e3"}),
        ("a cat --guidance -2", "parse.bad_value", {"option": "--guidance", "value": "-2"}),
        ("a cat --guidance inf", "parse.bad_value", {"option": "--guidance", "value": "inf"}),
        ("a cat --seed 4\x00", "parse.bad_value", {"option": "--seed", "value": "4\x00"}),
        ("a cat --seed 1234567890123", "parse.bad_value", {"option": "--seed"}),
        ("a cat --size 0x512", "parse.bad_value", {"option": "--size", "value": "0x512"}),
        ("a cat --foo 1", "parse.unknown_option", {"option": "--foo"}),
        ("a cat ——style raw", "parse.unknown_option", {"option": "——style"}),
        ("a cat --seed", "parse.missing_value", {"option": "--seed", "example": "--seed 42"}),
        ("a cat --seed abc", "parse.bad_value", {"option": "--seed", "value": "abc"}),
        ("a cat --seed -1", "parse.bad_value", {"option": "--seed", "value": "-1"}),
        ("a cat --steps 0", "parse.bad_value", {"option": "--steps", "value": "0"}),
        ("a cat --steps 2.5", "parse.bad_value", {"option": "--steps", "value": "2.5"}),
        ("a cat --ar 16x9", "parse.bad_value", {"option": "--ar", "value": "16x9"}),
        ("a cat --ar 0:1", "parse.bad_value", {"option": "--ar", "value": "0:1"}),
        ("a cat --size big", "parse.bad_value", {"option": "--size", "value": "big"}),
        ("a cat --guidance nan", "parse.bad_value", {"option": "--guidance", "value": "nan"}),
        ("a cat --guidance x", "parse.bad_value", {"option": "--guidance", "value": "x"}),
        ("a cat seed=x", "parse.bad_value", {"option": "--seed", "value": "x"}),
        ("a cat --seed 1 seed=2", "parse.duplicate", {"option": "--seed"}),
        ("a cat --ar 1:1 --size 512x512", "parse.conflict", {"first": "--ar"}),
    ],
)
def test_errors_name_the_option(text: str, key: str, params: dict[str, str]) -> None:
    with pytest.raises(ParseError) as caught:
        parse_imagine(text)
    assert caught.value.key == key
    assert {name: caught.value.params[name] for name in params} == params
    assert isinstance(caught.value, UserError)


def test_to_request_copies_every_option() -> None:
    requester = Requester(Platform.TELEGRAM, "1", chat_id="2")
    target = ReplyTarget("2", "3")
    parsed = parse_imagine("a cat --seed 1 --steps 2 --size 512x256 --guidance 3")
    assert to_request(parsed, requester, target, parent_job_id="p", idempotency_key="k") == (
        ImagineRequest(
            prompt="a cat",
            requester=requester,
            reply_to=target,
            options=Options(seed=1, steps=2, width=512, height=256, guidance=3.0),
            parent_job_id="p",
            idempotency_key="k",
        )
    )


# ---- properties --------------------------------------------------------------------------------

# Prompt words: letters of several scripts and harmless punctuation, no dashes, "=" or digits, so
# that nothing in them can be read as an option.
_WORD = st.text(alphabet=st.sampled_from("abcXYZ猫狗山水éß,.!?'()&"), min_size=1, max_size=8)
_SPACE = st.sampled_from([" ", "  ", "\n", "\t", "\u3000"])
_DASH_STYLES = ["--", "——", "—", "–", "－－"]


@st.composite
def _prompts(draw: st.DrawFn) -> list[str]:
    return draw(st.lists(_WORD, min_size=1, max_size=8))


@st.composite
def _parsed(draw: st.DrawFn) -> ParsedImagine:
    words = draw(_prompts())
    size = draw(st.one_of(st.none(), st.tuples(st.integers(1, 9999), st.integers(1, 9999))))
    aspect = None
    if size is None:
        ratio = st.tuples(st.integers(1, 99), st.integers(1, 99))
        aspect = draw(st.one_of(st.none(), ratio.map(lambda r: f"{r[0]}:{r[1]}")))
    return ParsedImagine(
        " ".join(words),
        Options(
            seed=draw(st.one_of(st.none(), st.integers(0, 2**32 - 1))),
            steps=draw(st.one_of(st.none(), st.integers(1, 200))),
            width=size[0] if size else None,
            height=size[1] if size else None,
            aspect=aspect,
            guidance=draw(st.one_of(st.none(), st.floats(0, 30, allow_nan=False))),
        ),
    )


def _drawable(text: str) -> bool:
    """A prompt needs a letter (punctuation alone is parse.usage, tested above)."""
    return any(char.isalpha() for char in text)


@given(parsed=_parsed(), data=st.data())
def test_rendered_options_parse_back_to_the_same_values(
    parsed: ParsedImagine, data: st.DataObject
) -> None:
    assume(_drawable(parsed.prompt))
    flags = format_options(parsed).split(" --")
    flags = [f if f.startswith("--") else "--" + f for f in flags if f]
    dash = data.draw(st.sampled_from(_DASH_STYLES))
    flags = [dash + f[2:] for f in flags]
    words = parsed.prompt.split(" ")
    for flag in flags:  # scatter the options through the prompt
        words.insert(data.draw(st.integers(0, len(words))), flag)
    assert parse_imagine(" ".join(words)) == parsed


@given(words=_prompts(), spaces=st.lists(_SPACE, min_size=9, max_size=9))
def test_prompt_without_options_comes_back_unchanged(words: list[str], spaces: list[str]) -> None:
    assume(_drawable("".join(words)))
    text = spaces[0] + "".join(w + s for w, s in zip(words, spaces[1:], strict=False))
    assert parse_imagine(text) == ParsedImagine(" ".join(words))


@given(st.text(max_size=60))
def test_arbitrary_text_raises_nothing_but_parse_error(text: str) -> None:
    try:
        parsed = parse_imagine(text)
    except ParseError as exc:
        assert exc.key.startswith("parse.")
    else:
        assert parsed.prompt and parsed.prompt == parsed.prompt.strip()


@given(
    st.lists(
        st.sampled_from(["--seed", "——steps", "seed=", "--ar", "--size", "1024x768", "猫", "１２"])
        | st.text(max_size=5),
        max_size=8,
    )
)
def test_option_soup_raises_nothing_but_parse_error(tokens: list[str]) -> None:
    try:
        parsed = parse_imagine(" ".join(tokens))
    except ParseError as exc:
        assert exc.key.startswith("parse.")
    else:
        assert parsed.prompt
