"""Users, chats, tuning and builders shared by the Telegram adapter tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from backend.config import Config, Secret
from backend.service import Service
from bots.telegram.app import run_telegram
from bots.telegram.jobs import TelegramTuning
from tests.fakes.telegram_server import FakeTelegram, TgChat, TgUser

ADMIN = TgUser(1, "Ada", "ada", "en")
ALICE = TgUser(1001, "Alice", "alice", "en-US")
BO = TgUser(1002, "Bo", None, "zh-hans")
GROUP = TgChat(-100123, "supergroup", "Painters")
# Fast retries so that failure-and-retry tests take a fraction of a second.
TUNING = TelegramTuning(delivery_retry_s=0.2, send_backoff_s=0.05, poll_timeout_s=5.0)


def telegram_config(base: Config, api: FakeTelegram, **telegram: Any) -> Config:
    """``base`` with Telegram pointed at the fake, ADMIN as admin, and no stop grace."""
    section = dataclasses.replace(
        base.telegram,
        enabled=True,
        token=Secret(api.token),
        base_url=api.base_url,
        base_file_url=api.base_file_url,
        admins=(str(ADMIN.id),),
        **telegram,
    )
    service = dataclasses.replace(base.service, stop_grace_s=0.0)
    return dataclasses.replace(base, telegram=section, service=service)


@asynccontextmanager
async def bot(config: Config, service: Service) -> AsyncIterator[None]:
    """The adapter with test tuning."""
    async with run_telegram(config, service, TUNING):
        yield
