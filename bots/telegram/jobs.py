"""The life of one job in a Telegram chat: status message, throttled edits, chat action, delivery.

    /imagine ─▶ status message ("…") ─▶ Service.submit ─▶ follow(job):
        Queued/Started/Progress ─▶ edit the status message (throttled, never unchanged) + Cancel
        Started..end            ─▶ "upload_photo" chat action every ~4 s
        Succeeded               ─▶ photo + caption + buttons, status message deleted
        Failed / Cancelled      ─▶ the status message becomes the final sentence
        ─▶ Service.mark_delivered

A delivery that fails stays undelivered in SQLite; ``retry_loop`` tries again with backoff, also
after a restart (``reattach`` picks up the jobs still queued or running).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from backend.config import Config
from backend.domain import (
    TERMINAL_EVENTS,
    Job,
    JobStatus,
    Platform,
    Progress,
    ReplyTarget,
    Started,
    Submission,
)
from backend.errors import UserError
from backend.service import Service
from bots.i18n import pick_language, translate
from bots.render import render_caption, render_event
from bots.telegram.keyboards import cancel_keyboard, result_keyboard

log = logging.getLogger("majicbot.telegram")

T = TypeVar("T")
PHOTO_MAX_BYTES = 10 * 1000 * 1000  # sendPhoto limit; larger results go as JPEG


@dataclass(frozen=True)
class TelegramTuning:
    """Timing knobs of the adapter; the defaults follow Telegram's flood limits."""

    edit_interval_private_s: float = 2.0
    edit_interval_group_s: float = 4.0
    chat_action_interval_s: float = 4.0  # an action shows for at most 5 s
    delivery_retry_s: float = 30.0  # how often undelivered results are looked for
    delivery_backoff_max_s: float = 600.0
    send_attempts: int = 3  # per send, for timeouts and network errors
    send_backoff_s: float = 1.0
    poll_timeout_s: float = 10.0
    connect_attempts: int = 5  # getMe at start, for network errors
    connect_backoff_s: float = 1.0  # doubled after each failed attempt


class TaskSet:
    """Background tasks of the adapter: kept referenced, failures logged, all cancelled at stop.

    Not a ``TaskGroup``: one failing watcher must not cancel the host that runs the adapter.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def is_group(chat_id: str | int) -> bool:
    """Telegram group and channel ids are negative."""
    return int(chat_id) < 0


async def with_retries(send: Callable[[], Awaitable[T]], tuning: TelegramTuning) -> T:
    """Run ``send`` again after timeouts, network errors and 429s, with exponential backoff."""
    for attempt in range(tuning.send_attempts - 1):
        try:
            return await send()
        except RetryAfter as exc:  # AIORateLimiter already waited; this is one more round
            delay = _seconds(exc.retry_after)
        except (BadRequest, Forbidden):
            raise
        except NetworkError as exc:  # includes TimedOut
            delay = tuning.send_backoff_s * 2**attempt
            log.info("send failed (%s); retrying in %.1f s", exc, delay)
        await asyncio.sleep(delay)
    return await send()


def _seconds(value: object) -> float:
    total = getattr(value, "total_seconds", None)
    return float(total()) if callable(total) else float(value)  # type: ignore[arg-type]


class ThrottledEditor:
    """Edits one status message: at most one edit per interval, never an unchanged one."""

    def __init__(self, bot: Bot, chat_id: str, message_id: int, interval_s: float) -> None:
        self._bot, self._chat_id, self._message_id = bot, chat_id, message_id
        self._interval_s = interval_s
        self._wanted: tuple[str, InlineKeyboardMarkup | None] | None = None
        self._shown: tuple[str, InlineKeyboardMarkup | None] | None = None
        self._changed = asyncio.Event()
        self._last_edit = -math.inf

    def want(self, text: str, markup: InlineKeyboardMarkup | None) -> None:
        """Ask for ``text``; the edit happens as soon as the throttle allows."""
        self._wanted = (text, markup)
        self._changed.set()

    async def run(self) -> None:
        """Apply wanted texts until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            delay = self._last_edit + self._interval_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the throttle itself, not a wait for a condition
            self._changed.clear()
            wanted = self._wanted
            if wanted is None or wanted == self._shown:
                continue
            await self._edit(*wanted)
            self._shown = wanted
            self._last_edit = loop.time()

    async def _edit(self, text: str, markup: InlineKeyboardMarkup | None) -> None:
        try:
            await self._bot.edit_message_text(
                text, chat_id=self._chat_id, message_id=self._message_id, reply_markup=markup
            )
        except TelegramError as exc:  # progress is best effort; the result is what matters
            log.info("status edit in chat %s failed: %s", self._chat_id, exc)


class JobFlow:
    """Starts, follows and delivers jobs for one bot; owns the adapter's background tasks."""

    def __init__(self, config: Config, service: Service, bot: Bot, tuning: TelegramTuning):
        self.config, self.service, self.bot, self.tuning = config, service, bot, tuning
        self.tasks = TaskSet()
        self._busy: set[str] = set()  # job ids followed or being delivered right now
        self._next_try: dict[str, tuple[float, int]] = {}  # job id -> (monotonic time, failures)

    def language(self, job: Job) -> str:
        return pick_language(job.requester.language, self.config.telegram.default_language)

    # ---- starting ------------------------------------------------------------------------------

    async def start_job(
        self,
        chat_id: str,
        reply_to_message_id: int,
        lang: str,
        submit: Callable[[ReplyTarget], Awaitable[Submission]],
    ) -> Submission:
        """Post the status message at once, submit, then follow the job in the background."""
        status = await with_retries(
            lambda: self.bot.send_message(
                chat_id,
                translate("job.received", lang),
                reply_parameters=_reply_to(reply_to_message_id),
            ),
            self.tuning,
        )
        target = ReplyTarget(chat_id, str(status.message_id), token=str(reply_to_message_id))
        try:
            submission = await submit(target)
        except UserError:
            await self._delete(chat_id, status.message_id)
            raise
        self.follow(submission.job)
        return submission

    def follow(self, job: Job) -> None:
        """Follow ``job`` in a background task until it is delivered."""
        if job.id in self._busy:
            return
        self._busy.add(job.id)
        self.tasks.spawn(self._follow(job), name=f"telegram-job-{job.id}")

    async def _follow(self, job: Job) -> None:
        try:
            message_id = await self._status_message_id(job)
            if message_id is not None:
                await self._watch(job, message_id)
            else:
                async for _ in self.service.subscribe(job.id):
                    pass
            await self._deliver(await self.service.job(job.id))
        finally:
            self._busy.discard(job.id)

    async def _status_message_id(self, job: Job) -> int | None:
        if job.reply_to.message_id is not None:
            return int(job.reply_to.message_id)
        try:  # a job whose status message was never recorded: post a new one
            message = await self.bot.send_message(
                job.reply_to.chat_id, translate("job.received", self.language(job))
            )
        except TelegramError as exc:
            log.warning("job %s: no status message: %s", job.id, exc)
            return None
        return message.message_id

    async def _watch(self, job: Job, message_id: int) -> None:
        chat_id, lang = job.reply_to.chat_id, self.language(job)
        interval = (
            self.tuning.edit_interval_group_s
            if is_group(chat_id)
            else self.tuning.edit_interval_private_s
        )
        editor = ThrottledEditor(self.bot, chat_id, message_id, interval)
        helpers = TaskSet()
        helpers.spawn(editor.run(), name=f"telegram-edit-{job.id}")
        uploading = False
        try:
            async for event in self.service.subscribe(job.id):
                if isinstance(event, TERMINAL_EVENTS):
                    break
                if isinstance(event, Started | Progress) and not uploading:
                    uploading = True
                    helpers.spawn(self._chat_action(chat_id), name=f"telegram-action-{job.id}")
                editor.want(render_event(event, lang), cancel_keyboard(job.id, lang))
        finally:
            await helpers.cancel_all()

    async def _chat_action(self, chat_id: str) -> None:
        while True:
            try:
                await self.bot.send_chat_action(chat_id, ChatAction.UPLOAD_PHOTO)
            except TelegramError as exc:
                log.info("chat action in %s failed: %s", chat_id, exc)
            await asyncio.sleep(self.tuning.chat_action_interval_s)

    # ---- delivering ------------------------------------------------------------------------------

    async def _deliver(self, job: Job) -> None:
        """Send the final result of ``job``; on failure leave it for ``retry_loop``."""
        try:
            if job.status is JobStatus.SUCCEEDED:
                await self._send_result(job)
            elif job.status.is_terminal:
                await self._send_final_line(job)
            else:
                return
        except Forbidden as exc:  # blocked by the user or removed from the group: give up
            log.warning("job %s: cannot deliver to chat %s: %s", job.id, job.reply_to.chat_id, exc)
        except (TelegramError, OSError) as exc:
            self._schedule_retry(job.id, exc)
            return
        self._next_try.pop(job.id, None)
        await self.service.mark_delivered(job.id)
        if job.status is JobStatus.SUCCEEDED and job.reply_to.message_id is not None:
            await self._delete(job.reply_to.chat_id, int(job.reply_to.message_id))

    async def _send_result(self, job: Job) -> None:
        lang = self.language(job)
        message = await self.send_photo(job, lang, reply_to=_token_message_id(job.reply_to))
        log.info("job %s delivered as message %s", job.id, message.message_id)

    async def send_photo(self, job: Job, lang: str, reply_to: int | None) -> Message:
        """The image of a finished job with its caption and buttons (used again by /history)."""
        assert job.result_path is not None
        photo = await asyncio.to_thread(photo_bytes, job.result_path)
        return await with_retries(
            lambda: self.bot.send_photo(
                job.reply_to.chat_id,
                photo,
                caption=render_caption(job, lang),
                reply_markup=result_keyboard(job.id, lang),
                reply_parameters=_reply_to(reply_to),
                filename=f"{job.id}.png",
            ),
            self.tuning,
        )

    async def _send_final_line(self, job: Job) -> None:
        lang = self.language(job)
        if job.status is JobStatus.FAILED:
            reason = translate(job.error_key or "error.engine", lang)
            text = translate("job.failed", lang, reason=reason)
        else:
            text = translate("job.cancelled", lang)
        chat_id, message_id = job.reply_to.chat_id, job.reply_to.message_id
        if message_id is not None:
            with contextlib.suppress(BadRequest):  # gone or unchanged: send a new line instead
                await with_retries(
                    lambda: self.bot.edit_message_text(
                        text, chat_id=chat_id, message_id=int(message_id), reply_markup=None
                    ),
                    self.tuning,
                )
                return
        await with_retries(
            lambda: self.bot.send_message(
                chat_id, text, reply_parameters=_reply_to(_token_message_id(job.reply_to))
            ),
            self.tuning,
        )

    def _schedule_retry(self, job_id: str, exc: BaseException) -> None:
        _, failures = self._next_try.get(job_id, (0.0, 0))
        delay = min(self.tuning.delivery_backoff_max_s, self.tuning.delivery_retry_s * 2**failures)
        self._next_try[job_id] = (time.monotonic() + delay, failures + 1)
        log.warning("job %s: delivery failed (%s); retrying in %.0f s", job_id, exc, delay)

    async def deliver_pending(self) -> None:
        """Deliver every undelivered result whose retry time has come."""
        now = time.monotonic()
        for job in await self.service.undelivered(Platform.TELEGRAM):
            due, _ = self._next_try.get(job.id, (0.0, 0))
            if job.id in self._busy or due > now:
                continue
            self._busy.add(job.id)
            try:
                await self._deliver(job)
            finally:
                self._busy.discard(job.id)

    async def retry_loop(self) -> None:
        """Look for undelivered results now and every ``delivery_retry_s``."""
        while True:
            try:
                await self.deliver_pending()
            except Exception:  # a store hiccup must not end the loop
                log.exception("delivering pending results failed")
            await asyncio.sleep(self.tuning.delivery_retry_s)

    async def reattach(self) -> None:
        """Follow the jobs of this platform that were queued or running before a restart."""
        for job in await self.service.active_jobs(Platform.TELEGRAM):
            self.follow(job)

    async def _delete(self, chat_id: str, message_id: int) -> None:
        try:
            await self.bot.delete_message(chat_id, message_id)
        except TelegramError as exc:
            log.info("deleting message %s in %s failed: %s", message_id, chat_id, exc)


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


def _token_message_id(target: ReplyTarget) -> int | None:
    """The user's command message, kept in the reply target's adapter token."""
    return int(target.token) if target.token and target.token.isdigit() else None


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
