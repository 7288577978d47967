"""Per-user defaults (/settings) and bans through the Service, against a real SQLite file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backend.config import Config
from backend.defaults import decode_defaults, encode_defaults
from backend.domain import GenerationParams, Options, Platform, UserSettings
from backend.errors import AccessDenied, InvalidRequest
from backend.service import Service
from backend.store import Store
from backend.store_parts import UserRecord
from tests.backend.helpers import make_config, request, requester, with_section

ADMIN = requester("boss")
# default_side 64: 16:9 → 80×48, 3:4 → 48×80 (multiples of 16 around 64² pixels).


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return with_section(make_config(tmp_path / "data"), "telegram", admins=("boss",))


def _params(seed: int, steps: int, width: int, height: int, guidance: float) -> GenerationParams:
    return GenerationParams("a red fox", seed, steps, width, height, guidance)


async def test_defaults_fill_what_a_request_leaves_out(config: Config) -> None:
    async with Service.open(config, lambda: []) as service:
        settings = await service.accounts.set_defaults(
            requester(), Options(steps=5, aspect="16：9", guidance=4.0)
        )
        bare = await service.submit(request(seed=1))
        other_user = await service.submit(request(user="u2", seed=2))
    assert settings == UserSettings(
        Options(steps=5, aspect="16:9", guidance=4.0), steps=5, width=80, height=48, guidance=4.0
    )
    async with Store.open(config.db_path) as store:
        assert await store.users.all() == [
            UserRecord(
                Platform.TELEGRAM,
                "u1",
                defaults=(("aspect", "16:9"), ("guidance", "4.0"), ("steps", "5")),
            )
        ]
    assert bare.job.params == _params(1, 5, 80, 48, 4.0)
    assert other_user.job.params == _params(2, 3, 64, 64, 3.5)


async def test_explicit_options_win_and_a_requested_size_replaces_the_default_size(
    config: Config,
) -> None:
    async with Service.open(config, lambda: []) as service:
        await service.accounts.set_defaults(requester(), Options(steps=5, width=128, height=64))
        explicit = await service.submit(request(seed=1, steps=2, guidance=2.0, aspect="3:4"))
        sized = await service.submit(request(seed=2, width=96, height=96))
        await service.accounts.set_defaults(requester(), Options(aspect="16:9"))
        over_aspect = await service.submit(request(seed=3, width=64, height=128))
    assert explicit.job.params == _params(1, 2, 48, 80, 2.0)
    assert sized.job.params == _params(2, 5, 96, 96, 3.5)
    assert over_aspect.job.params == _params(3, 5, 64, 128, 3.5)


INVALID: list[tuple[Options, str, dict[str, object]]] = [
    (Options(steps=51), "error.steps_range", {"value": 51, "min": 1, "max": 50}),
    (Options(steps=0), "error.steps_range", {"value": 0, "min": 1, "max": 50}),
    (Options(guidance=0.5), "error.guidance_range", {"value": 0.5, "min": 1.0, "max": 10.0}),
    (
        Options(aspect="5:1"),
        "error.aspect_unknown",
        {"value": "5:1", "allowed": "1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3"},
    ),
    (
        Options(width=100, height=64),
        "error.size_invalid",
        {"width": 100, "height": 64, "min_side": 64, "max_side": 256, "multiple": 16},
    ),
    (
        Options(width=128),
        "error.size_invalid",
        {"width": 128, "height": None, "min_side": 64, "max_side": 256, "multiple": 16},
    ),
    (
        Options(width=256, height=256, aspect="1:1"),
        "error.size_invalid",
        {"width": 256, "height": 256, "min_side": 64, "max_side": 256, "multiple": 16},
    ),
]


@pytest.mark.parametrize(("defaults", "key", "params"), INVALID)
async def test_invalid_defaults_are_refused_with_the_request_error_keys(
    config: Config, defaults: Options, key: str, params: dict[str, object]
) -> None:
    async with Service.open(config, lambda: []) as service:
        await service.accounts.set_defaults(requester(), Options(steps=7))
        with pytest.raises(InvalidRequest) as refused:
            await service.accounts.set_defaults(requester(), defaults)
        with pytest.raises(InvalidRequest) as as_request:
            await service.submit(request(**dataclasses.asdict(defaults)))
        settings = service.accounts.settings(requester())
    assert (refused.value.key, dict(refused.value.params)) == (key, params)
    assert (as_request.value.key, dict(as_request.value.params)) == (key, params)
    assert settings.defaults == Options(steps=7)  # unchanged


async def test_settings_merge_show_effective_values_and_reset(config: Config) -> None:
    async with Service.open(config, lambda: []) as service:
        empty = service.accounts.settings(requester())
        await service.accounts.set_defaults(requester(), Options(steps=9))
        await service.accounts.set_defaults(requester(), Options(aspect="3:4"))
        merged = service.accounts.settings(requester())
        await service.accounts.set_defaults(requester(), Options(width=128, height=96))
        resized = service.accounts.settings(requester())
        cleared = await service.accounts.reset_defaults(requester())
        after_reset = await service.submit(request(seed=4))
    assert empty == UserSettings(Options(), steps=3, width=64, height=64, guidance=3.5)
    assert merged == UserSettings(
        Options(steps=9, aspect="3:4"), steps=9, width=48, height=80, guidance=3.5
    )
    assert resized.defaults == Options(steps=9, width=128, height=96)
    assert (resized.width, resized.height) == (128, 96)
    assert cleared == empty
    assert after_reset.job.params == _params(4, 3, 64, 64, 3.5)


async def test_defaults_and_bans_persist_across_a_restart_without_clobbering(
    config: Config,
) -> None:
    async with Service.open(config, lambda: []) as service:
        await service.accounts.set_defaults(requester("alice"), Options(steps=6, guidance=2.5))
        await service.accounts.set_hourly_quota(ADMIN, "bob", 4)
        await service.accounts.set_banned(ADMIN, "bob", banned=True)
        await service.accounts.set_defaults(requester("carol"), Options(width=96, height=64))
        await service.accounts.set_banned(ADMIN, "carol", banned=True)
        await service.accounts.set_banned(ADMIN, "carol", banned=False)
    async with Service.open(config, lambda: []) as service:
        alice = await service.submit(request(user="alice", seed=5))
        carol = await service.submit(request(user="carol", seed=6))
        with pytest.raises(AccessDenied) as bob:
            await service.submit(request(user="bob"))
        await service.accounts.set_banned(ADMIN, "bob", banned=False)
    async with Store.open(config.db_path) as store:
        stored = {record.user_id: record for record in await store.users.all()}
    assert alice.job.params == GenerationParams("a red fox", 5, 6, 64, 64, 2.5)
    assert carol.job.params == GenerationParams("a red fox", 6, 3, 96, 64, 3.5)
    assert bob.value.key == "error.banned"
    assert stored["bob"] == UserRecord(Platform.TELEGRAM, "bob", banned=False, hourly_quota=4)


async def test_stored_defaults_that_became_invalid_fall_back_to_the_server_default(
    config: Config,
) -> None:
    async with Service.open(config, lambda: []) as service:
        await service.accounts.set_defaults(requester(), Options(steps=40, aspect="16:9"))
    stricter = with_section(config, "limits", max_steps=30, aspect_ratios=("1:1", "3:4"))
    async with Service.open(stricter, lambda: []) as service:
        settings = service.accounts.settings(requester())
        submitted = await service.submit(request(seed=8))
    assert settings == UserSettings(Options(), steps=3, width=64, height=64, guidance=3.5)
    assert submitted.job.params == _params(8, 3, 64, 64, 3.5)


async def test_ban_and_unban_are_for_admins_and_admins_cannot_be_banned(config: Config) -> None:
    async with Service.open(config, lambda: []) as service:
        with pytest.raises(AccessDenied) as not_admin:
            await service.accounts.set_banned(requester("u2"), "u1", banned=True)
        await service.submit(request(user="u1", seed=1))  # still allowed
        with pytest.raises(InvalidRequest) as admin_target:
            await service.accounts.set_banned(ADMIN, "boss", banned=True)
        await service.accounts.set_banned(ADMIN, "u1", banned=True)
        with pytest.raises(AccessDenied) as no_history:
            await service.history(requester("u1"))
        with pytest.raises(AccessDenied) as refused:
            await service.submit(request(user="u1"))
        with pytest.raises(AccessDenied) as no_settings:
            await service.accounts.set_defaults(requester("u1"), Options(steps=4))
        queued = [
            job.requester.user_id for job in await service.deliveries.active_jobs(Platform.TELEGRAM)
        ]
        await service.accounts.set_banned(ADMIN, "u1", banned=False)
        again = await service.submit(request(user="u1", seed=2))
    assert not_admin.value.key == "error.admin_only"
    assert (admin_target.value.key, dict(admin_target.value.params)) == (
        "error.cannot_ban_admin",
        {"user_id": "boss"},
    )
    assert refused.value.key == no_settings.value.key == no_history.value.key == "error.banned"
    assert queued == ["u1"]  # the job queued before the ban stays
    assert again.job.params.seed == 2


def test_encode_decode_round_trip_and_apply() -> None:
    limits = Config().limits
    defaults = Options(steps=20, width=1024, height=768, guidance=3.25)
    pairs = encode_defaults(defaults)
    assert pairs == (("guidance", "3.25"), ("height", "768"), ("steps", "20"), ("width", "1024"))
    assert decode_defaults(pairs, limits) == defaults
    assert decode_defaults((("steps", "lots"), ("aspect", "16:9")), limits) == Options(
        aspect="16:9"
    )
    assert encode_defaults(Options(seed=5, steps=3)) == (("steps", "3"),)  # never a seed
    assert Options(steps=4).over(defaults) == Options(
        steps=4, width=1024, height=768, guidance=3.25
    )
    assert Options(aspect="1:1").over(defaults) == Options(steps=20, aspect="1:1", guidance=3.25)
