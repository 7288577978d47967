"""Starting a job from an interaction and handing it to the shared follower.

    /imagine ─▶ parse ─▶ Service.submit (on disk) ─▶ the public first response: status + Cancel
             ─▶ Followers.follow(job, DiscordSurface)   (bots.follow does the rest)

Validation and the store write take milliseconds, so they happen before the first response:
refusals go to the user alone (ephemeral), and only accepted jobs get a public message. If the
first response cannot be made (Discord answered too late, 10062), the job still stands: the user
is told in the channel, and the result is posted there.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import discord

from backend.config import Config
from backend.domain import Job, Platform, Submission
from backend.service import Service
from bots.discord.surface import DiscordSurface, Target
from bots.discord.views import progress_view
from bots.follow import Clock, EditBudget, Followers, FollowerTuning, MonotonicClock
from bots.i18n import pick_language, translate
from bots.render import render_event

log = logging.getLogger("majicbot.discord")

EDITS_PER_S = 20.0  # of Discord's 50 requests/s per bot


class DiscordJobs:
    """The adapter's follower wiring: budget, surfaces, the first response of a job."""

    def __init__(
        self,
        client: discord.Client,
        config: Config,
        service: Service,
        *,
        clock: Clock | None = None,
        tuning: FollowerTuning | None = None,
    ) -> None:
        self._client = client
        self._config = config
        self._service = service
        clock = clock or MonotonicClock()
        self.budget = EditBudget(clock, EDITS_PER_S, burst=EDITS_PER_S)
        self.followers = Followers(
            service, Platform.DISCORD, self.budget, self.surface_for, clock=clock, tuning=tuning
        )

    def surface_for(self, job: Job) -> DiscordSurface:
        """The surface of a stored job (after a restart, or for the retry loop)."""
        lang = pick_language(job.requester.language, self._config.discord.default_language)
        return DiscordSurface(self._client, job.id, Target.of_job(job), lang)

    async def start(
        self, interaction: discord.Interaction[Any], submission: Submission, lang: str
    ) -> None:
        """Answer the interaction with the job's first state, then follow the job."""
        job = submission.job
        waiting = self._service.waiting(job.id)
        text = render_event(waiting, lang) if waiting else translate("job.started", lang)
        target = Target.of_interaction(interaction)
        try:
            callback = await interaction.response.send_message(
                text,
                view=progress_view(job.id, lang),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            log.warning("job %s: the first response failed (%s); using the channel", job.id, exc)
            surface = DiscordSurface(self._client, job.id, replace(target, interaction=None), lang)
            await self._tell_in_channel(surface, text)
            self.followers.follow(job, surface)
            return
        if callback.message_id is not None:
            try:
                await self._service.deliveries.attach_status(job.id, str(callback.message_id))
            except Exception as exc:  # the job runs and is followed; only a restart loses this
                log.warning("job %s: recording its first response failed: %s", job.id, exc)
        surface = DiscordSurface(self._client, job.id, target, lang)
        self.followers.follow(job, surface, shown=text)

    async def _tell_in_channel(self, surface: DiscordSurface, text: str) -> None:
        try:
            await surface.send_final(text, anew=True)
        except discord.HTTPException as exc:
            log.warning("telling the user in the channel failed too: %s", exc)
