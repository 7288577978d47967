"""A simulated Discord (simcord) around the real adapter, backed by the real Service.

``discord_world`` starts: the Service with the tiny FLUX engine (its factory held behind
``EngineGate`` until the test opens it, to exercise warm-up), the real ``MajicClient`` inside a
simcord environment, and the adapter's job follower. Progress edits are not throttled
(the follower's clock runs ``SCALE`` times faster; retries are quick).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import discord
import simcord

from backend.config import Config, EngineSettings
from backend.domain import TERMINAL_EVENTS, JobEvent
from backend.engine.factory import make_engines
from backend.engine.protocol import Engine
from backend.service import Service
from bots.discord.client import MajicClient
from bots.follow import FollowerTuning
from bots.follow.policy import Backoff
from tests.follow.clocks import FastClock

WAIT_S = 60.0  # upper bound for any wait in these tests; hitting it fails the test


class EngineGate:
    """An engine factory for ``Service.open`` that builds the tiny FLUX only once opened."""

    def __init__(self, config: Config, *, opened: bool = True) -> None:
        self._config = config
        self.gate = threading.Event()
        if opened:
            self.gate.set()

    def open(self) -> None:
        self.gate.set()

    def __call__(self) -> Sequence[Engine]:
        if not self.gate.wait(WAIT_S):
            raise TimeoutError("the engine gate was never opened")
        return make_engines(EngineSettings.of(self._config))


@dataclass
class World:
    """One guild with a channel and three members; ``admin`` may manage the server."""

    env: simcord.Env
    client: MajicClient
    service: Service
    channel: simcord.ChannelHandle
    alice: simcord.MemberActor
    bob: simcord.MemberActor
    admin: simcord.MemberActor

    def patches_of_original(self) -> list[dict[str, Any]]:
        """JSON bodies of every edit of an interaction's original response, in order."""
        return [
            r.json
            for r in self.env.http_requests
            if r.method == "PATCH"
            and r.path.endswith("/messages/@original")
            and isinstance(r.json, dict)
        ]


@asynccontextmanager
async def open_service(config: Config, engines: EngineGate) -> AsyncIterator[Service]:
    """``Service.open`` that opens the gate before closing (its factory thread must finish)."""
    async with Service.open(config, engines) as service:
        try:
            yield service
        finally:
            engines.open()


def response_of(result: simcord.InteractionResult) -> simcord.ResponseMessage:
    """The (original) response message of an interaction; fails the test if there is none."""
    message = result.response
    assert message is not None, result
    return message


async def until_terminal(service: Service, job_id: str) -> JobEvent:
    """The job's terminal event, waiting at most ``WAIT_S``."""
    async with asyncio.timeout(WAIT_S):
        async for event in service.subscribe(job_id):
            if isinstance(event, TERMINAL_EVENTS):
                return event
    raise AssertionError(f"job {job_id} ended without a terminal event")


async def idle(client: MajicClient) -> None:
    """Wait until the adapter followed and delivered every job it knows of."""
    await asyncio.wait_for(client.jobs.followers.wait_idle(), WAIT_S)


SCALE = 20.0
TUNING = FollowerTuning(backoff=Backoff(0.01, 0.05), retry_interval_s=0.2)


def fast_client(config: Config, service: Service, **options: Any) -> MajicClient:
    """The adapter's client with a fast follower clock and quick retries."""
    return MajicClient(config, service, clock=FastClock(SCALE), tuning=TUNING, **options)


@asynccontextmanager
async def simulated_discord(
    config: Config, service: Service, **client_options: Any
) -> AsyncIterator[World]:
    """The real adapter in simcord with its follower running; ``admin`` has Manage Server."""
    client = fast_client(config, service, **client_options)
    async with simcord.run(client) as env:
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        bob = guild.add_member(env.create_user("bob"))
        mods = guild.create_role("mods", permissions=discord.Permissions(manage_guild=True))
        admin = guild.add_member(env.create_user("root"), roles=[mods])
        async with client.jobs.followers.running():
            yield World(env, client, service, channel, alice, bob, admin)
