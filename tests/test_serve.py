"""`majicbot serve` as users run it: a real process, the real Telegram adapter against the fake
Bot API, no weights yet. The bots answer while the engine reports what is missing; the token
never reaches the log; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.telegram_server import FakeTelegram, TgUser

MAJICBOT = str(Path(sys.executable).with_name("majicbot"))
ADMIN = TgUser(7, "Ada", "ada", "en")
MEMBER = TgUser(8, "Max", "max", "zh-CN")

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A running `majicbot` with its stderr collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace"))
                self._changed.notify_all()

    async def wait_for_line(self, text: str, timeout_s: float = 60.0) -> str:
        async with asyncio.timeout(timeout_s), self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                await self._changed.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        await self._reader
        return code


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


async def start(config: Path, token: str, *args: str) -> Process:
    proc = await asyncio.create_subprocess_exec(
        MAJICBOT,
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"TELEGRAM_BOT_TOKEN": token, "PATH": "/usr/bin:/bin"},
    )
    return Process(proc)


async def test_serve_answers_while_weights_are_missing_and_stops_on_sigterm(
    api: FakeTelegram, tmp_path: Path
) -> None:
    status_port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[engine]
models_dir = "{tmp_path / "models"}"
devices = ["cpu"]
[storage]
data_dir = "{tmp_path / "data"}"
[telegram]
enabled = true
base_url = "{api.base_url}"
base_file_url = "{api.base_file_url}"
admins = [{ADMIN.id}]
[service]
status_port = {status_port}
""",
        encoding="utf-8",
    )
    serve = await start(config, api.token, "serve")
    try:
        await serve.wait_for_line("majicbot is up")
        # The engine fails in the background and says how to fix it; the bot stays up.
        await serve.wait_for_line("Fetch them with `majicbot download`")
        assert "MAILAND/majicflus_v1/majicflus_v134.safetensors: missing" in "".join(serve.lines)

        api.user_sends("/status", user=ADMIN)
        reply = await api.wait_for("sendMessage", lambda c: c.chat_id == ADMIN.id)
        assert reply.text is not None and "majicbot download" in reply.text

        api.user_sends("/imagine a red fox in snow --seed 42", user=MEMBER)
        ack = await api.wait_for("sendMessage", lambda c: c.chat_id == MEMBER.id)
        assert ack.text is not None and ack.text.strip()

        cli = await asyncio.create_subprocess_exec(
            MAJICBOT,
            "--config",
            str(config),
            "status",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin"},
        )
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err.decode()
        assert "majicbot download" in out.decode()
    finally:
        code = await serve.stop()
    log = "".join(serve.lines)
    assert code == 0, log
    assert "stopped" in log
    assert api.token not in log
    assert api.token.split(":")[1] not in log
