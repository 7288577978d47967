"""The application commands: /imagine, /settings, /status, /history, /cancel, /ban, /unban.

Option bounds come from the config, so the callbacks are defined inside
:func:`register_commands` with their ``Range`` annotations evaluated there (this module must not
use postponed annotations: discord.py reads the annotation objects). Descriptions and names are
``bots.i18n`` keys localized by :class:`bots.discord.translator.CommandTranslator`.

Bounds are honest: the ``prompt`` option allows exactly ``limits.max_prompt_chars`` characters,
so Discord's own counter stops the user where the backend would refuse. ``--flags`` typed into
it count too (the typed ``seed``/``steps``/``aspect``/``guidance`` options are there for a
prompt at the limit). Admin commands carry ``default_member_permissions`` (Manage Server), so
Discord shows them to server managers only; the bot still checks its configured admins on
every call.
"""

import time
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from backend.config import Config
from backend.domain import (
    HISTORY_MAX,
    SEED_MAX,
    HistoryScope,
    Options,
    ReplyTarget,
    Requester,
    Submission,
)
from bots.discord.actions import start_job
from bots.discord.context import context_of
from bots.discord.policy import policy_command
from bots.discord.translator import text
from bots.discord.views import history_view
from bots.i18n import translate
from bots.parsing import merge_options, parse_imagine, to_request
from bots.render import render_history, render_settings, render_status, shorten

MESSAGE_LIMIT = 2000  # characters of message content
ADMIN_ONLY = discord.Permissions(manage_guild=True)  # who Discord shows admin commands to


async def imagine(
    interaction: discord.Interaction[Any],
    prompt: str,
    seed: int | None,
    steps: int | None,
    aspect: str | None,
    guidance: float | None,
    spoiler: bool = False,
) -> None:
    """Parse and submit (a refusal is ephemeral), then answer publicly and follow the job."""
    parsed = merge_options(
        parse_imagine(prompt),
        seed=seed,
        steps=steps,
        aspect=aspect,
        guidance=guidance,
        spoiler=True if spoiler else None,  # issue 16
    )
    service = context_of(interaction).service
    key = f"discord:{interaction.id}"

    async def submit(requester: Requester, reply_to: ReplyTarget) -> Submission:
        return await service.submit(to_request(parsed, requester, reply_to, idempotency_key=key))

    await start_job(interaction, submit)


async def status(interaction: discord.Interaction[Any]) -> None:
    """The engine/queue snapshot, for admins only, ephemeral."""
    context = context_of(interaction)
    snapshot = await context.service.status(context.requester(interaction))
    await interaction.response.defer(ephemeral=True, thinking=True)
    lang = context.language(interaction)
    body = shorten(render_status(snapshot, lang), MESSAGE_LIMIT - 8)
    await interaction.edit_original_response(content=f"```\n{body}\n```")


async def history(interaction: discord.Interaction[Any], count: int) -> None:
    """One's own last jobs, ephemeral, with a button per image to get it again."""
    context = context_of(interaction)
    await interaction.response.defer(ephemeral=True, thinking=True)
    jobs = await context.service.history(context.requester(interaction), HistoryScope.USER, count)
    lang = context.language(interaction)
    body = render_history(jobs, lang, now=time.time())
    if jobs:
        body += "\n" + translate("history.hint", lang)
    view = history_view(jobs, lang)
    await interaction.edit_original_response(
        content=shorten(body, MESSAGE_LIMIT), view=view or discord.utils.MISSING
    )


async def cancel(interaction: discord.Interaction[Any], job: str | None) -> None:
    """Cancel the given job, or one's latest queued/running job."""
    context = context_of(interaction)
    requester = context.requester(interaction)
    service = context.service
    if job:
        cancelled = await service.cancel(job.lstrip("#"), requester)
    else:
        cancelled = await service.cancel_latest(requester)
    await interaction.response.send_message(
        translate("cancel.done", context.language(interaction), job_id=cancelled.id),
        ephemeral=True,
    )


async def settings(
    interaction: discord.Interaction[Any],
    steps: int | None,
    aspect: str | None,
    guidance: float | None,
    reset: bool,
) -> None:
    """Show one's defaults for /imagine, after clearing and/or changing them; ephemeral."""
    context = context_of(interaction)
    requester, lang = context.requester(interaction), context.language(interaction)
    service = context.service
    lines: list[str] = []
    if reset:
        await service.accounts.reset_defaults(requester)
        lines = [translate("settings.reset_done", lang)]
    defaults = Options(steps=steps, aspect=aspect, guidance=guidance)
    if not defaults.is_empty:
        await service.accounts.set_defaults(requester, defaults)
        lines = [translate("settings.saved", lang)]
    lines.append(render_settings(service.accounts.settings(requester), lang))
    lines.append(translate("discord.settings_hint", lang))
    await interaction.response.send_message("\n".join(lines), ephemeral=True)


async def set_banned(
    interaction: discord.Interaction[Any], user: discord.User | discord.Member, *, banned: bool
) -> None:
    """Ban or unban ``user`` (admins only; others get the polite refusal); ephemeral."""
    context = context_of(interaction)
    requester = context.requester(interaction)
    await context.service.accounts.set_banned(requester, str(user.id), banned=banned)
    sentence = translate(
        "ban.done" if banned else "ban.undone", context.language(interaction), user=user.mention
    )
    await interaction.response.send_message(sentence, ephemeral=True)


def register_commands(tree: app_commands.CommandTree[Any], config: Config) -> None:
    """Add every command to ``tree`` with bounds and choices from ``config.limits``."""
    limits = config.limits
    ratios = [Choice(name=ratio, value=ratio) for ratio in limits.aspect_ratios[:25]]
    prompt_max = min(6000, limits.max_prompt_chars)  # Discord's own bound: 6,000

    @app_commands.command(name=text("discord.name.imagine"), description=text("cmd.imagine"))
    @app_commands.rename(
        prompt=text("discord.opt.prompt"),
        seed=text("discord.opt.seed"),
        steps=text("discord.opt.steps"),
        aspect=text("discord.opt.aspect"),
        guidance=text("discord.opt.guidance"),
        spoiler=text("discord.opt.spoiler"),
    )
    @app_commands.describe(
        prompt=text("discord.optdesc.prompt"),
        seed=text("discord.optdesc.seed"),
        steps=text("discord.optdesc.steps"),
        aspect=text("discord.optdesc.aspect"),
        guidance=text("discord.optdesc.guidance"),
        spoiler=text("discord.optdesc.spoiler"),
    )
    @app_commands.choices(aspect=ratios)
    async def imagine_command(
        interaction: discord.Interaction[Any],
        prompt: Range[str, 1, prompt_max],
        seed: Range[int, 0, SEED_MAX] | None = None,
        steps: Range[int, 1, limits.max_steps] | None = None,
        aspect: str | None = None,
        guidance: Range[float, limits.min_guidance, limits.max_guidance] | None = None,
        spoiler: bool = False,
    ) -> None:
        await imagine(interaction, prompt, seed, steps, aspect, guidance, spoiler)

    @app_commands.command(name=text("discord.name.status"), description=text("cmd.status"))
    @app_commands.default_permissions(ADMIN_ONLY)
    async def status_command(interaction: discord.Interaction[Any]) -> None:
        await status(interaction)

    @app_commands.command(name=text("discord.name.history"), description=text("cmd.history"))
    @app_commands.rename(count=text("discord.opt.count"))
    @app_commands.describe(count=text("discord.optdesc.count"))
    async def history_command(
        interaction: discord.Interaction[Any], count: Range[int, 1, HISTORY_MAX] = 5
    ) -> None:
        await history(interaction, count)

    @app_commands.command(name=text("discord.name.cancel"), description=text("cmd.cancel"))
    @app_commands.rename(job=text("discord.opt.job"))
    @app_commands.describe(job=text("discord.optdesc.job"))
    async def cancel_command(
        interaction: discord.Interaction[Any], job: Range[str, 1, 80] | None = None
    ) -> None:
        await cancel(interaction, job)

    @app_commands.command(name=text("discord.name.settings"), description=text("cmd.settings"))
    @app_commands.rename(
        steps=text("discord.opt.steps"),
        aspect=text("discord.opt.aspect"),
        guidance=text("discord.opt.guidance"),
        reset=text("discord.opt.reset"),
    )
    @app_commands.describe(
        steps=text("discord.optdesc.steps"),
        aspect=text("discord.optdesc.aspect"),
        guidance=text("discord.optdesc.guidance"),
        reset=text("discord.optdesc.reset"),
    )
    @app_commands.choices(aspect=ratios)
    async def settings_command(
        interaction: discord.Interaction[Any],
        steps: Range[int, 1, limits.max_steps] | None = None,
        aspect: str | None = None,
        guidance: Range[float, limits.min_guidance, limits.max_guidance] | None = None,
        reset: bool = False,
    ) -> None:
        await settings(interaction, steps, aspect, guidance, reset)

    @app_commands.command(name=text("discord.name.ban"), description=text("cmd.ban"))
    @app_commands.default_permissions(ADMIN_ONLY)
    @app_commands.rename(user=text("discord.opt.user"))
    @app_commands.describe(user=text("discord.optdesc.user"))
    async def ban_command(
        interaction: discord.Interaction[Any], user: discord.User | discord.Member
    ) -> None:
        await set_banned(interaction, user, banned=True)

    @app_commands.command(name=text("discord.name.unban"), description=text("cmd.unban"))
    @app_commands.default_permissions(ADMIN_ONLY)
    @app_commands.rename(user=text("discord.opt.user"))
    @app_commands.describe(user=text("discord.optdesc.user"))
    async def unban_command(
        interaction: discord.Interaction[Any], user: discord.User | discord.Member
    ) -> None:
        await set_banned(interaction, user, banned=False)

    tree.add_command(imagine_command)
    tree.add_command(settings_command)
    tree.add_command(status_command)
    tree.add_command(history_command)
    tree.add_command(cancel_command)
    tree.add_command(ban_command)
    tree.add_command(unban_command)
    tree.add_command(policy_command())  # issue 16
