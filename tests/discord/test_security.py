"""Admin scope and forged custom ids, through simcord: two guilds, a real discord.py client.

Mallory owns guild B (so she holds Manage Server there) and is a plain member of guild A, where
Alice draws. Nothing she does from B reaches A's jobs or users, and a custom id naming Alice's
job on a message of her own is refused with a sentence, changing nothing (discord.py drops a
click whose custom id is not on the message; the client answers it; the service would refuse it
too — ``tests/backend/test_privacy.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import simcord
from simcord.actors import _component_interaction, _visible_message

from backend.config import Config
from backend.domain import JobStatus, Platform, Requester
from backend.errors import AccessDenied, LimitReached
from backend.service import Service
from bots.discord.client import MajicClient
from bots.discord.errors import unwrap
from tests.discord.harness import EngineGate, fast_client, idle, open_service, response_of
from tests.discord.test_simcord import job_id_of

GUILD_A = 1_234_567_890_123_456_789  # pinned: the config names it before simcord starts


@dataclass
class TwoGuilds:
    env: simcord.Env
    client: MajicClient
    art: simcord.ChannelHandle  # guild A
    den: simcord.ChannelHandle  # guild B
    alice: simcord.MemberActor  # in A
    mallory_in_a: simcord.MemberActor  # a plain member of A
    mallory_in_b: simcord.MemberActor  # the owner of B


@asynccontextmanager
async def two_guilds(config: Config, service: Service) -> AsyncIterator[TwoGuilds]:
    client = fast_client(config, service)
    async with simcord.run(client) as env:
        mallory = env.create_user("mallory")
        guild_a = env.create_guild("A", id=GUILD_A)
        guild_b = env.create_guild("B", owner=mallory)
        art, den = guild_a.create_text_channel("art"), guild_b.create_text_channel("den")
        alice = guild_a.add_member(env.create_user("alice"))
        mallory_in_a = guild_a.add_member(mallory)
        mallory_in_b = guild_b.add_member(mallory)
        async with client.jobs.followers.running():
            yield TwoGuilds(env, client, art, den, alice, mallory_in_a, mallory_in_b)


async def forged_click(
    actor: simcord.MemberActor, message: Any, custom_id: str
) -> simcord.InteractionResult:
    """A component interaction with any ``custom_id``, from ``message`` (what a modified client
    can send: Discord fills in the message and the user, the client the custom id)."""
    stored = _visible_message(actor, message)
    data = {"custom_id": custom_id, "component_type": 2}
    return await _component_interaction(actor, stored, data)


def sentence(result: simcord.InteractionResult) -> tuple[bool, str | None]:
    return result.ephemeral, response_of(result).content


def scoped(config: Config, **discord: Any) -> Config:
    return dataclasses.replace(config, discord=dataclasses.replace(config.discord, **discord))


async def test_the_owner_of_an_unlisted_guild_can_do_nothing(tiny_config: Config) -> None:
    config = scoped(tiny_config, allowed_guilds=(str(GUILD_A),))
    async with (
        open_service(config, EngineGate(config)) as service,
        two_guilds(config, service) as world,
    ):
        drawn = await world.alice.slash(world.art, "imagine", prompt="a teapot")
        await idle(world.client)
        alice_job = job_id_of(response_of(drawn))
        mallory = world.mallory_in_b
        replies = {
            "imagine": await mallory.slash(world.den, "imagine", prompt="a kettle"),
            "status": await mallory.slash(world.den, "status"),
            "ban": await mallory.slash(world.den, "ban", user=world.alice.user),
            "cancel": await mallory.slash(world.den, "cancel", job=alice_job),
            "history": await mallory.slash(world.den, "history"),
        }
        again = await world.alice.slash(world.art, "imagine", prompt="a cup --seed 2")
        await idle(world.client)
        alice = Requester(Platform.DISCORD, str(world.alice.id))
        alice_jobs = await service.history(alice)
        mallory_jobs = await service.history(Requester(Platform.DISCORD, str(mallory.id)))

    # The command tree's check refuses B before any command runs: status and ban included.
    assert {name: sentence(reply) for name, reply in replies.items()} == dict.fromkeys(
        replies, (True, "Sorry, this bot is not available here.")
    )
    assert [(j.params.prompt, j.status) for j in alice_jobs] == [
        ("a cup", JobStatus.SUCCEEDED),  # Alice was not banned
        ("a teapot", JobStatus.SUCCEEDED),
    ]
    assert response_of(again).embeds and mallory_jobs == []


async def test_a_guild_owner_acts_on_nothing_of_another_guild_and_keeps_her_caps(
    tiny_config: Config,
) -> None:
    config = dataclasses.replace(
        tiny_config, limits=dataclasses.replace(tiny_config.limits, per_user_queue=2)
    )
    engines = EngineGate(config, opened=False)
    async with open_service(config, engines) as service, two_guilds(config, service) as world:
        waiting = await world.alice.slash(world.art, "imagine", prompt="a teapot")
        alice_job = job_id_of(response_of(waiting))
        mallory, in_a = world.mallory_in_b, world.mallory_in_a
        mine = [await mallory.slash(world.den, "imagine", prompt=f"a kettle {i}") for i in (1, 2)]
        over_cap = await mallory.slash(world.den, "imagine", prompt="a kettle 3")
        my_status = response_of(mine[0])
        refused = {
            "/cancel from B": await mallory.slash(world.den, "cancel", job=alice_job),
            "/cancel from A": await in_a.slash(world.art, "cancel", job=alice_job),
            "cancel on A's status": await in_a.click(
                response_of(waiting), custom_id=f"mj:cancel:{alice_job}"
            ),
            "forged cancel": await forged_click(mallory, my_status, f"mj:cancel:{alice_job}"),
        }
        still_queued = service.waiting(alice_job) is not None
        engines.open()
        await idle(world.client)
        mine_done = response_of(mine[0])
        alice_done = response_of(waiting)
        for action in ("delete", "reroll", "vary", "get"):
            custom_id = f"mj:{action}:{alice_job}"
            refused[f"forged {action}"] = await forged_click(mallory, mine_done, custom_id)
        refused["delete on A's image"] = await in_a.click(
            alice_done, custom_id=f"mj:delete:{alice_job}"
        )
        await idle(world.client)
        alice_job_after = await service.job(alice_job)
        mallory_jobs = await service.history(Requester(Platform.DISCORD, str(mallory.id)))
        art_messages = {m.id for m in world.art.history()}
        errors = {type(unwrap(e)) for e in world.env.errors}  # reading them acknowledges them

    assert errors == {AccessDenied, LimitReached}
    assert sentence(over_cap) == (
        True,
        "You already have 2 jobs waiting or running. Wait for one to finish.",
    )
    wrong = (True, "This button no longer works.")  # discord.py drops it; the client answers
    not_yours = (True, f"Job #{alice_job} is not yours.")
    assert {name: sentence(reply) for name, reply in refused.items()} == {
        "/cancel from B": not_yours,
        "/cancel from A": not_yours,
        "cancel on A's status": not_yours,
        "forged cancel": wrong,
        "forged delete": wrong,
        "forged reroll": wrong,
        "forged vary": wrong,
        "forged get": wrong,
        "delete on A's image": not_yours,
    }
    assert still_queued
    assert (alice_job_after.status, alice_job_after.params.prompt) == (
        JobStatus.SUCCEEDED,
        "a teapot",
    )
    assert alice_job_after.result_path is not None and alice_job_after.result_path.exists()
    assert alice_done.id in art_messages
    assert sorted(j.params.prompt for j in mallory_jobs) == ["a kettle 1", "a kettle 2"]
