"""Start-up against a Bot API that is unreachable or refuses the token: a sentence, no traceback."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from backend.config import Config, Secret
from backend.errors import AdapterUnavailable, ConfigError, MajicbotError
from bots.telegram.app import run_telegram
from bots.telegram.surface import TelegramTuning
from tests.fakes.telegram_server import FakeTelegram

FAST = TelegramTuning(connect_attempts=2, connect_backoff_s=0.01)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pointed_at(base_url: str, token: str) -> Config:
    base = Config()
    telegram = dataclasses.replace(
        base.telegram, enabled=True, token=Secret(token), base_url=base_url
    )
    return dataclasses.replace(base, telegram=telegram)


async def test_unreachable_bot_api_is_retried_then_named() -> None:
    url = f"http://127.0.0.1:{closed_port()}/bot"
    config = pointed_at(url, "123456:unreachable-token")
    with pytest.raises(AdapterUnavailable) as caught:
        async with run_telegram(config, service=None, tuning=FAST):  # type: ignore[arg-type]
            pass
    message = str(caught.value)
    assert message.startswith(f"telegram: cannot reach the Bot API at {url} after 2 attempts (")
    assert message.endswith("check the network, a proxy, or telegram.base_url")
    assert "unreachable-token" not in message
    assert isinstance(caught.value, MajicbotError)  # `serve` prints it as one line, exit 1


async def test_rejected_token_is_a_config_error(api: FakeTelegram) -> None:
    api.fail("getMe", code=401, retry_after=None, description="Unauthorized")
    config = pointed_at(api.base_url, api.token)
    with pytest.raises(ConfigError, match=r"telegram\.token was rejected by Telegram"):
        async with run_telegram(config, service=None, tuning=FAST):  # type: ignore[arg-type]
            pass
