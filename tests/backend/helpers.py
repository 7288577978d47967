"""Small builders and waiters shared by the backend tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from backend.config import Config
from backend.domain import (
    TERMINAL_EVENTS,
    ImagineRequest,
    JobEvent,
    Options,
    Platform,
    Queued,
    ReplyTarget,
    Requester,
)
from backend.service import Service
from tests.content.fixtures import NO_IMAGE_CHECK

TIMEOUT_S = 30.0


def make_config(data_dir: Path, **limits: Any) -> Config:
    """Defaults with a temp data dir and small images (64×64, 3 steps)."""
    base = Config()
    small = {"default_side": 64, "min_side": 64, "max_side": 256, "default_steps": 3}
    return dataclasses.replace(
        base,
        storage=dataclasses.replace(base.storage, data_dir=data_dir),
        limits=dataclasses.replace(base.limits, **{**small, **limits}),
        service=dataclasses.replace(base.service, stop_grace_s=0.0),
        content=NO_IMAGE_CHECK,
    )


def with_section(config: Config, section: str, **values: Any) -> Config:
    return dataclasses.replace(
        config, **{section: dataclasses.replace(getattr(config, section), **values)}
    )


def requester(user: str = "u1", platform: Platform = Platform.TELEGRAM, **kw: Any) -> Requester:
    return Requester(platform, user_id=user, display_name=f"name-{user}", chat_id="c1", **kw)


OPTION_NAMES = {f.name for f in dataclasses.fields(Options)}


def request(prompt: str = "a red fox", user: str = "u1", **kw: Any) -> ImagineRequest:
    """A request; option keywords (``seed=7``) go into its ``Options``, the rest to the request."""
    who = kw.pop("requester", None) or requester(user)
    options = Options(**{name: kw.pop(name) for name in list(kw) if name in OPTION_NAMES})
    return ImagineRequest(prompt, who, ReplyTarget("c1"), options, **kw)


async def collect(events: AsyncIterator[JobEvent], timeout_s: float = TIMEOUT_S) -> list[JobEvent]:
    """Every event until the iterator ends (after a terminal event), within ``timeout_s``."""

    async def drain() -> list[JobEvent]:
        return [event async for event in events]

    return await asyncio.wait_for(drain(), timeout_s)


async def first_matching(
    events: AsyncIterator[JobEvent],
    accept: Callable[[JobEvent], bool],
    timeout_s: float = TIMEOUT_S,
) -> JobEvent:
    """The first event ``accept`` takes; fails if the job ends first."""

    async def find() -> JobEvent:
        async for event in events:
            if accept(event):
                return event
            assert not isinstance(event, TERMINAL_EVENTS), f"ended before a match: {event}"
        raise AssertionError("events ended before a match")

    return await asyncio.wait_for(find(), timeout_s)


async def until_waiting(
    service: Service, job_id: str, accept: Callable[[Queued], bool], timeout_s: float = TIMEOUT_S
) -> Queued:
    """Pull ``waiting(job_id)`` after each queue move until ``accept`` takes it (as a follower)."""

    async def pull() -> Queued:
        version = service.queue_version
        while True:
            waiting = service.waiting(job_id)
            assert waiting is not None, f"{job_id} left the queue"
            if accept(waiting):
                return waiting
            version = await service.queue_moved(version)

    return await asyncio.wait_for(pull(), timeout_s)
