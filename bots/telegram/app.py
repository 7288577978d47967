"""The Telegram adapter's entry point for the composition root.

Lifecycle, as python-telegram-bot documents it for embedding in a larger service:

    initialize (getMe) → setMyCommands (en, zh) → start → updater.start_polling | start_webhook
    → the shared followers (re-attach unfinished jobs, the delivery retry loop)
    ... serve ...
    updater.stop → stop the followers → stop → shutdown

The updater is ours, not the builder's: in polling mode it reads updates through
``ConfirmingBot``, so that an update is confirmed to Telegram only once it was handled
(``bots.telegram.updates``: durable before announced).

Every request that is not a status edit passes ``ReplyFirstRateLimiter``, which charges it to
the followers' edit budget: replies and results go first, status edits wait.

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
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, Updater

from backend.config import Config, TelegramConfig
from backend.errors import AdapterUnavailable, ConfigError
from backend.service import Service
from bots.follow import Clock, EditBudget
from bots.i18n import LANGUAGES, translate
from bots.telegram.handlers import COMMANDS, TelegramHandlers
from bots.telegram.jobs import TelegramJobs
from bots.telegram.surface import TelegramTuning
from bots.telegram.updates import ConfirmingBot, LedgerUpdateProcessor, UpdateLedger

log = logging.getLogger("majicbot.telegram")

ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
# AIORateLimiter waits out a 429's retry_after and tries again this many times.
RATE_LIMIT_RETRIES = 3
CONCURRENT_UPDATES = 16

AnyApplication = Application[Any, Any, Any, Any, Any, Any]
# Requests that are not replies: status edits (budgeted themselves) and housekeeping.
NOT_REPLIES = frozenset(
    {"editMessageText", "sendChatAction", "getUpdates", "getMe", "setMyCommands", "deleteWebhook"}
)


class ReplyFirstRateLimiter(AIORateLimiter):
    """PTB's rate limiter that also charges every reply to the edit budget (edits yield)."""

    def __init__(self, tuning: TelegramTuning, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tuning = tuning
        self.budget: EditBudget | None = None

    async def process_request(
        self,
        callback: Any,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        chat_id = data.get("chat_id")
        if self.budget is not None and endpoint not in NOT_REPLIES:
            self.budget.spend(self.tuning.lane(str(chat_id)) if chat_id is not None else None)
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


def build_application(
    config: TelegramConfig,
    limiter: AIORateLimiter | None = None,
    ledger: UpdateLedger | None = None,
) -> AnyApplication:
    """A PTB Application with the rate limiter and the configured Bot API server; no updater
    (``build_updater``), updates handled concurrently and reported to ``ledger``."""
    processor = LedgerUpdateProcessor(CONCURRENT_UPDATES, ledger or UpdateLedger())
    builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
        Application.builder()
        .token(str(config.token))
        .rate_limiter(limiter or AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
        .concurrent_updates(processor)
        .media_write_timeout(60)
        .updater(None)
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


def build_updater(
    application: AnyApplication, config: TelegramConfig, ledger: UpdateLedger
) -> Updater:
    """The updater feeding ``application``; polling confirms updates only once handled."""
    bot: Any = application.bot
    if config.mode != "webhook":
        bot = ConfirmingBot(application.bot, ledger)
    return Updater(bot, application.update_queue)


async def start_updates(updater: Updater, config: TelegramConfig, tuning: TelegramTuning) -> None:
    """Long polling by default; a webhook server when ``telegram.mode = "webhook"``."""
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
    config: Config,
    service: Service,
    tuning: TelegramTuning | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[None]:
    """Run the Telegram bot until the block exits (see the module docstring for the order)."""
    # Opt in to PTB 23's timedelta values now (retry_after etc.); without it PTB 22 warns per 429.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    tuning = tuning or TelegramTuning()
    limiter = ReplyFirstRateLimiter(
        tuning,
        overall_max_rate=30 * tuning.flood_scale,
        group_max_rate=20 * tuning.flood_scale,
        max_retries=RATE_LIMIT_RETRIES,
    )
    ledger = UpdateLedger()
    application = build_application(config.telegram, limiter, ledger)
    updater = build_updater(application, config.telegram, ledger)
    jobs = TelegramJobs(config, service, application.bot, tuning, clock)
    limiter.budget = jobs.budget
    TelegramHandlers(jobs).register(application)
    await connect(application, config.telegram, tuning)
    try:
        await register_commands(application.bot)
        await updater.initialize()
        await application.start()
        try:
            await start_updates(updater, config.telegram, tuning)
            try:
                async with jobs.followers.running():
                    log.info("telegram: @%s is up", application.bot.username)
                    yield
            finally:
                await updater.stop()
        finally:
            await application.stop()
    finally:
        await updater.shutdown()
        await application.shutdown()
