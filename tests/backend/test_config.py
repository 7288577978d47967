"""Config loading: defaults, the example file, and the mistakes people make."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backend.config import Config, Secret, load_config
from backend.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_documents_exactly_the_defaults() -> None:
    assert load_config(ROOT / "config.example.toml", env={}) == Config()


def test_example_file_names_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    for section in dataclasses.fields(Config):
        assert f"[{section.name}]" in text
        for key in dataclasses.fields(getattr(Config(), section.name)):
            assert f"\n{key.name} = " in text, f"{section.name}.{key.name} undocumented"


def test_values_are_read_into_frozen_dataclasses(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[engine]\ndevices = ["cuda:0", "cuda:1"]\nprofile = "balanced"\n'
        "[limits]\nmax_steps = 40\ndefault_guidance = 4\n"
        '[telegram]\nadmins = [12345, "678"]\n',
    )
    config = load_config(path, env={})
    assert config.engine.devices == ("cuda:0", "cuda:1")
    assert config.engine.profile == "balanced"
    assert config.limits.max_steps == 40
    assert config.limits.default_guidance == 4.0
    assert config.telegram.admins == ("12345", "678")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.max_steps = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[limits]\nmax_steps = "many"\n', "limits.max_steps = 'many': must be an integer"),
        ("[limits]\nmax_steps = 0\n", "limits.max_steps = 0: must be between 1 and 200"),
        ("[limits]\nmax_stepz = 5\n", "unknown key 'limits.max_stepz' (did you mean 'max_steps'?)"),
        ('[enigne]\nprofile = "gpu"\n', "unknown key 'enigne' (did you mean 'engine'?)"),
        ('[engine]\nprofile = "fast"\n', "engine.profile = 'fast': must be one of 'auto', 'gpu'"),
        ("[engine]\nwarmup = 1\n", "engine.warmup = 1: must be true or false"),
        ("[limits]\ndefault_side = 1000\n", "limits.default_side = 1000: must be a multiple of 16"),
        ('[engine]\ndevices = ["gpu0"]\n', "engine.devices: 'gpu0' is not a device"),
        ('[limits]\naspect_ratios = ["wide"]\n', "'wide' is not of the form W:H"),
        ("[limits]\ndefault_steps = 60\n", "limits.default_steps = 60: must not exceed"),
        ("limits = 3\n", "limits must be a table"),
        ("[limits\n", "is not valid TOML"),
    ],
)
def test_common_mistakes_name_key_value_and_what_is_allowed(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert message in str(caught.value)


def test_enabled_bot_without_token_says_which_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set the environment variable TELEGRAM_BOT_TOKEN"):
        load_config(write(tmp_path, "[telegram]\nenabled = true\n"), env={})


def test_token_from_environment_wins_and_is_redacted(tmp_path: Path) -> None:
    path = write(tmp_path, '[discord]\nenabled = true\ntoken = "file-token-123"\n')
    config = load_config(path, env={"DISCORD_BOT_TOKEN": "env-token-456"})
    assert config.discord.token == "env-token-456"
    assert isinstance(config.discord.token, Secret)
    assert "env-token-456" not in repr(config)
    assert "env-token-456" not in str(config)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path, env={})  # a directory


def test_wrong_type_of_secret_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[telegram]\ntoken = 123456789\n"), env={})
    assert "123456789" not in str(caught.value)
    assert "telegram.token = <redacted>: must be a string" in str(caught.value)


def test_status_token_from_environment_is_a_secret(tmp_path: Path) -> None:
    config = load_config(None, env={"MAJICBOT_STATUS_TOKEN": "status-token-789"})
    assert config.service.status_token == "status-token-789"
    assert "status-token-789" not in repr(config)
    assert load_config(None, env={}).service.status_token == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[engine]\nvram_margin_gb = nan\n",
            "engine.vram_margin_gb = nan: must be a finite number",
        ),
        ("[service]\nstop_grace_s = nan\n", "service.stop_grace_s = nan: must be a finite number"),
        ("[limits]\nmax_guidance = inf\n", "limits.max_guidance = inf: must be a finite number"),
        ("[engine]\ndevices = []\n", "engine.devices = []: must name at least one item"),
        ("[limits]\naspect_ratios = []\n", "limits.aspect_ratios = []: must name at least one"),
        (
            "[limits]\nmax_side = 256\ndefault_side = 64\nmin_side = 64\n"
            'aspect_ratios = ["9999:1"]\n',
            "limits.aspect_ratios: '9999:1' gives 6400x16",
        ),
        ("[limits]\ndefault_side = 2048\nmax_side = 1024\n", "limits.default_side = 2048: must be"),
        ("[limits]\ndefault_side = 128\nmin_side = 256\n", "limits.default_side = 128: must be"),
        ("[limits]\nmax_pixels = 60000\n", "limits.max_pixels = 60000: must be at least"),
        ('[telegram]\nadmins = ["@ada"]\n', "telegram.admins: '@ada' is not an id"),
        ('[discord]\nadmin_roles = ["mods"]\n', "discord.admin_roles: 'mods' is not an id"),
        ('[service]\nstatus_host = "0.0.0.0"\n', "service.status_host = '0.0.0.0': the status"),
        ("[limits]\nstall_timeout_s = -1\n", "limits.stall_timeout_s = -1.0: must be between"),
    ],
)
def test_what_would_break_the_limits_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text), env={})
    assert message in str(refused.value)


def test_a_non_loopback_status_host_needs_the_status_token(tmp_path: Path) -> None:
    path = write(tmp_path, '[service]\nstatus_host = "0.0.0.0"\n')
    config = load_config(path, env={"MAJICBOT_STATUS_TOKEN": "s3cret"})
    assert config.service.status_token == "s3cret"
    assert "s3cret" not in repr(config)
    assert load_config(write(tmp_path, '[service]\nstatus_host = "::1"\n'), env={})


def test_aspect_sizes_in_config_checks_match_validation() -> None:
    from backend.config import LimitsConfig, _ratio_size
    from backend.validation import aspect_size

    limits = LimitsConfig(aspect_ratios=("1:1", "16:9", "9:16", "21:9", "3:2"))
    for ratio in limits.aspect_ratios:
        w, h = (int(p) for p in ratio.split(":"))
        assert _ratio_size(w / h, limits.default_side) == aspect_size(ratio, limits)


def test_cluster_section_is_read_and_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[cluster]\nbackend = "ray"\naddress = "10.0.0.5:6379"\nworkers = 0\n'
        "gpus_per_worker = 0.5\n",
    )
    cluster = load_config(path, env={}).cluster
    assert (cluster.backend, cluster.address, cluster.gpus_per_worker) == (
        "ray", "10.0.0.5:6379", 0.5,
    )  # fmt: skip
    cpu_actors = write(tmp_path, '[cluster]\nbackend = "ray"\ngpus_per_worker = 0\n')
    with pytest.raises(ConfigError, match=r"cluster.gpus_per_worker = 0 .* needs cluster.workers"):
        load_config(cpu_actors, env={})
    with pytest.raises(ConfigError, match=r"cluster.backend = 'celery': must be one of"):
        load_config(write(tmp_path, '[cluster]\nbackend = "celery"\n'), env={})
