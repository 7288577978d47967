"""Entry point of the Discord adapter for the composition root (``bots.app``).

Start: the job follower (re-attaches to jobs from before a restart once the gateway is ready),
then the gateway connection in the background — ``run_discord`` never waits for it. Stop, in
reverse: close the client (gateway and HTTP session), then cancel the followers; results not
delivered yet stay in SQLite and are delivered on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backend.config import Config
from backend.service import Service
from bots.discord.client import MajicClient

log = logging.getLogger("majicbot.discord")


def _report_gateway_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("the Discord connection stopped: %s", error, exc_info=error)


@asynccontextmanager
async def run_discord(config: Config, service: Service) -> AsyncIterator[None]:
    """Run the Discord bot for the duration of the block."""
    client = MajicClient(config, service)
    async with client.jobs.followers.running():
        gateway = asyncio.create_task(client.start(config.discord.token), name="discord-gateway")
        gateway.add_done_callback(_report_gateway_end)
        try:
            yield
        finally:
            await client.close()
            gateway.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(gateway, return_exceptions=True)
            log.info("Discord adapter stopped")
