"""The composition root: the one place that builds and wires everything ``majicbot serve`` runs.

Start order (stop runs in reverse):
1. the Service (instance lock, store, recovery, scheduler; engines load in background threads),
2. the loopback status endpoint (`majicbot status`),
3. each enabled chat adapter (Telegram, Discord) — answering within about two seconds of start;
4. only then the engine factory and loaders (torch, diffsynth, weights) in background threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from backend.config import Config, EngineSettings
from backend.engine.protocol import Engine, EngineFactory, EngineSource
from backend.errors import EngineStuck
from backend.service import Service
from backend.status_server import check_bind, serve_status

log = logging.getLogger("majicbot.app")

# Longest the engine waits for the adapters to come up before loading anyway.
ADAPTERS_UP_TIMEOUT_S = 30.0


def default_engine_factory(config: Config) -> EngineFactory | EngineSource:
    """Engines for the configured devices, or Ray actors (``cluster.backend = "ray"``); torch
    and ray are imported inside, in the factory's thread."""
    if config.cluster.backend == "ray":
        from backend.cluster.ray_cluster import ray_source

        return ray_source(config.cluster, EngineSettings.of(config))

    def build() -> Sequence[Engine]:
        from backend.engine.factory import make_engines

        return make_engines(EngineSettings.of(config))

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


def after(
    event: threading.Event,
    source: EngineFactory | EngineSource,
    aborted: threading.Event | None = None,
) -> EngineSource:
    """``factory``, run only once ``event`` is set (or after ``ADAPTERS_UP_TIMEOUT_S``), and
    not at all once ``aborted`` is set (start-up failed: nothing to load engines for).

    The factory thread imports torch and diffsynth (13–15 s of mostly GIL-holding work on a GPU
    box): starting it only once the adapters answer keeps it off their start-up path.
    """

    if not isinstance(source, EngineSource):
        source = EngineSource(source)
    factory = source.build

    def build() -> Sequence[Engine]:
        event.wait(ADAPTERS_UP_TIMEOUT_S)
        if aborted is not None and aborted.is_set():
            return []
        return factory()

    return dataclasses.replace(source, build=build)


@asynccontextmanager
async def running_app(
    config: Config, engine_factory: EngineFactory | None = None
) -> AsyncIterator[Service]:
    """Everything ``serve`` runs, started in order and stopped in reverse."""
    check_bind(config.service.status_host, config.service.status_token)  # before anything starts
    adapters_up, aborted = threading.Event(), threading.Event()
    factory = after(adapters_up, engine_factory or default_engine_factory(config), aborted)
    try:
        async with Service.open(config, factory) as service:
            status = config.service
            async with serve_status(
                status.status_host, status.status_port, service.status, status.status_token
            ) as port:
                log.info("status endpoint on %s:%d", config.service.status_host, port)
                async with AsyncExitStack() as stack:
                    for adapter in adapters(config, service):
                        await stack.enter_async_context(adapter)
                    log.info("majicbot is up")
                    adapters_up.set()
                    yield service
            log.info("stopping: adapters and status endpoint closed, stopping the service")
    finally:
        aborted.set()  # a factory still waiting for the adapters has nothing to load for
        adapters_up.set()


async def serve(config: Config, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set (SIGINT/SIGTERM), or until an engine is stuck.

    A stuck engine (``backend.watchdog``) drains like a stop, then raises ``EngineStuck``: the
    process exits non-zero and its supervisor starts a new one (``deploy/majicbot.service``).
    """
    async with running_app(config) as service:
        stuck = service.watchdog.stuck
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(stuck.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
    if stuck.is_set():
        raise EngineStuck(f"{service.watchdog.stuck_reason}; exiting for a restart")
