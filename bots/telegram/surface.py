"""A job's place in a Telegram chat: its status message, and the photo that replaces it.

    status message ("Queued, position 3 …" + Cancel) ─▶ edits ─▶ photo replying to the command
                                                                 (status message deleted)
    failed / cancelled ─▶ the status message becomes the final sentence

Errors are classified here, once (see ``bots.follow.policy`` for what each class means).
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from telegram import Bot, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TimedOut,
)

from backend.domain import Delivery, Job, ReplyTarget
from bots.follow import FollowerTuning, Lane
from bots.follow.policy import Failure, SurfaceGone
from bots.render import render_caption
from bots.telegram.keyboards import cancel_keyboard, result_keyboard

log = logging.getLogger("majicbot.telegram")

PHOTO_MAX_BYTES = 10 * 1000 * 1000  # sendPhoto limit; larger results go as JPEG
# BadRequest descriptions that mean "the message this job lived in is gone".
_GONE = (
    "message to edit not found",
    "message to delete not found",
    "message can't be edited",
    "message_id_invalid",
)
_UNREACHABLE = ("chat not found", "have no rights", "not enough rights", "need administrator")


@dataclass(frozen=True)
class TelegramTuning:
    """Knobs of the Telegram adapter; the defaults follow Telegram's published flood limits."""

    edits_per_s: float = 12.0  # of ~30 messages/s overall: replies keep the rest
    flood_scale: float = 1.0  # tests run the flood limits faster, with a fast clock
    edit_interval_private_s: float = 2.0  # ~1 message/s per chat
    edit_interval_group_s: float = 6.0  # ~20 messages/min per group
    upload_read_base_s: float = 20.0  # an upload's answer may take this long, plus its size
    upload_bytes_per_s: float = 256 * 1024
    poll_timeout_s: float = 10.0
    connect_attempts: int = 5  # getMe at start, for network errors
    connect_backoff_s: float = 1.0  # doubled after each failed attempt
    follow: FollowerTuning = field(default_factory=FollowerTuning)

    def lane(self, chat_id: str) -> Lane:
        """Status edits in one chat, spaced for a private chat or a group."""
        group = chat_id.startswith(("-", "@"))  # group and channel ids are negative
        return Lane(chat_id, self.edit_interval_group_s if group else self.edit_interval_private_s)

    def upload_timeout_s(self, size_bytes: int) -> float:
        return self.upload_read_base_s + size_bytes / self.upload_bytes_per_s


class UploadUnanswered(Exception):
    """The upload was sent whole but its answer never came: it may well have arrived."""


class TelegramSurface:
    """One job's status message and result in one chat."""

    def __init__(
        self, bot: Bot, job_id: str, job_reply: ReplyTarget, lang: str, tuning: TelegramTuning
    ) -> None:
        self._bot = bot
        self._job_id = job_id
        self._chat_id = job_reply.chat_id
        self._status_id = int(job_reply.message_id) if job_reply.message_id else None
        self._command_id = command_message_id(job_reply)
        self._tuning = tuning
        self.lang = lang
        self.lane = tuning.lane(self._chat_id)

    async def show(self, text: str, *, cancellable: bool) -> None:
        if self._status_id is None:
            raise SurfaceGone("no status message")
        markup = cancel_keyboard(self._job_id, self.lang) if cancellable else None
        try:
            await self._bot.edit_message_text(
                text, chat_id=self._chat_id, message_id=self._status_id, reply_markup=markup
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                raise

    async def keep_alive(self) -> None:
        await self._bot.send_chat_action(self._chat_id, ChatAction.UPLOAD_PHOTO)

    async def send_result(self, job: Job, *, anew: bool) -> str:
        message = await send_photo(
            self._bot, job, self._chat_id, self.lang, self._command_id, self._tuning
        )
        return str(message.message_id)

    async def send_final(self, text: str, *, anew: bool) -> None:
        if anew or self._status_id is None:
            await self._bot.send_message(
                self._chat_id, text, reply_parameters=reply_to(self._command_id)
            )
            return
        await self._bot.edit_message_text(
            text, chat_id=self._chat_id, message_id=self._status_id, reply_markup=None
        )

    def classify(self, error: Exception) -> Failure:
        return classify(error)

    async def remove_status(self) -> None:
        if self._status_id is not None:
            await self._bot.delete_message(self._chat_id, self._status_id)


async def send_photo(
    bot: Bot, job: Job, chat_id: str, lang: str, reply_to_id: int | None, tuning: TelegramTuning
) -> Message:
    """A finished job's image with caption and buttons (also used by /history's buttons).

    The answer may take as long as the upload's size warrants; an answer that never comes
    raises ``UploadUnanswered`` (the photo may be in the chat: never send it blindly again).
    """
    photo = await asyncio.to_thread(photo_bytes, _path(job))
    try:
        message = await bot.send_photo(
            chat_id,
            photo,
            caption=render_caption(job, lang),
            reply_markup=result_keyboard(job.id, lang),
            reply_parameters=reply_to(reply_to_id),
            filename=f"{job.id}.png",
            has_spoiler=job.delivery is Delivery.SPOILER,  # issue 16
            read_timeout=tuning.upload_timeout_s(len(photo)),
        )
    except TimedOut as exc:
        if isinstance(exc.__cause__, httpx.ReadTimeout):
            raise UploadUnanswered(str(exc)) from exc
        raise
    log.info("job %s sent as message %s in %s", job.id, message.message_id, chat_id)
    return message


def classify(error: Exception) -> Failure:
    """What a python-telegram-bot error means for a delivery."""
    if isinstance(error, UploadUnanswered):
        return Failure.UNCERTAIN
    if isinstance(error, Forbidden | ChatMigrated):
        return Failure.UNREACHABLE
    if isinstance(error, BadRequest):
        message = error.message.lower()
        if any(part in message for part in _GONE):
            return Failure.GONE
        if any(part in message for part in _UNREACHABLE):
            return Failure.UNREACHABLE
        return Failure.REJECTED
    if isinstance(error, RetryAfter | NetworkError | OSError):  # TimedOut is a NetworkError
        return Failure.TRANSIENT
    return Failure.REJECTED


def reply_to(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


def command_message_id(target: ReplyTarget) -> int | None:
    """The user's command message, kept in the reply target's adapter token."""
    return int(target.token) if target.token and target.token.isdigit() else None


def _path(job: Job) -> Path:
    assert job.result_path is not None  # the follower sends results of succeeded jobs only
    return job.result_path


def photo_bytes(path: Path) -> bytes:
    """The file's bytes, or a JPEG re-encoding when the PNG is over the sendPhoto limit."""
    data = path.read_bytes()
    if len(data) <= PHOTO_MAX_BYTES:
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=92)
    return out.getvalue()
