"""Persistent job buttons: the job id and the action live in ``custom_id`` (``mj:<action>:<id>``).

Buttons are :class:`JobButton` dynamic items: registered once at startup with
``client.add_dynamic_items``, they have no timeout and keep working after a restart, because
discord.py rebuilds them from the ``custom_id`` of whatever message was clicked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import discord

from backend.domain import Job
from bots.discord.context import context_of
from bots.i18n import translate

REROLL, VARIATIONS, DELETE, CANCEL, GET = "reroll", "vary", "delete", "cancel", "get"
ACTIONS = (REROLL, VARIATIONS, DELETE, CANCEL, GET)
CUSTOM_ID_PATTERN = re.compile(
    r"mj:(?P<action>reroll|vary|delete|cancel|get):(?P<job_id>[\w-]{1,80})"
)

_LABEL_KEYS = {
    REROLL: "button.reroll",
    VARIATIONS: "button.variations",
    DELETE: "button.delete",
    CANCEL: "button.cancel",
    GET: "button.get",
}
_STYLES = {
    REROLL: discord.ButtonStyle.primary,
    VARIATIONS: discord.ButtonStyle.secondary,
    DELETE: discord.ButtonStyle.danger,
    CANCEL: discord.ButtonStyle.danger,
    GET: discord.ButtonStyle.secondary,
}
MAX_HISTORY_BUTTONS = 25  # 5 rows of 5


def custom_id(action: str, job_id: str) -> str:
    """``mj:<action>:<job id>`` (well under Discord's 100 characters)."""
    return f"mj:{action}:{job_id}"


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID_PATTERN):
    """One action on one job; the click is handled by the adapter's button handler."""

    def __init__(self, action: str, job_id: str, label: str = "") -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label or action,
            style=_STYLES[action],
            custom_id=custom_id(action, job_id),
        )
        super().__init__(button)
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await context_of(interaction).on_button(interaction, self.action, self.job_id)


def _button(action: str, job_id: str, lang: str) -> JobButton:
    return JobButton(action, job_id, translate(_LABEL_KEYS[action], lang, job_id=job_id))


def _view(buttons: Sequence[JobButton]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view


def progress_view(job_id: str, lang: str) -> discord.ui.View:
    """Shown while the job is queued or running: Cancel."""
    return _view([_button(CANCEL, job_id, lang)])


def result_view(job_id: str, lang: str) -> discord.ui.View:
    """Under a finished image: Reroll, Variations (seed + 1), Delete."""
    return _view([_button(action, job_id, lang) for action in (REROLL, VARIATIONS, DELETE)])


def history_view(jobs: Sequence[Job], lang: str) -> discord.ui.View | None:
    """One "get it again" button per finished image (at most 25); None when there are none."""
    buttons = [_button(GET, job.id, lang) for job in jobs if job.result_path is not None]
    return _view(buttons[:MAX_HISTORY_BUTTONS]) if buttons else None
