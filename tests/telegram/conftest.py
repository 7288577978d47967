"""Fixtures for the Telegram adapter tests: the fake Bot API and a config pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.config import Config
from tests.fakes.telegram_server import FakeTelegram
from tests.telegram.harness import telegram_config


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def tg_config(tiny_config: Config, api: FakeTelegram) -> Config:
    """The tiny-FLUX config with Telegram pointed at the fake."""
    return telegram_config(tiny_config, api)


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to PTB 23's timedelta ``retry_after`` (else PTB warns on every 429)."""
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
