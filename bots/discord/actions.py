"""Starting a job from an interaction, and the persistent buttons' actions.

Every path acknowledges the interaction first (``defer`` or a direct reply), then talks to the
backend. Errors go to :func:`bots.discord.errors.report_error`, the one place that words them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from backend.domain import TERMINAL_EVENTS, ReplyTarget, Requester, Submission
from bots.discord.access import reply_target_of
from bots.discord.context import BotContext, context_of
from bots.discord.delivery import Target
from bots.discord.errors import report_error
from bots.discord.messages import fit_upload, result_embed
from bots.discord.views import CANCEL, DELETE, GET, REROLL, VARIATIONS, progress_view
from bots.i18n import translate
from bots.render import render_event

Submit = Callable[[Requester, ReplyTarget], Awaitable[Submission]]


async def start_job(
    interaction: discord.Interaction[Any], response_message_id: int | None, submit: Submit
) -> None:
    """Submit (the interaction is already deferred), show the first state, hand over the job."""
    context = context_of(interaction)
    lang = context.language(interaction)
    reply_to = reply_target_of(interaction, response_message_id)
    submission = await submit(context.requester(interaction), reply_to)
    job_id = submission.job.id
    events = context.service.subscribe(job_id)
    first = await anext(events)
    shown = None
    if not isinstance(first, TERMINAL_EVENTS):
        shown = render_event(first, lang)
        await interaction.edit_original_response(content=shown, view=progress_view(job_id, lang))
    context.deliveries.watch(job_id, Target.of_interaction(interaction, lang), shown, events)


async def handle_button(interaction: discord.Interaction[Any], action: str, job_id: str) -> None:
    """Entry point of every :class:`bots.discord.views.JobButton` click."""
    context = context_of(interaction)
    try:
        context.service.check_access(context.requester(interaction))
        await _BUTTON_ACTIONS[action](interaction, context, job_id)
    except Exception as error:
        await report_error(interaction, error, context.language(interaction))


async def _reroll(interaction: discord.Interaction[Any], context: BotContext, job_id: str) -> None:
    await _new_job_from(interaction, context, job_id, variation=False)


async def _variations(
    interaction: discord.Interaction[Any], context: BotContext, job_id: str
) -> None:
    await _new_job_from(interaction, context, job_id, variation=True)


async def _new_job_from(
    interaction: discord.Interaction[Any], context: BotContext, job_id: str, *, variation: bool
) -> None:
    callback = await interaction.response.defer(thinking=True)
    message_id = callback.message_id if callback is not None else None

    async def submit(requester: Requester, reply_to: ReplyTarget) -> Submission:
        return await context.service.reroll(job_id, requester, reply_to, variation=variation)

    await start_job(interaction, message_id, submit)


async def _delete(interaction: discord.Interaction[Any], context: BotContext, job_id: str) -> None:
    requester = context.requester(interaction)
    job = await context.service.job(job_id, requester)
    context.service.check_can_manage(job, requester)
    lang = context.language(interaction)
    if interaction.message is not None:
        await interaction.message.delete()
    await interaction.response.send_message(translate("cb.deleted", lang), ephemeral=True)


async def _cancel(interaction: discord.Interaction[Any], context: BotContext, job_id: str) -> None:
    await context.service.cancel(job_id, context.requester(interaction))
    lang = context.language(interaction)
    await interaction.response.send_message(translate("cb.cancelling", lang), ephemeral=True)


async def _get(interaction: discord.Interaction[Any], context: BotContext, job_id: str) -> None:
    """Send a finished image again, only to the user who pressed (from /history)."""
    requester = context.requester(interaction)
    job = await context.service.job(job_id, requester)
    context.service.check_can_manage(job, requester)
    lang = context.language(interaction)
    if job.result_path is None:
        await interaction.response.send_message(translate("cb.not_ready", lang), ephemeral=True)
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    upload = await asyncio.to_thread(fit_upload, job.result_path, interaction.filesize_limit)
    note = None
    if upload.recompressed_as:
        note = translate("discord.recompressed", lang, format=upload.recompressed_as)
    await interaction.followup.send(
        content=note or discord.utils.MISSING,
        embed=result_embed(job, lang, upload.filename),
        file=upload.file(),
        ephemeral=True,
    )


_BUTTON_ACTIONS = {
    REROLL: _reroll,
    VARIATIONS: _variations,
    DELETE: _delete,
    CANCEL: _cancel,
    GET: _get,
}
