"""The Telegram adapter's entry point for the composition root.

Lifecycle, as python-telegram-bot documents it for embedding in a larger service:

    initialize (getMe) → setMyCommands (en, zh) → start → updater.start_polling | start_webhook
    → re-attach unfinished jobs, start the delivery retry loop
    ... serve ...
    updater.stop → cancel background tasks → stop → shutdown

Polling and webhooks exclude each other: polling deletes any webhook first (PTB does that), and
webhook mode registers ``telegram.webhook_url`` with ``setWebhook``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from telegram import Bot, BotCommand, Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder

from backend.config import Config, TelegramConfig
from backend.errors import AdapterUnavailable, ConfigError
from backend.service import Service
from bots.i18n import LANGUAGES, translate
from bots.telegram.handlers import COMMANDS, TelegramHandlers
from bots.telegram.jobs import JobFlow, TelegramTuning

log = logging.getLogger("majicbot.telegram")

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
# AIORateLimiter waits out a 429's retry_after and tries again this many times.
RATE_LIMIT_RETRIES = 3
CONCURRENT_UPDATES = 16

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def build_application(config: TelegramConfig) -> AnyApplication:
    """A PTB Application with the rate limiter and the configured Bot API server."""
    builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
        Application.builder()
        .token(str(config.token))
        .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
        .concurrent_updates(CONCURRENT_UPDATES)
        .media_write_timeout(60)
    )
    if config.base_url:
        builder = builder.base_url(config.base_url)
    if config.base_file_url:
        builder = builder.base_file_url(config.base_file_url)
    return builder.build()


async def register_commands(bot: Bot) -> None:
    """setMyCommands in English (the default) and Chinese; a failure is logged, not fatal."""
    for lang in LANGUAGES:
        commands = [BotCommand(name, translate(f"cmd.{name}", lang)) for name in COMMANDS]
        try:
            await bot.set_my_commands(commands, language_code=None if lang == "en" else lang)
        except TelegramError as exc:
            log.warning("setMyCommands (%s) failed: %s", lang, exc)


async def start_updates(
    application: AnyApplication, config: TelegramConfig, tuning: TelegramTuning
) -> None:
    """Long polling by default; a webhook server when ``telegram.mode = "webhook"``."""
    updater = application.updater
    assert updater is not None
    if config.mode == "webhook":
        await updater.start_webhook(
            listen=config.webhook_listen,
            port=config.webhook_port,
            url_path=urlsplit(config.webhook_url).path.lstrip("/"),
            webhook_url=config.webhook_url,
            secret_token=str(config.webhook_secret) or None,
            allowed_updates=ALLOWED_UPDATES,
        )
        log.info("telegram: webhook on %s:%d", config.webhook_listen, config.webhook_port)
    else:
        await updater.start_polling(
            allowed_updates=ALLOWED_UPDATES, timeout=int(tuning.poll_timeout_s)
        )
        log.info("telegram: long polling")


async def connect(
    application: AnyApplication, config: TelegramConfig, tuning: TelegramTuning
) -> None:
    """``initialize`` (getMe), retried with backoff on network errors; a clear error at the end."""
    delay = tuning.connect_backoff_s
    for attempt in range(1, tuning.connect_attempts + 1):
        try:
            await application.initialize()
            return
        except InvalidToken:
            await application.bot.shutdown()  # close the HTTP client getMe opened
            raise ConfigError(
                "telegram.token was rejected by Telegram: "
                "check TELEGRAM_BOT_TOKEN (from @BotFather)"
            ) from None
        except NetworkError as exc:  # TimedOut included
            where = config.base_url or "https://api.telegram.org"
            if attempt == tuning.connect_attempts:
                await application.bot.shutdown()
                raise AdapterUnavailable(
                    f"telegram: cannot reach the Bot API at {where} after {attempt} attempts "
                    f"({exc}); check the network, a proxy, or telegram.base_url"
                ) from None
            log.warning("telegram: cannot reach %s (%s); retrying in %.0f s", where, exc, delay)
            await asyncio.sleep(delay)
            delay *= 2


@asynccontextmanager
async def run_telegram(
    config: Config, service: Service, tuning: TelegramTuning | None = None
) -> AsyncIterator[None]:
    """Run the Telegram bot until the block exits (see the module docstring for the order)."""
    # Opt in to PTB 23's timedelta values now (retry_after etc.); without it PTB 22 warns per 429.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    tuning = tuning or TelegramTuning()
    application = build_application(config.telegram)
    flow = JobFlow(config, service, application.bot, tuning)
    TelegramHandlers(flow).register(application)
    await connect(application, config.telegram, tuning)
    try:
        await register_commands(application.bot)
        await application.start()
        try:
            await start_updates(application, config.telegram, tuning)
            try:
                await flow.reattach()
                flow.tasks.spawn(flow.retry_loop(), name="telegram-delivery-retry")
                log.info("telegram: @%s is up", application.bot.username)
                yield
            finally:
                assert application.updater is not None
                await application.updater.stop()
                await flow.tasks.cancel_all()
        finally:
            await application.stop()
    finally:
        await application.shutdown()
