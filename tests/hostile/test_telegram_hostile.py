"""Hostile input through the real python-telegram-bot against the fake Bot API.

1,000 generated commands (``tests.hostile.inputs``, seeded), each in a chat of its own so that
every answer is attributed; then hostile button presses (callback data we never made, presses
without a message, a second Delete, someone else's Delete) and raw updates no handler is for.
Every command is answered by exactly one message, every press by exactly one callback answer,
the other updates by nothing; the fake refuses anything beyond Telegram's limits (4,096
characters of text, 1,024 of caption, answering a query twice…); no ERROR is logged and no log
line carries a whole user value; afterwards a normal ``/imagine`` still gets its image.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from backend.config import Config
from backend.service import Service
from tests.backend.engines import StepEngine
from tests.fakes.telegram_server import FakeTelegram, TgChat, TgUser
from tests.hostile.inputs import SEED, junk, telegram_command
from tests.telegram.harness import bot, telegram_config

COMMANDS = 1000
PRESSES = 200
USERS = [TgUser(5000 + i, f"User{i}", f"user{i}", ("en", "zh-hans", None)[i % 3]) for i in range(8)]
NORMAL = TgUser(4999, "Norma", "norma", "en")
LOG_LINE_MAX = 1200  # characters: a log line never carries a whole 4,096-character value


@pytest.fixture
def config(tmp_path: Path, api: FakeTelegram) -> Config:
    base = Config()
    limits = dataclasses.replace(
        base.limits,
        default_side=64,
        min_side=64,
        max_side=256,
        default_steps=2,
        per_user_hourly=2,  # a few images per user; the rest of the /imagines are refused
    )
    data = dataclasses.replace(base.storage, data_dir=tmp_path / "data")
    return telegram_config(dataclasses.replace(base, limits=limits, storage=data), api)


class Answers:
    """Counts, per chat, the messages the bot sent; kept up to date as calls arrive."""

    def __init__(self, api: FakeTelegram) -> None:
        self.api = api
        self.seen = 0
        self.messages: Counter[int] = Counter()
        self.callbacks: Counter[str] = Counter()

    def update(self) -> None:
        for call in self.api.calls[self.seen :]:
            if call.method == "sendMessage" and call.chat_id is not None:
                self.messages[call.chat_id] += 1
            elif call.method == "answerCallbackQuery":
                self.callbacks[str(call.params.get("callback_query_id"))] += 1
        self.seen = len(self.api.calls)

    async def until(self, chats: list[int], queries: list[str]) -> None:
        def done() -> bool | None:
            self.update()
            chats_ok = all(self.messages[chat] for chat in chats)
            return (chats_ok and all(self.callbacks[q] for q in queries)) or None

        await self.api.wait_until(done, timeout_s=120)


def _raw_updates(api: FakeTelegram, chat: TgChat) -> list[dict[str, Any]]:
    """Updates no handler is for (or that the bot must ignore): each answered by nothing."""
    user = USERS[0].to_dict()
    message = {"message_id": 1, "date": 0, "chat": chat.to_dict(), "from": user}
    command = [{"type": "bot_command", "offset": 0, "length": 8}]
    return [
        {"edited_message": {**message, "text": "/imagine a cat", "entities": command}},
        {
            "message": {
                **message,
                "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}],
            }
        },
        {"message": {**message, "text": "hello, bot"}},
        {
            "message": {
                **message,
                "text": "/imagine@other_bot a cat",
                "entities": [{"type": "bot_command", "offset": 0, "length": 18}],
            }
        },
        {"message": {**message, "text": "/unknown " + "x" * 4000, "entities": command}},
        {"channel_post": {**message, "text": "/imagine a cat"}},
    ]


def _press(api: FakeTelegram, data: Any, *, message: dict[str, Any] | None, user: TgUser) -> str:
    """A raw callback query (data of any kind, with or without a message); its id."""
    query_id = f"h{len(api.pressed)}"
    query: dict[str, Any] = {"id": query_id, "from": user.to_dict(), "chat_instance": "1"}
    if data is not None:
        query["data"] = data
    if message is not None:
        query["message"] = message
    else:
        query["inline_message_id"] = "inline-1"
    api.push_update({"callback_query": query})
    return query_id


def _hostile_data(rng: random.Random, job_ids: list[str]) -> Any:
    choices = [
        None,
        "",
        "d:",
        ":",
        "x:" + junk(rng, 60),
        junk(rng, 64),
        rng.choice("crvodg") + ":" + junk(rng, 62),
        "g:" + "a" * 200,  # longer than Telegram allows: a forged update
        rng.choice("crvodg") + ":" + rng.choice(job_ids or ["nojob"]),
    ]
    return rng.choice(choices)


async def test_telegram_answers_every_hostile_input_once(
    config: Config, api: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="majicbot")
    rng = random.Random(SEED)
    started = time.monotonic()
    answers = Answers(api)
    chats = (TgChat(-2000000 - i, "group", f"g{i}") for i in itertools.count())
    cases: list[tuple[int, str]] = []
    silent: list[int] = []
    queries: list[str] = []
    async with Service.open(config, lambda: [StepEngine()]) as service, bot(config, service):
        for index in range(COMMANDS):
            chat, text = next(chats), telegram_command(rng)
            api.user_sends(text, user=USERS[index % len(USERS)], chat=chat)
            cases.append((chat.id, text))
        await answers.until([chat for chat, _ in cases], [])
        print("commands answered", time.monotonic() - started)
        photos = [c for c in api.calls if c.method == "sendPhoto" and c.ok]
        job_ids = [str(c.params["caption"]).rsplit("#", 1)[1] for c in photos]
        targets = [api.message(c.chat_id or 0, c.result["message_id"]) for c in photos]
        for _ in range(PRESSES):
            message = rng.choice([*[t for t in targets if t], None])
            data = _hostile_data(rng, job_ids)
            queries.append(_press(api, data, message=message, user=rng.choice(USERS)))
        for photo in [t for t in targets if t][:5]:  # Delete twice, and by someone else
            owner = next(u for u in USERS if u.id == photo["reply_to_message"]["from"]["id"])
            delete = photo["reply_markup"]["inline_keyboard"][1][1]["callback_data"]
            stranger = next(u for u in USERS if u != owner)
            for user in (stranger, owner, owner):
                queries.append(api.press_button(photo, delete, user=user))
        for update in _raw_updates(api, quiet := next(chats)):
            api.push_update(update)
        silent.append(quiet.id)
        await answers.until([], queries)
        print("presses answered", time.monotonic() - started)
        api.user_sends("/imagine a normal red fox --seed 1", user=NORMAL)
        normal = await api.wait_for("sendPhoto", lambda c: c.chat_id == NORMAL.id)
    answers.update()
    wrong = [(n, text[:80]) for chat, text in cases if (n := answers.messages[chat]) != 1]
    assert wrong == [], f"{len(wrong)} commands not answered exactly once"
    assert [answers.messages[chat] for chat in silent] == [0]
    assert {q: answers.callbacks[q] for q in queries if answers.callbacks[q] != 1} == {}
    # The only refusals: deleting a photo already deleted (the bot answers "Already deleted.").
    refused = {(c.method, c.description) for c in api.rejected(status=None)}
    assert refused <= {("deleteMessage", "Bad Request: message to delete not found")}
    assert str(normal.params["caption"]).startswith("a normal red fox\nSeed 1 · 2 steps")
    errors = [r.getMessage()[:200] for r in caplog.records if _is_error_of_the_bot(r)]
    assert errors == []
    longest = max(caplog.records, key=lambda r: len(r.getMessage()))
    assert len(longest.getMessage()) < LOG_LINE_MAX, longest.getMessage()[:300]
    print(f"\ntelegram: {len(cases)} commands, {len(queries)} presses, "
          f"{len(_raw_updates(api, quiet))} raw updates; {len(photos)} images")  # fmt: skip


def _is_error_of_the_bot(record: logging.LogRecord) -> bool:
    """An ERROR record, not from the fake's own HTTP server (a poll cut short at stop)."""
    return record.levelno >= logging.ERROR and record.name != "aiohttp.server"
