"""Following jobs on Discord: throttled progress edits, then the result, exactly once.

Handlers hand a job over with :meth:`Deliveries.watch` and return at once. :meth:`Deliveries.run`
(owned by ``run_discord``) runs every follower in one ``TaskGroup``, re-attaches to the jobs that
were queued or running before a restart, and delivers (and keeps retrying) results that could not
be delivered yet. A result goes into the interaction's original response while its token lives
(15 minutes); after that it is posted in the channel, mentioning the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import discord

from backend.domain import TERMINAL_EVENTS, Job, JobEvent, JobStatus, Platform
from backend.service import Service
from bots.discord.messages import (
    DEFAULT_FILESIZE_LIMIT,
    Upload,
    fit_upload,
    result_embed,
    terminal_text,
)
from bots.discord.views import progress_view, result_view
from bots.i18n import pick_language, translate
from bots.render import render_event

log = logging.getLogger("majicbot.discord.delivery")

TOKEN_TTL_S = 15 * 60
TOKEN_MARGIN_S = 60  # stop relying on a token a minute before Discord expires it


@dataclass
class Target:
    """Where one job's progress and result are shown (mutable: it learns that a token died)."""

    channel_id: int
    user_id: int
    lang: str
    token_expires_at: float  # unix seconds
    filesize_limit: int = DEFAULT_FILESIZE_LIMIT
    interaction: discord.Interaction[Any] | None = None  # live interaction (this process)
    token: str | None = None  # stored interaction token (after a restart)
    message_id: int | None = None  # the original response, for editing through the token
    expired: bool = False

    @classmethod
    def of_interaction(cls, interaction: discord.Interaction[Any], lang: str) -> Target:
        return cls(
            channel_id=int(interaction.channel_id or 0),
            user_id=interaction.user.id,
            lang=lang,
            token_expires_at=time.time() + TOKEN_TTL_S - TOKEN_MARGIN_S,
            filesize_limit=interaction.filesize_limit,
            interaction=interaction,
        )

    @classmethod
    def of_job(cls, job: Job, default_lang: str) -> Target:
        """Rebuilt from SQLite after a restart; the token age is bounded by the job's age."""
        reply = job.reply_to
        return cls(
            channel_id=int(reply.chat_id),
            user_id=int(job.requester.user_id),
            lang=pick_language(job.requester.language, default_lang),
            token_expires_at=job.created_at + TOKEN_TTL_S - TOKEN_MARGIN_S,
            token=reply.token,
            message_id=int(reply.message_id) if reply.message_id else None,
        )


class EditThrottle:
    """Allows an edit only when the text changed and ``interval_s`` passed since the last one."""

    def __init__(self, interval_s: float, shown: str | None = None) -> None:
        self._interval_s = interval_s
        self._shown = shown
        self._at: float | None = None if shown is None else time.monotonic()

    def allows(self, text: str) -> bool:
        """True (and remembered as sent) when ``text`` may be shown now."""
        now = time.monotonic()
        if text == self._shown or (self._at is not None and now - self._at < self._interval_s):
            return False
        self._shown, self._at = text, now
        return True


Work = Callable[[], Awaitable[None]]


class Deliveries:
    """Owns every job follower of the Discord adapter; see the module docstring."""

    def __init__(
        self,
        client: discord.Client,
        service: Service,
        default_lang: str,
        *,
        edit_interval_s: float = 2.0,
        retry_interval_s: float = 60.0,
    ) -> None:
        self._client = client
        self._service = service
        self._default_lang = default_lang
        self.edit_interval_s = edit_interval_s
        self._retry_interval_s = retry_interval_s
        self._inbox: asyncio.Queue[tuple[str, Work]] = asyncio.Queue()
        self._inflight: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._recovered = asyncio.Event()

    # ---- handing work over ---------------------------------------------------------------------

    def watch(
        self,
        job_id: str,
        target: Target,
        shown: str | None = None,
        events: AsyncIterator[JobEvent] | None = None,
    ) -> bool:
        """Follow ``job_id`` to its end and deliver it; False if it is already followed.

        ``shown`` is the text already on screen; ``events`` a subscription the caller started.
        """
        throttle = EditThrottle(self.edit_interval_s, shown)
        return self._enqueue(job_id, lambda: self._follow(job_id, target, throttle, events))

    def _enqueue(self, job_id: str, work: Work) -> bool:
        if job_id in self._inflight:
            return False
        self._inflight.add(job_id)
        self._idle.clear()
        self._inbox.put_nowait((job_id, work))
        return True

    async def wait_idle(self) -> None:
        """Wait until the start-up recovery ran and no job is being followed or delivered."""
        await self._recovered.wait()
        await self._idle.wait()

    # ---- the supervisor ------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run :meth:`run` in the background for the duration of the block."""
        task = asyncio.create_task(self.run(), name="discord-deliveries")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Run followers and the recovery loop until cancelled (which cancels the followers)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._recover_forever(), name="discord-recovery")
            while True:
                job_id, work = await self._inbox.get()
                group.create_task(self._guarded(job_id, work), name=f"discord-job-{job_id}")

    async def _guarded(self, job_id: str, work: Work) -> None:
        try:
            await work()
        except Exception:
            log.exception("delivering job %s failed; it will be retried", job_id)
        finally:
            self._inflight.discard(job_id)
            if not self._inflight:
                self._idle.set()

    async def _recover_forever(self) -> None:
        await self._client.wait_until_ready()
        while True:
            try:
                await self.recover()
            except Exception:
                log.exception("recovering Discord jobs failed")
            self._recovered.set()
            await asyncio.sleep(self._retry_interval_s)

    async def recover(self) -> None:
        """Re-attach to queued/running jobs and deliver finished ones nobody delivered."""
        for job in await self._service.active_jobs(Platform.DISCORD):
            self.watch(job.id, Target.of_job(job, self._default_lang))
        for job in await self._service.undelivered(Platform.DISCORD):
            target = Target.of_job(job, self._default_lang)
            self._enqueue(job.id, functools.partial(self._deliver, job, target))

    # ---- one job ---------------------------------------------------------------------------------

    async def _follow(
        self,
        job_id: str,
        target: Target,
        throttle: EditThrottle,
        events: AsyncIterator[JobEvent] | None,
    ) -> None:
        async for event in events or self._service.subscribe(job_id):
            if isinstance(event, TERMINAL_EVENTS):
                break
            await self._show_progress(job_id, target, event, throttle)
        await self._deliver(await self._service.job(job_id), target)

    async def _show_progress(
        self, job_id: str, target: Target, event: JobEvent, throttle: EditThrottle
    ) -> None:
        text = render_event(event, target.lang)
        if not target.expired and throttle.allows(text):
            await self._edit(target, content=text, view=progress_view(job_id, target.lang))

    async def _deliver(self, job: Job, target: Target) -> None:
        if job.status is JobStatus.SUCCEEDED and job.result_path is not None:
            await self._deliver_image(job, target)
        else:
            text = terminal_text(job, target.lang)
            if not await self._edit(target, content=text, embed=None, view=None):
                await self._post(target, text)
        await self._service.mark_delivered(job.id)
        log.info("delivered job %s (%s)", job.id, job.status.value)

    async def _deliver_image(self, job: Job, target: Target) -> None:
        assert job.result_path is not None
        path = job.result_path
        upload = await asyncio.to_thread(fit_upload, path, target.filesize_limit)
        if await self._edit(target, **self._image_message(job, target.lang, upload)):
            return
        limit = self._channel_filesize_limit(target.channel_id)
        if limit < target.filesize_limit:
            upload = await asyncio.to_thread(fit_upload, path, limit)
        message = self._image_message(job, target.lang, upload)
        await self._post(target, message["content"], message)

    @staticmethod
    def _image_message(job: Job, lang: str, upload: Upload) -> dict[str, Any]:
        note = None
        if upload.recompressed_as:
            note = translate("discord.recompressed", lang, format=upload.recompressed_as)
        return {
            "content": note,
            "embed": result_embed(job, lang, upload.filename),
            "attachments": [upload.file()],
            "view": result_view(job.id, lang),
        }

    # ---- Discord I/O -----------------------------------------------------------------------------

    async def _edit(self, target: Target, **fields: Any) -> bool:
        """Edit the original response; False when its token is gone (use the channel instead)."""
        if target.expired or time.time() >= target.token_expires_at:
            target.expired = True
            return False
        try:
            if target.interaction is not None:
                await target.interaction.edit_original_response(**fields)
            elif target.token and target.message_id and self._client.application_id:
                webhook = discord.Webhook.partial(
                    self._client.application_id, target.token, client=self._client
                )
                await webhook.edit_message(target.message_id, **fields)
            else:
                target.expired = True
                return False
        except discord.NotFound:
            # Unknown webhook (token expired) or the user deleted the message.
            log.info("original response of channel %s is gone; posting instead", target.channel_id)
            target.expired = True
            return False
        return True

    async def _post(
        self, target: Target, text: str | None, fields: dict[str, Any] | None = None
    ) -> None:
        """A new channel message mentioning the user (the token expired or the message is gone)."""
        mention = translate(
            "discord.delivered_in_channel", target.lang, mention=f"<@{target.user_id}>"
        )
        content = f"{mention}\n{text}" if text else mention
        extra = dict(fields or {})
        attachments = extra.pop("attachments", [])
        extra.pop("content", None)
        channel = self._client.get_partial_messageable(target.channel_id)
        await channel.send(
            content,
            files=attachments,
            allowed_mentions=discord.AllowedMentions(users=[discord.Object(target.user_id)]),
            **extra,
        )

    def _channel_filesize_limit(self, channel_id: int) -> int:
        channel = self._client.get_channel(channel_id)
        guild = getattr(channel, "guild", None)
        return guild.filesize_limit if isinstance(guild, discord.Guild) else DEFAULT_FILESIZE_LIMIT
