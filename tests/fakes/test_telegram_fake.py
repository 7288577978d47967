"""The fake Bot API through the real python-telegram-bot: each rule enforced, each fault works."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from tests.fakes import telegram_rules as rules
from tests.fakes.telegram_rules import FloodLimits, Rate
from tests.fakes.telegram_server import FakeTelegram, TgChat, TgUser

ALICE = TgUser(1001, "Alice", "alice")
GROUP = TgChat(-100123, "supergroup", "Painters")


def png(width: int = 4, height: int = 3) -> bytes:
    """A valid tiny PNG (the fake reads its size from the header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + ihdr


def keyboard(data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data=data)]])


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(api.token, base_url=api.base_url) as real_bot:
        yield real_bot


async def refused(api: FakeTelegram, call: object, description: str) -> None:
    """The last call was refused with 400 and exactly Telegram's ``description``."""
    last = api.calls[-1]
    assert (last.ok, last.error_code, last.description) == (False, 400, description), call


# ---- rules -------------------------------------------------------------------------------------


async def test_text_limits(api: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(ALICE.id, "x" * 4096)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE.id, "x" * 4097)
    await refused(api, "4097", rules.TOO_LONG)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(ALICE.id, " \n")
    await refused(api, "blank", rules.TEXT_EMPTY)
    with pytest.raises(BadRequest):  # HTML tags do not count, the text they wrap does
        await bot.send_message(ALICE.id, "<b>" + "y" * 4097 + "</b>", parse_mode="HTML")
    await bot.send_message(ALICE.id, "<b>" + "y" * 4000 + "</b>", parse_mode="HTML")


async def test_caption_limit_on_photos_and_documents(api: FakeTelegram, bot: Bot) -> None:
    await bot.send_photo(ALICE.id, png(), caption="c" * 1024)
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_photo(ALICE.id, png(), caption="c" * 1025)
    await refused(api, "photo", rules.CAPTION_TOO_LONG)
    with pytest.raises(BadRequest):
        await bot.send_document(ALICE.id, png(), filename="a.png", caption="c" * 1025)
    with pytest.raises(BadRequest, match="Photo_invalid_dimensions"):
        await bot.send_photo(ALICE.id, png(6000, 4001))
    assert len(api.photos_sent_to(ALICE.id)) == 1


async def test_edits_not_modified_gone_and_others(api: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(ALICE.id, "queued", reply_markup=keyboard("c:1"))
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text(
            "queued", ALICE.id, sent.message_id, reply_markup=keyboard("c:1")
        )
    await refused(api, "same", rules.NOT_MODIFIED)
    # Same text without the keyboard removes the keyboard: a real change.
    await bot.edit_message_text("queued", ALICE.id, sent.message_id)
    assert "reply_markup" not in (api.message(ALICE.id, sent.message_id) or {})
    await bot.delete_message(ALICE.id, sent.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("later", ALICE.id, sent.message_id)
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(ALICE.id, sent.message_id)
    await refused(api, "delete twice", rules.DELETE_NOT_FOUND)
    user_message = api.user_sends("hi", user=ALICE)
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("hacked", ALICE.id, user_message["message_id"])
    photo = await bot.send_photo(ALICE.id, png(), caption="seed 1")
    with pytest.raises(BadRequest, match="There is no text in the message to edit"):
        await bot.edit_message_text("text", ALICE.id, photo.message_id)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_caption(ALICE.id, photo.message_id, caption="seed 1")
    await bot.edit_message_caption(ALICE.id, photo.message_id, caption="seed 2")
    assert [c.text for c in api.edits_of(ALICE.id, sent.message_id, ok=None)] == [
        "queued",
        "queued",
        "later",
    ]
    assert [c.ok for c in api.edits_of(ALICE.id, sent.message_id, ok=None)] == [False, True, False]


async def test_callback_data_and_button_rules(api: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(ALICE.id, "ok", reply_markup=keyboard("r:" + "a" * 62))
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(ALICE.id, "long", reply_markup=keyboard("r:" + "é" * 32))
    await refused(api, "65 bytes", rules.BUTTON_DATA_INVALID)
    sent = await bot.send_message(ALICE.id, "x")
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.edit_message_reply_markup(
            ALICE.id, sent.message_id, reply_markup=keyboard("é" * 33)
        )
    assert api.visible_messages(ALICE.id)[-1]["text"] == "x"


async def test_callback_queries_are_answered_once(api: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(ALICE.id, "pick", reply_markup=keyboard("r:1"))
    message = api.message(ALICE.id, sent.message_id)
    assert message is not None
    query_id = api.press_button(message, "r:1", user=ALICE)
    await bot.answer_callback_query(query_id, "Sending…")
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query_id)
    await refused(api, "twice", rules.QUERY_INVALID)
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("424242")
    assert api.rejected() == api.calls[-2:]


async def test_late_callback_answer_is_refused_with_a_window() -> None:
    now = [100.0]
    api = FakeTelegram(clock=lambda: now[0], callback_answer_window_s=15.0)
    async with api, Bot(api.token, base_url=api.base_url) as bot:
        message = {"message_id": 1, "chat": {"id": ALICE.id, "type": "private"}, "date": 0}
        query_id = api.press_button(message, "r:1", user=ALICE)
        now[0] += 15.5
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query(query_id)


# ---- faults ------------------------------------------------------------------------------------


async def test_fail_answers_the_chosen_error_then_recovers(api: FakeTelegram, bot: Bot) -> None:
    api.fail("sendMessage", 403)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(ALICE.id, "a")
    api.fail("sendMessage", 429, retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(ALICE.id, "a")
    assert caught.value.retry_after.total_seconds() == 7  # type: ignore[union-attr]
    api.fail("sendPhoto", 502, times=2)
    for _ in range(2):
        with pytest.raises(NetworkError):
            await bot.send_photo(ALICE.id, png())
    api.fail("sendMessage", 400, "Bad Request: chat not found", where=lambda c: c.chat_id == 5)
    await bot.send_message(ALICE.id, "not chat 5")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(5, "a")
    await bot.send_photo(ALICE.id, png())
    assert [(c.method, c.error_code, c.fault) for c in api.calls if not c.ok] == [
        ("sendMessage", 403, "fail"),
        ("sendMessage", 429, "fail"),
        ("sendPhoto", 502, "fail"),
        ("sendPhoto", 502, "fail"),
        ("sendMessage", 400, "fail"),
    ]
    assert api.rejected(status=None) == []  # injected faults are not rule breaks
    assert len(api.visible_messages(ALICE.id)) == 2


async def test_delay_records_the_photo_before_a_late_answer(api: FakeTelegram, bot: Bot) -> None:
    api.delay("sendPhoto", 0.15)
    with pytest.raises(TimedOut):
        await bot.send_photo(ALICE.id, png(), read_timeout=0.03)
    photo = await api.wait_for("sendPhoto", timeout_s=2)  # the server has it: the bot timed out
    assert api.photos_sent_to(ALICE.id) == [photo]
    assert photo.ok and photo.answered_at is None and photo.fault == "delay"
    assert len(photo.file().data) == len(png())
    answered = await api.wait_until(lambda: photo.answered_at, timeout_s=2)
    assert 0.15 <= answered - photo.received_at < 1.0
    assert len(api.visible_messages(ALICE.id)) == 1


async def test_delay_not_applied_and_drop(api: FakeTelegram, bot: Bot) -> None:
    api.delay("sendMessage", 0.05, applied=False)
    with pytest.raises(NetworkError):
        await bot.send_message(ALICE.id, "lost")
    api.drop("sendPhoto")
    with pytest.raises(NetworkError):
        await bot.send_photo(ALICE.id, png())
    (dropped,) = api.photos_sent_to(ALICE.id)
    assert dropped.fault == "drop" and dropped.answered_at is None
    assert [m.get("text") for m in api.visible_messages(ALICE.id)] == [None]  # the photo only


async def test_block_answers_403_for_sends_and_edits(api: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(GROUP.id, "hello")
    api.block(ALICE.id)
    api.block(GROUP.id)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await bot.send_photo(ALICE.id, png())
    with pytest.raises(Forbidden, match="kicked from the group chat"):
        await bot.edit_message_text("x", GROUP.id, sent.message_id)
    api.unblock(ALICE.id)
    await bot.send_message(ALICE.id, "back")


async def test_flood_accounting_and_enforcement() -> None:
    now = [0.0]
    api = FakeTelegram(clock=lambda: now[0])
    async with api, Bot(api.token, base_url=api.base_url) as bot:
        for _ in range(3):
            await bot.send_message(GROUP.id, "burst")  # three at t=0: over 1/s
        assert api.max_calls_in_window(1.0, chat_id=GROUP.id) == 3
        assert api.flood_violations() == ["chat -100123: 3 in 1.0 s (limit 1)"]
        api.enforce_flood_limits = True
        with pytest.raises(RetryAfter):
            await bot.send_message(GROUP.id, "too soon")
        assert api.calls[-1].retry_after == 1 and api.calls[-1].fault == "flood"
        now[0] = 1.0
        await bot.send_message(GROUP.id, "one per second is fine")
        api.flood_limits = FloodLimits(per_chat=Rate(100, 1.0), per_group=Rate(4, 60.0))
        now[0] = 2.0
        with pytest.raises(RetryAfter) as caught:  # 4 in the last minute already
            await bot.send_message(GROUP.id, "the fifth this minute")
        assert caught.value.retry_after.total_seconds() == 58  # type: ignore[union-attr]
        await bot.send_chat_action(GROUP.id, "typing")  # chat actions are not counted


# ---- updates -----------------------------------------------------------------------------------


async def test_redelivery_and_raw_updates(api: FakeTelegram, bot: Bot) -> None:
    api.user_sends("/imagine a cat", user=ALICE)
    (first,) = await bot.get_updates(timeout=1)
    assert await bot.get_updates(offset=first.update_id + 1) == ()  # confirmed
    api.redeliver(first.update_id)  # a restarted bot sees it again, same id
    (again,) = await bot.get_updates(offset=first.update_id + 1, timeout=1)
    assert again.update_id == first.update_id and again.message is not None
    assert again.message.text == "/imagine a cat"
    raw = api.push_update(
        {
            "message": {
                "message_id": 9,
                "date": 0,
                "chat": {"id": 1, "type": "private"},
                "text": "\x00",
            }
        }
    )
    (hostile,) = await bot.get_updates(offset=again.update_id + 1, timeout=1)
    assert hostile.update_id == raw["update_id"] == 2
    assert hostile.message is not None and hostile.message.text == "\x00"
    button = api.push_update(
        {
            "callback_query": {
                "id": "q1",
                "from": ALICE.to_dict(),
                "chat_instance": "1",
                "data": "x" * 500,
            }
        }
    )
    assert button["callback_query"]["id"] in api.pressed
    await bot.answer_callback_query("q1")
