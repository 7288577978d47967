"""Every request and access error, with its key and params; defaults and size resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.access import check_access
from backend.config import Config, LimitsConfig
from backend.domain import (
    GenerationParams,
    ImagineRequest,
    Options,
    Platform,
    ReplyTarget,
    Requester,
)
from backend.errors import AccessDenied, InvalidRequest
from backend.validation import resolve_params
from tests.backend.helpers import make_config, with_section

LIMITS = LimitsConfig()


def req(prompt: str = "a cat", **kw: Any) -> ImagineRequest:
    who = Requester(Platform.TELEGRAM, "u1")
    return ImagineRequest(prompt, who, ReplyTarget("c"), Options(**kw))


def test_defaults_and_random_seed_is_recorded() -> None:
    params = resolve_params(req("  a cat  "), LIMITS, new_seed=lambda: 1234)
    assert params == GenerationParams("a cat", 1234, 28, 1024, 1024, 3.5)


@pytest.mark.parametrize(
    ("request_kw", "key", "params"),
    [
        ({"prompt": "   "}, "error.prompt_empty", {}),
        ({"prompt": "x" * 1001}, "error.prompt_too_long", {"length": 1001, "max": 1000}),
        ({"steps": 0}, "error.steps_range", {"value": 0, "min": 1, "max": 50}),
        ({"steps": 51}, "error.steps_range", {"value": 51, "min": 1, "max": 50}),
        ({"seed": -1}, "error.seed_range", {"value": -1, "min": 0, "max": 2**32 - 1}),
        ({"seed": 2**32}, "error.seed_range", {"value": 2**32, "min": 0, "max": 2**32 - 1}),
        ({"guidance": 0.5}, "error.guidance_range", {"value": 0.5, "min": 1.0, "max": 10.0}),
        ({"guidance": float("inf")}, "error.guidance_range",
         {"value": float("inf"), "min": 1.0, "max": 10.0}),
        ({"aspect": "5:4"}, "error.aspect_unknown",
         {"value": "5:4", "allowed": "1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3"}),
        ({"width": 1000, "height": 1024}, "error.size_invalid",
         {"width": 1000, "height": 1024, "min_side": 256, "max_side": 2048, "multiple": 16}),
        ({"width": 128, "height": 1024}, "error.size_invalid",
         {"width": 128, "height": 1024, "min_side": 256, "max_side": 2048, "multiple": 16}),
        ({"width": 1024}, "error.size_invalid",
         {"width": 1024, "height": None, "min_side": 256, "max_side": 2048, "multiple": 16}),
        ({"width": 1024, "height": 1024, "aspect": "1:1"}, "error.size_invalid",
         {"width": 1024, "height": 1024, "min_side": 256, "max_side": 2048, "multiple": 16}),
        ({"width": 2048, "height": 2048}, "error.size_too_large",
         {"width": 2048, "height": 2048, "pixels": 2048 * 2048, "max_pixels": 1024 * 1024}),
    ],
)  # fmt: skip
def test_each_invalid_request_has_its_key_and_value(
    request_kw: dict[str, Any], key: str, params: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_params(req(**request_kw), LIMITS)
    assert (info.value.key, dict(info.value.params)) == (key, params)


@pytest.mark.parametrize(
    ("aspect", "size"),
    [("1:1", (1024, 1024)), ("16:9", (1360, 768)), ("9:16", (768, 1360)), ("3:2", (1248, 832)),
     ("4:3", (1184, 880)), ("2:3", (832, 1248))],
)  # fmt: skip
def test_aspect_resolves_to_multiples_of_16_near_default_area(
    aspect: str, size: tuple[int, int]
) -> None:
    params = resolve_params(req(aspect=aspect), LIMITS)
    assert (params.width, params.height) == size


@given(
    side=st.integers(4, 128).map(lambda n: n * 16),
    ratio=st.sampled_from(LIMITS.aspect_ratios),
)
def test_aspect_sizes_keep_the_pixel_budget_and_ratio(side: int, ratio: str) -> None:
    limits = LimitsConfig(default_side=side)
    params = resolve_params(req(aspect=ratio), limits)
    w, h = (int(p) for p in ratio.split(":"))
    assert params.width % 16 == 0 and params.height % 16 == 0
    assert abs(params.width * params.height - side * side) <= 0.1 * side * side + 16 * side
    assert abs(params.width / params.height - w / h) <= 16 / min(params.width, params.height) * 2


def test_explicit_size_within_bounds_is_kept() -> None:
    params = resolve_params(req(width=1024, height=768), LIMITS)
    assert (params.width, params.height) == (1024, 768)


# ---- access ---------------------------------------------------------------------------------


def tg(user: str, chat: str | None = "chat1") -> Requester:
    return Requester(Platform.TELEGRAM, user, chat_id=chat)


def dc(user: str, guild: str | None = "g1") -> Requester:
    return Requester(Platform.DISCORD, user, chat_id="chan", guild_id=guild)


def denied(
    requester: Requester, config: Config, banned: bool = False
) -> tuple[str, dict[str, Any]]:
    with pytest.raises(AccessDenied) as info:
        check_access(requester, config, banned_in_store=banned)
    return info.value.key, dict(info.value.params)


def test_telegram_access(tmp_path: Path) -> None:
    base = make_config(tmp_path)
    check_access(tg("anyone"), base)
    config = with_section(
        base, "telegram", allowed_users=("friend",), allowed_chats=("group",),
        banned_users=("troll",), admins=("boss",),
    )  # fmt: skip
    check_access(tg("friend", "elsewhere"), config)
    check_access(tg("stranger", "group"), config)
    check_access(tg("boss", "elsewhere"), config)
    assert denied(tg("stranger", "elsewhere"), config) == ("error.not_allowed", {"where": "chat"})
    assert denied(tg("troll", "group"), config) == ("error.banned", {})
    assert denied(tg("friend"), config, banned=True) == ("error.banned", {})
    only_users = with_section(base, "telegram", allowed_users=("friend",))
    assert denied(tg("stranger"), only_users) == ("error.not_allowed", {"where": "user"})


def test_discord_access(tmp_path: Path) -> None:
    base = make_config(tmp_path)
    check_access(dc("anyone"), base)
    check_access(dc("anyone", guild=None), base)
    config = with_section(
        base, "discord", allowed_guilds=("g1",), banned_users=("troll",), allow_dms=False,
        admins=("boss",),
    )  # fmt: skip
    check_access(dc("member", "g1"), config)
    check_access(dc("boss", "g9"), config)
    guild_admin = Requester(Platform.DISCORD, "mod", guild_id="g9", guild_admin=True)
    assert denied(guild_admin, config) == ("error.not_allowed", {"where": "guild"})
    assert denied(dc("member", "g9"), config) == ("error.not_allowed", {"where": "guild"})
    assert denied(dc("member", None), config) == ("error.not_allowed", {"where": "dm"})
    assert denied(dc("troll", "g1"), config) == ("error.banned", {})
