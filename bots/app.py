"""The composition root: the one place that builds and wires everything ``majicbot serve`` runs.

Start order (stop runs in reverse):
1. the Service (store, recovery, scheduler; engines load in background threads),
2. the loopback status endpoint (`majicbot status`),
3. each enabled chat adapter (Telegram, Discord) — answering within about two seconds of start,
   long before torch is imported by the engine loader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from backend.config import Config
from backend.engine.protocol import Engine
from backend.service import Service
from backend.status_server import serve_status

log = logging.getLogger("majicbot.app")

EngineFactory = Callable[[], Sequence[Engine]]


def default_engine_factory(config: Config) -> EngineFactory:
    """Engines for the configured devices; the import of torch happens inside, in a thread."""

    def build() -> Sequence[Engine]:
        from backend.engine.factory import make_engines

        return make_engines(config)

    return build


def adapters(config: Config, service: Service) -> list[AbstractAsyncContextManager[None]]:
    """The enabled chat adapters, imported only when enabled."""
    enabled: list[AbstractAsyncContextManager[None]] = []
    if config.telegram.enabled:
        from bots.telegram.app import run_telegram

        enabled.append(run_telegram(config, service))
    if config.discord.enabled:
        from bots.discord.app import run_discord

        enabled.append(run_discord(config, service))
    return enabled


@asynccontextmanager
async def running_app(
    config: Config, engine_factory: EngineFactory | None = None
) -> AsyncIterator[Service]:
    """Everything ``serve`` runs, started in order and stopped in reverse."""
    factory = engine_factory or default_engine_factory(config)
    async with Service.open(config, factory) as service:
        async with serve_status(
            config.service.status_host, config.service.status_port, service.status
        ) as port:
            log.info("status endpoint on %s:%d", config.service.status_host, port)
            async with AsyncExitStack() as stack:
                for adapter in adapters(config, service):
                    await stack.enter_async_context(adapter)
                log.info("majicbot is up")
                yield service
        log.info("stopping: adapters and status endpoint closed, stopping the service")


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (SIGINT/SIGTERM)."""
    async with running_app(config):
        await stop.wait()
