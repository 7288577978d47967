"""`majicbot serve` with ``cluster.backend = "ray"``: a real process joins the session's Ray,
answers chat commands at once while its two actors start in the background, and ``/status``
lists every actor with its node and state (here: the weights are missing on the "GPU host")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fakes.telegram_server import FakeTelegram
from tests.test_serve import ADMIN, MEMBER, api, free_port, start

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.slow]
__all__ = ["api"]  # the fixture, shared with tests/test_serve.py

ANSWER_WITHIN_S = 2.0


async def test_serve_with_ray_answers_at_once_and_lists_its_actors(
    api: FakeTelegram, tmp_path: Path, ray_cluster: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[engine]
models_dir = "{tmp_path / "models"}"
[storage]
data_dir = "{tmp_path / "data"}"
[telegram]
enabled = true
base_url = "{api.base_url}"
base_file_url = "{api.base_file_url}"
admins = [{ADMIN.id}]
[service]
status_port = {free_port()}
[cluster]
backend = "ray"
address = "{ray_cluster}"
workers = 2
gpus_per_worker = 0
""",
        encoding="utf-8",
    )
    serve = await start(config, api.token, "serve")
    try:
        await serve.wait_for_line("majicbot is up")
        sent = time.monotonic()
        api.user_sends("/help", user=MEMBER)
        await api.wait_for("sendMessage", lambda c: c.chat_id == MEMBER.id)
        assert time.monotonic() - sent < ANSWER_WITHIN_S

        await serve.wait_for_line("joined the Ray cluster", timeout_s=60)
        # Both actors report the missing weights from their own process.
        await serve.wait_for_line("ray-2: engine failed to load", timeout_s=120)
        api.user_sends("/status", user=ADMIN)
        reply = await api.wait_for(
            "sendMessage", lambda c: c.chat_id == ADMIN.id and "ray-2" in (c.text or "")
        )
        assert reply.text is not None
        assert "ray-1 (CPU)" in reply.text and "majicbot download" in reply.text
    finally:
        code = await serve.stop()
    log = "".join(serve.lines)
    assert code == 0, log
    assert "stopped" in log
