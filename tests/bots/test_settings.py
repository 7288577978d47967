"""``bots.parsing.parse_settings`` and ``bots.render.render_settings``."""

from __future__ import annotations

import pytest

from backend.domain import Options, UserSettings
from bots.parsing import ParseError, parse_settings
from bots.render import render_settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--steps 20", Options(steps=20)),
        ("——steps ２０ —ar 16：9", Options(steps=20, aspect="16:9")),
        ("--size 1024x768 guidance=4", Options(width=1024, height=768, guidance=4.0)),
        ("--size 768x1024", Options(width=768, height=1024)),
    ],
)
def test_parse_settings_reads_the_imagine_option_forms(text: str, expected: Options) -> None:
    assert parse_settings(text) == expected


@pytest.mark.parametrize(
    ("text", "key", "params"),
    [
        ("", "parse.settings_usage", {}),
        ("a cat --steps 20", "parse.settings_prompt", {"text": "a cat"}),
        ("reset --steps 20", "parse.settings_prompt", {"text": "reset"}),
        ("768x1024", "parse.settings_prompt", {"text": "768x1024"}),
        (
            "--steps ²",
            "parse.bad_value",
            {"option": "--steps", "value": "²", "example": "--steps 28"},
        ),
        ("--steps 20 --seed 1", "parse.settings_seed", {}),
        ("--ar 1:1 --size 512x512", "parse.conflict", {"first": "--ar", "second": "--size"}),
    ],
)
def test_parse_settings_refuses_prompts_seeds_and_malformed_options(
    text: str, key: str, params: dict[str, object]
) -> None:
    with pytest.raises(ParseError) as refused:
        parse_settings(text)
    assert (refused.value.key, dict(refused.value.params)) == (key, params)


def test_render_settings_marks_own_and_server_values() -> None:
    mine = UserSettings(Options(steps=20, aspect="16:9"), 20, 1360, 768, 3.5)
    server = UserSettings(Options(width=512, height=768), 28, 512, 768, 3.5)
    assert render_settings(mine, "zh") == (
        "你的 /imagine 默认设置：\n"
        "步数：20（你的设置）\n"
        "尺寸：16:9，1360×768（你的设置）\n"
        "引导系数：3.5（服务器默认）"
    )
    assert render_settings(server, "en") == (
        "Your defaults for /imagine:\n"
        "Steps: 28 (server default)\n"
        "Size: 512×768 (yours)\n"
        "Guidance: 3.5 (server default)"
    )
