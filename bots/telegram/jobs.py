"""Starting a job from a Telegram chat and handing it to the shared follower.

    /imagine ─▶ Service.submit (on disk) ─▶ status message with the first state + Cancel
             ─▶ Followers.follow(job, TelegramSurface)   (bots.follow does the rest)

Nothing reaches the chat before the job is stored: a refusal is one message, an accepted job one
status message. A re-delivered update (``bots.telegram.updates``) names a stored job through its
idempotency key: it gets no second job, and a second status message only if the first was never
sent (a crash between the store and the status) and nothing follows the job yet. The job runs
whatever happens to its status message: a failure after the job is stored (the status cannot be
sent or recorded) is logged, never answered with "something went wrong" beside a live status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from telegram import Bot
from telegram.error import TelegramError

from backend.config import Config
from backend.domain import Job, Platform, ReplyTarget, Submission
from backend.service import Service
from bots.follow import Clock, EditBudget, Followers, MonotonicClock
from bots.i18n import pick_language, translate
from bots.render import render_event
from bots.telegram.keyboards import cancel_keyboard
from bots.telegram.surface import TelegramSurface, TelegramTuning, reply_to

log = logging.getLogger("majicbot.telegram")

Submit = Callable[[ReplyTarget], Awaitable[Submission]]


class TelegramJobs:
    """The adapter's follower wiring: budget, surfaces, start of a job."""

    def __init__(
        self,
        config: Config,
        service: Service,
        bot: Bot,
        tuning: TelegramTuning,
        clock: Clock | None = None,
    ) -> None:
        self.config, self.service, self.bot, self.tuning = config, service, bot, tuning
        clock = clock or MonotonicClock()
        self.budget = EditBudget(clock, tuning.edits_per_s, burst=tuning.edits_per_s)
        self.followers = Followers(
            service,
            Platform.TELEGRAM,
            self.budget,
            self.surface_for,
            clock=clock,
            tuning=tuning.follow,
        )

    def language(self, job: Job) -> str:
        return pick_language(job.requester.language, self.config.telegram.default_language)

    def surface_for(self, job: Job) -> TelegramSurface:
        """The surface of a stored job (its status message id and command message id)."""
        return TelegramSurface(self.bot, job.id, job.reply_to, self.language(job), self.tuning)

    async def start(
        self, chat_id: str, command_message_id: int, lang: str, submit: Submit
    ) -> Submission:
        """Submit; once the job is stored, post its status message and follow it."""
        submission = await submit(ReplyTarget(chat_id, token=str(command_message_id)))
        job = submission.job
        if submission.existing and (
            job.reply_to.message_id is not None
            or job.status.is_terminal  # the retry loop delivers it
            or self.followers.following(job.id)
        ):
            return submission  # a re-delivered update: the first delivery shows and follows it
        waiting = self.service.waiting(job.id)
        text = render_event(waiting, lang) if waiting else translate("job.started", lang)
        try:
            message = await self.bot.send_message(
                chat_id,
                text,
                reply_markup=cancel_keyboard(job.id, lang),
                reply_parameters=reply_to(command_message_id),
            )
        except TelegramError as exc:  # the job runs anyway; its result is posted anew
            log.warning("job %s: no status message in %s: %s", job.id, chat_id, exc)
            self.followers.follow(
                job, TelegramSurface(self.bot, job.id, job.reply_to, lang, self.tuning)
            )
            return submission
        status_id = str(message.message_id)
        try:
            await self.service.deliveries.attach_status(job.id, status_id)
        except Exception as exc:  # the status works in this process; after a restart: anew
            log.warning("job %s: recording its status message failed: %s", job.id, exc)
        reply = replace(job.reply_to, message_id=status_id)
        surface = TelegramSurface(self.bot, job.id, reply, lang, self.tuning)
        self.followers.follow(job, surface, shown=text)
        return submission
