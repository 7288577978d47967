"""The shared follower on Discord: the delivery policy against the errors Discord answers.

simcord around the real adapter and the real Service on a step engine; faults are injected into
simcord's REST layer, so discord.py raises its genuine exceptions with Discord's codes.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from backend.config import Config
from backend.domain import Platform, Succeeded
from backend.service import Service
from tests.backend.engines import StepEngine
from tests.discord.harness import idle, response_of, simulated_discord, until_terminal
from tests.discord.test_simcord import buttons, job_id_of

ORIGINAL = "/webhooks/*/messages/@original"


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, 50027), (404, 10015), (404, 10008)],
    ids=["expired-token", "unknown-webhook", "deleted-original"],
)
async def test_a_dead_original_response_gets_the_result_posted_in_the_channel(
    tiny_config: Config, status: int, code: int
) -> None:
    gate = threading.Event()
    async with (
        Service.open(tiny_config, lambda: [StepEngine(step_gate=gate)]) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        result = await world.alice.slash(world.channel, "imagine", prompt="a comet")
        job_id = job_id_of(response_of(result))
        world.env.inject_error("PATCH", ORIGINAL, status=status, code=code, times=None)
        gate.set()
        assert isinstance(await until_terminal(service, job_id), Succeeded)
        finished = asyncio.get_running_loop().time()
        await idle(world.client)
        assert asyncio.get_running_loop().time() - finished <= 5.0

        posted = world.channel.last_message
        assert posted is not None and posted.id != response_of(result).id
        assert posted.content == f"{world.alice.mention} your image is ready."
        assert [a.filename for a in posted.attachments] == [f"{job_id}.png"]
        assert [b[1] for b in buttons(posted)] == [
            f"mj:{action}:{job_id}" for action in ("reroll", "vary", "delete")
        ]
        assert await service.deliveries.undelivered(Platform.DISCORD) == []


async def test_forbidden_ends_delivery_without_a_retry_loop(tiny_config: Config) -> None:
    gate = threading.Event()
    async with (
        Service.open(tiny_config, lambda: [StepEngine(step_gate=gate)]) as service,
        simulated_discord(tiny_config, service) as world,
    ):
        result = await world.alice.slash(world.channel, "imagine", prompt="a comet")
        job_id = job_id_of(response_of(result))
        world.env.inject_error("PATCH", ORIGINAL, status=404, code=10015, times=None)
        world.env.inject_error("POST", "/channels/*/messages", status=403, code=50013, times=None)
        gate.set()
        await until_terminal(service, job_id)
        await idle(world.client)
        await asyncio.sleep(1.0)  # five periods of the retry loop
        posts = [
            r
            for r in world.env.http_requests
            if r.method == "POST" and r.path.startswith("/channels/") and "messages" in r.path
        ]
        assert len(posts) == 1
        job = await service.job(job_id)
        assert job.delivered_at is not None  # settled: kept for /history, never retried
