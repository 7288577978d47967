"""The fake Bot API for the Telegram half of the hostile-input suite (as in tests/telegram)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.telegram_server import FakeTelegram


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt in to PTB 23's timedelta ``retry_after`` (else PTB warns on every 429)."""
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
