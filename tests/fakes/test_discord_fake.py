"""The real-transport Discord fake through the real discord.py: rules enforced, faults injected.

A bare ``discord.Client`` hands each interaction to the test, which answers it through
discord.py's own ``InteractionResponse``/webhook code, so every request crosses real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import discord
import pytest

from tests.fakes.discord_server import (
    CHANNEL_ID,
    DEFERRED_UPDATE,
    EPHEMERAL,
    FakeDiscord,
    pointed_at,
)

WAIT_S = 10.0


class Bot(discord.Client):
    """Queues every interaction for the test to answer."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents(guilds=True))
        self.received: asyncio.Queue[discord.Interaction] = asyncio.Queue()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.received.put(interaction)

    async def next(self) -> discord.Interaction:
        return await asyncio.wait_for(self.received.get(), WAIT_S)


@asynccontextmanager
async def connected(fake: FakeDiscord) -> AsyncIterator[Bot]:
    """A client logged in and connected to ``fake`` over HTTP and a websocket."""
    async with fake.serving():
        with pointed_at(fake):
            bot = Bot()
            task = asyncio.create_task(bot.start("fake-token"))
            try:
                await asyncio.wait_for(fake.identified.wait(), WAIT_S)
                yield bot
            finally:
                await bot.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def clocked() -> tuple[FakeDiscord, list[float]]:
    """A fake on a hand-moved clock (so the 3 s window needs no real waiting)."""
    now = [0.0]
    return FakeDiscord(clock=lambda: now[0]), now


async def test_defer_edit_with_file_and_followup_are_recorded() -> None:
    fake = FakeDiscord()
    async with connected(fake) as bot:
        interaction = await fake.interact(fake.slash("imagine", {"prompt": "a cat", "seed": 3}))
        received = await bot.next()
        assert [(o["name"], o["type"]) for o in received.data["options"]] == [  # type: ignore[index, typeddict-item]
            ("prompt", 3),
            ("seed", 4),
        ]
        await received.response.defer(thinking=True)
        assert interaction.original is not None and interaction.original["flags"] == 128
        png = discord.File(io.BytesIO(b"\x89PNG" + b"0" * 96), "cat.png")
        mentions = discord.AllowedMentions.none()
        await received.edit_original_response(
            content="done <@1>", attachments=[png], allowed_mentions=mentions
        )
        note = await received.followup.send("private note", ephemeral=True, wait=True)
        await received.channel.send("in the channel")  # type: ignore[union-attr]
    callback, edit, followup, post = fake.calls_to("*", "/[iwc]*")
    assert callback.body == {"type": 5}
    assert (edit.method, edit.content, edit.attachments) == (
        "PATCH",
        "done <@1>",
        [("cat.png", 100)],
    )
    assert edit.allowed_mentions == {"parse": []}
    assert followup.ephemeral and note.flags.ephemeral
    assert post.path == f"/channels/{CHANNEL_ID}/messages" and post.content == "in the channel"
    visible = fake.channel_messages(CHANNEL_ID)
    assert [(m["content"], m["flags"]) for m in visible] == [
        ("done <@1>", 0),
        ("in the channel", 0),
    ]
    assert visible[0]["attachments"][0]["size"] == 100
    assert fake.rejected() == []


async def test_first_followup_after_thinking_replaces_the_loading_message() -> None:
    fake = FakeDiscord()
    async with connected(fake) as bot:
        interaction = await fake.interact(fake.slash("imagine", {"prompt": "a"}))
        received = await bot.next()
        await received.response.defer(thinking=True)
        first = await received.followup.send("result", wait=True)
        second = await received.followup.send("more", wait=True)
    assert interaction.original is not None and first.id == int(interaction.original["id"])
    assert interaction.original["flags"] == 0 and second.id != first.id
    assert [m["content"] for m in fake.channel_messages(CHANNEL_ID)] == ["result", "more"]


async def test_length_limits_answer_400_50035() -> None:
    fake = FakeDiscord()
    async with connected(fake) as bot:
        await fake.interact(fake.slash("imagine", {"prompt": "a"}))
        received = await bot.next()
        with pytest.raises(discord.HTTPException) as too_long:
            await received.response.send_message("x" * 2001)
        await received.response.send_message("x" * 2000)  # a refused callback does not count
        long_embed = discord.Embed(description="d" * 4097)
        with pytest.raises(discord.HTTPException) as embed:
            await received.edit_original_response(embed=long_embed)
        with pytest.raises(discord.HTTPException) as post:
            await received.channel.send("y" * 2001)  # type: ignore[union-attr]
        with pytest.raises(discord.HTTPException) as custom_id:
            view = discord.ui.View()
            view.add_item(discord.ui.Button(label="go", custom_id="c" * 101))
            await received.followup.send("ok", view=view)
    for caught in (too_long, embed, post, custom_id):
        assert (caught.value.status, caught.value.code) == (400, 50035)
    assert "content" in too_long.value.text and "embeds.0.description" in embed.value.text
    assert len(fake.rejected()) == 4


async def test_initial_response_window_and_double_acknowledgement() -> None:
    fake, now = clocked()
    fake.initial_response_s = 0.5
    async with connected(fake) as bot:
        await fake.interact(fake.slash("imagine", {"prompt": "late"}))
        late = await bot.next()
        now[0] += 0.6
        with pytest.raises(discord.NotFound) as expired:
            await late.response.defer(thinking=True)
        assert expired.value.code == 10062 and expired.value.text == "Unknown interaction"
        payload = fake.slash("imagine", {"prompt": "twice"})
        await fake.interact(payload)
        await fake.dispatch("INTERACTION_CREATE", payload)  # the gateway replays the event
        first, replay = await bot.next(), await bot.next()
        await first.response.defer()
        with pytest.raises(discord.HTTPException) as twice:
            await replay.response.send_message("again")
        assert (twice.value.status, twice.value.code) == (400, 40060)


async def test_expired_token_deleted_original_and_forbidden_channel() -> None:
    fake = FakeDiscord()
    async with connected(fake) as bot:
        first = await fake.interact(fake.slash("imagine", {"prompt": "a"}))
        received = await bot.next()
        await received.response.defer(thinking=True)
        fake.expire_token(first)
        with pytest.raises(discord.HTTPException) as expired:
            await received.edit_original_response(content="done")
        with pytest.raises(discord.HTTPException):
            await received.followup.send("done")
        second = await fake.interact(fake.slash("imagine", {"prompt": "b"}))
        other = await bot.next()
        await other.response.defer(thinking=True)
        fake.delete_original(second)
        with pytest.raises(discord.NotFound) as gone:
            await other.edit_original_response(content="done")
        fake.forbid_channel(CHANNEL_ID)
        with pytest.raises(discord.Forbidden) as forbidden:
            await other.channel.send("fallback")  # type: ignore[union-attr]
    assert (expired.value.status, expired.value.code, expired.value.text) == (
        401,
        50027,
        "Invalid Webhook Token",
    )
    assert (gone.value.code, gone.value.text) == (10015, "Unknown Webhook")
    assert (forbidden.value.code, forbidden.value.text) == (50013, "Missing Permissions")


async def test_token_lifetime_runs_out_on_the_clock() -> None:
    fake, now = clocked()
    async with connected(fake) as bot:
        await fake.interact(fake.slash("imagine", {"prompt": "a"}))
        received = await bot.next()
        await received.response.defer(thinking=True)
        now[0] += 15 * 60 + 1
        with pytest.raises(discord.HTTPException) as expired:
            await received.edit_original_response(content="done at last")
    assert (expired.value.status, expired.value.code) == (401, 50027)


async def test_injected_errors_rate_limits_and_delays() -> None:
    fake = FakeDiscord()
    async with connected(fake) as bot:
        await fake.interact(fake.slash("imagine", {"prompt": "a"}))
        received = await bot.next()
        await received.response.defer(thinking=True)
        fake.rate_limit("PATCH", "/webhooks/*/@original", 0.05)
        await received.edit_original_response(content="after a 429")  # discord.py waits, retries
        fake.fail("POST", "/channels/*/messages", 500, times=None)
        fake.fail("PATCH", "/webhooks/*", 403, 50001, "Missing Access")
        with pytest.raises(discord.Forbidden) as denied:
            await received.edit_original_response(content="no")
        assert (denied.value.code, denied.value.text) == (50001, "Missing Access")
        fake.clear_faults()
        fake.delay("PATCH", "/webhooks/*/@original", 0.1)
        edit = asyncio.create_task(received.edit_original_response(content="slow"))
        slow = await fake.wait_for("PATCH", "*/@original", lambda c: c.content == "slow")
        assert slow.answered_at is None  # recorded (and applied) before the answer
        await edit
    limited, retried = fake.calls_to("PATCH", "*/@original")[:2]
    assert (limited.status, limited.fault, retried.status) == (429, "rate_limit", 200)
    assert slow.answered_at is not None and slow.answered_at - slow.received_at >= 0.1
    assert fake.channel_messages(CHANNEL_ID)[0]["content"] == "slow"


async def test_button_click_and_raw_payloads() -> None:
    fake = FakeDiscord()
    async with connected(fake) as bot:
        message = await bot.get_partial_messageable(int(CHANNEL_ID)).send("pick one")
        click = await fake.interact(fake.click("reroll:abc"))
        pressed = await bot.next()
        assert pressed.data == {"custom_id": "reroll:abc", "component_type": 2}
        assert pressed.message is not None and pressed.message.id == message.id
        await pressed.response.defer()  # component: DEFERRED_UPDATE_MESSAGE
        await pressed.edit_original_response(content="picked")
        assert click.callback_type == DEFERRED_UPDATE
        assert fake.channel_messages(CHANNEL_ID)[0]["content"] == "picked"
        wrong = fake.slash("imagine", [{"name": "seed", "type": 4, "value": "not a number"}])
        await fake.interact(wrong)
        typed_wrong = await bot.next()
        await typed_wrong.response.send_message("refused", ephemeral=True)
        await fake.dispatch("INTERACTION_CREATE", {"type": 2, "data": None})  # no id, no token
        assert len(fake.interactions) == 2
    (refusal,) = fake.calls_to("POST", "/interactions/*")[1:]
    assert refusal.message["flags"] & EPHEMERAL
