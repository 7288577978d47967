"""Starting a job from an interaction, and the persistent buttons' actions.

A new job is validated and stored before the interaction's first response (milliseconds), so a
refusal is ephemeral; other actions answer first, then talk to the backend. Errors go to
:func:`bots.discord.errors.report_error`, the one place that words them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from backend.domain import Delivery, JobAction, MessageRef, ReplyTarget, Requester, Submission
from backend.errors import AccessDenied
from bots.discord.context import BotContext, context_of
from bots.discord.errors import report_error
from bots.discord.messages import fit_upload, result_embed
from bots.discord.views import CANCEL, DELETE, GET, REROLL, VARIATIONS
from bots.i18n import translate

Submit = Callable[[Requester, ReplyTarget], Awaitable[Submission]]


async def start_job(interaction: discord.Interaction[Any], submit: Submit) -> None:
    """Submit (refusals raise before any response: ephemeral), then answer and follow."""
    context = context_of(interaction)
    reply_to = ReplyTarget(chat_id=str(interaction.channel_id), token=interaction.token)
    submission = await submit(context.requester(interaction), reply_to)
    await context.jobs.start(interaction, submission, context.language(interaction))


async def handle_button(interaction: discord.Interaction[Any], action: str, job_id: str) -> None:
    """Entry point of every :class:`bots.discord.views.JobButton` click.

    The service checks the job against the message clicked (``where``: Discord fills it in, so
    unlike the custom id it cannot be forged) and the presser's rights there.
    """
    context = context_of(interaction)
    try:
        context.service.check_access(context.requester(interaction))
        await _BUTTON_ACTIONS[action](interaction, context, job_id)
    except Exception as error:
        await report_error(interaction, error, context.language(interaction))


def where_clicked(interaction: discord.Interaction[Any], job_id: str) -> MessageRef:
    """The channel and message the button is on (a component always has one)."""
    message = interaction.message
    if message is None or interaction.channel_id is None:
        raise AccessDenied("error.wrong_message", job_id=job_id)
    return MessageRef(str(interaction.channel_id), str(message.id))


async def _reroll(interaction: discord.Interaction[Any], context: BotContext, job_id: str) -> None:
    await _new_job_from(interaction, context, job_id, variation=False)


async def _variations(
    interaction: discord.Interaction[Any], context: BotContext, job_id: str
) -> None:
    await _new_job_from(interaction, context, job_id, variation=True)


async def _new_job_from(
    interaction: discord.Interaction[Any], context: BotContext, job_id: str, *, variation: bool
) -> None:
    where = where_clicked(interaction, job_id)

    async def submit(requester: Requester, reply_to: ReplyTarget) -> Submission:
        return await context.service.reroll(
            job_id, requester, reply_to, variation=variation, where=where
        )

    await start_job(interaction, submit)


async def _delete(interaction: discord.Interaction[Any], context: BotContext, job_id: str) -> None:
    requester = context.requester(interaction)
    await context.service.delete(job_id, requester, where_clicked(interaction, job_id))
    lang = context.language(interaction)
    if interaction.message is not None:
        await interaction.message.delete()
    await interaction.response.send_message(translate("cb.deleted", lang), ephemeral=True)


async def _cancel(interaction: discord.Interaction[Any], context: BotContext, job_id: str) -> None:
    where = where_clicked(interaction, job_id)
    await context.service.cancel(job_id, context.requester(interaction), where)
    lang = context.language(interaction)
    await interaction.response.send_message(translate("cb.cancelling", lang), ephemeral=True)


async def _get(interaction: discord.Interaction[Any], context: BotContext, job_id: str) -> None:
    """Send a finished image again, only to the user who pressed (from /history)."""
    requester = context.requester(interaction)
    where = where_clicked(interaction, job_id)
    job = await context.service.job_for_action(job_id, requester, JobAction.GET, where)
    context.service.content.check_deliverable(
        job, requester, unblurred=False
    )  # issue 16: withheld images stay
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
        file=upload.file(spoiler=job.delivery is Delivery.SPOILER),  # issue 16
        ephemeral=True,
    )


_BUTTON_ACTIONS = {
    REROLL: _reroll,
    VARIATIONS: _variations,
    DELETE: _delete,
    CANCEL: _cancel,
    GET: _get,
}
