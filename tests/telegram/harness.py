"""Users, chats, tuning and builders shared by the Telegram adapter tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from backend.config import Config, Secret
from backend.service import Service
from bots.follow import FollowerTuning
from bots.follow.policy import Backoff
from bots.telegram.app import run_telegram
from bots.telegram.surface import TelegramTuning
from tests.fakes.telegram_server import Call, FakeTelegram, TgChat, TgUser
from tests.follow.clocks import FastClock

ADMIN = TgUser(1, "Ada", "ada", "en")
ALICE = TgUser(1001, "Alice", "alice", "en-US")
BO = TgUser(1002, "Bo", None, "zh-hans")
GROUP = TgChat(-100123, "supergroup", "Painters")
# The follower's clock runs SCALE times faster, and the flood limits with it; retries are quick.
SCALE = 20.0
TUNING = TelegramTuning(
    flood_scale=SCALE,
    poll_timeout_s=2.0,
    follow=FollowerTuning(backoff=Backoff(0.01, 0.05), retry_interval_s=0.2),
)


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
    async with run_telegram(config, service, TUNING, FastClock(SCALE)):
        yield


def is_status(call: Call) -> bool:
    """A job's status message: the one with the Cancel button."""
    return bool(call.buttons) and call.buttons[0][1].startswith("c:")


def status_in(chat_id: int) -> Callable[[Call], bool]:
    """``wait_for`` filter: a job's status message in ``chat_id``."""
    return lambda call: call.chat_id == chat_id and is_status(call)
