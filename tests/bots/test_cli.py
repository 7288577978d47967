"""The `majicbot` command line: help, config errors, and commands that need nothing running."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bots.cli import EXIT_FAILED, EXIT_USAGE, main

MAJICBOT = str(Path(sys.executable).with_name("majicbot"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_console_script_help_lists_every_command() -> None:
    result = subprocess.run(
        [MAJICBOT, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    for command in ("serve", "imagine", "download", "status"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("serve", "--backend-only"),
        ("imagine", "--seed"),
        ("download", "--check"),
        ("status", "usage: majicbot status"),
    ],
)
def test_every_subcommand_has_help(
    command: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert expected in capsys.readouterr().out


def test_imagine_size_and_aspect_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["imagine", "a fox", "--size", "512x512", "--ar", "16:9"])
    assert caught.value.code == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


def test_bad_config_exits_2_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[limits]\nmax_steps = -1\n", encoding="utf-8")
    assert main(["--config", str(config), "status"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "configuration error: limits.max_steps = -1: must be between 1 and 200" in err


@pytest.mark.parametrize("after", [False, True])
def test_config_option_before_or_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], after: bool
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[limits]\nmax_steps = -1\n", encoding="utf-8")
    argv = ["status", "--config", str(config)] if after else ["--config", str(config), "status"]
    assert main(argv) == EXIT_USAGE
    assert "limits.max_steps = -1" in capsys.readouterr().err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "absent.toml"), "serve"]) == EXIT_USAGE
    assert "does not exist (copy config.example.toml to start)" in capsys.readouterr().err


def test_serve_without_any_bot_says_how_to_enable_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path}"\n', encoding="utf-8")
    assert main(["--config", str(config), "serve"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no chat bot is enabled" in err
    assert "TELEGRAM_BOT_TOKEN" in err


def test_enabled_bot_without_token_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    config = tmp_path / "config.toml"
    config.write_text("[discord]\nenabled = true\n", encoding="utf-8")
    assert main(["--config", str(config), "serve"]) == EXIT_USAGE
    assert "DISCORD_BOT_TOKEN" in capsys.readouterr().err


def test_serve_refuses_a_public_status_host_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAJICBOT_STATUS_TOKEN", raising=False)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n[service]\nstatus_host = "0.0.0.0"\n',
        encoding="utf-8",
    )
    assert main(["--config", str(config), "serve", "--backend-only"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "service.status_host = '0.0.0.0'" in err and "MAJICBOT_STATUS_TOKEN" in err
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_status_when_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"[service]\nstatus_port = {free_port()}\n", encoding="utf-8")
    assert main(["--config", str(config), "status"]) == EXIT_FAILED
    assert "majicbot is not running: no majicbot instance answers on 127.0.0.1:" in (
        capsys.readouterr().err
    )


def tiny_toml(tmp_path: Path, models_dir: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[engine]\nmodels_dir = "{models_dir}"\ndevices = ["cpu"]\nt5_max_tokens = 64\n'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        "[limits]\ndefault_side = 64\nmin_side = 64\nmax_side = 256\ndefault_steps = 2\n",
        encoding="utf-8",
    )
    return config


def test_imagine_generates_through_the_real_engine(
    tmp_path: Path, tiny_models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    config = tiny_toml(tmp_path, tiny_models_dir)
    out = tmp_path / "fox.png"
    argv = ["--config", str(config), "imagine", "a red fox", "--seed", "42", "--size", "96x64"]
    assert main([*argv, "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "seed 42" in printed.out
    assert str(out) in printed.out
    assert "denoising" in printed.err  # the progress bar
    with Image.open(out) as image:
        assert image.size == (96, 64)
        assert "Seed: 42" in image.info["parameters"]
    # Same seed, same device: the same pixels.
    again = tmp_path / "again.png"
    assert main([*argv, "-o", str(again)]) == 0
    with Image.open(out) as first, Image.open(again) as second:
        assert first.tobytes() == second.tobytes()


def test_imagine_rejects_bad_values_with_a_sentence(
    tmp_path: Path, tiny_models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_toml(tmp_path, tiny_models_dir)
    assert main(["--config", str(config), "imagine", "a fox", "--steps", "500"]) == EXIT_USAGE
    assert "Steps must be between 1 and 50 (you asked for 500)." in capsys.readouterr().err
    assert main(["--config", str(config), "imagine", "a fox", "--size", "big"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "“big” is not a valid value for --size. Valid form: --size 1024x768" in err
