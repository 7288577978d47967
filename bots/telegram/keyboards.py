"""Inline keyboards and their ``callback_data``: one letter for the action, then the job id.

``callback_data`` is at most 64 bytes; job ids are 9 base62 characters, so "r:AbC123xyz" is 11.
Everything else a button needs is read from the service when it is pressed, so buttons keep
working after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from backend.domain import Job, JobStatus
from bots.i18n import translate

CALLBACK_DATA_MAX_BYTES = 64
HISTORY_BUTTONS_PER_ROW = 5


class Action(StrEnum):
    """What a button does; the value is the prefix of its callback_data."""

    CANCEL = "c"  # cancel a queued or running job
    REROLL = "r"  # same prompt and settings, new random seed
    VARIATION = "v"  # same prompt and settings, seed + 1
    ORIGINAL = "o"  # send the PNG file as a document
    DELETE = "d"  # delete the photo message (own images; admins any)
    GET = "g"  # send a finished image again (from /history)


@dataclass(frozen=True)
class ButtonPress:
    action: Action
    job_id: str


def encode(action: Action, job_id: str) -> str:
    """``"r:<job id>"``; raises ValueError if it would not fit in callback_data."""
    data = f"{action.value}:{job_id}"
    if len(data.encode()) > CALLBACK_DATA_MAX_BYTES:
        raise ValueError(f"callback_data too long for job id {job_id!r}")
    return data


def decode(data: str | None) -> ButtonPress | None:
    """The action and job id of a button, or None for data we did not make."""
    prefix, sep, job_id = (data or "").partition(":")
    if not sep or not job_id:
        return None
    try:
        return ButtonPress(Action(prefix), job_id)
    except ValueError:
        return None


def _button(key: str, lang: str, action: Action, job_id: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(translate(key, lang), callback_data=encode(action, job_id))


def cancel_keyboard(job_id: str, lang: str) -> InlineKeyboardMarkup:
    """The Cancel button under a status message."""
    return InlineKeyboardMarkup([[_button("button.cancel", lang, Action.CANCEL, job_id)]])


def result_keyboard(job_id: str, lang: str) -> InlineKeyboardMarkup:
    """Reroll / Variations on the first row, Original PNG / Delete on the second."""
    return InlineKeyboardMarkup(
        [
            [
                _button("button.reroll", lang, Action.REROLL, job_id),
                _button("button.variations", lang, Action.VARIATION, job_id),
            ],
            [
                _button("button.original", lang, Action.ORIGINAL, job_id),
                _button("button.delete", lang, Action.DELETE, job_id),
            ],
        ]
    )


def history_keyboard(jobs: Sequence[Job], lang: str) -> InlineKeyboardMarkup | None:
    """One "#id" button per finished image, to get it again; None when there is none."""
    buttons = [
        InlineKeyboardButton(
            translate("button.get", lang, job_id=job.id), callback_data=encode(Action.GET, job.id)
        )
        for job in jobs
        if job.status is JobStatus.SUCCEEDED
    ]
    if not buttons:
        return None
    rows = [
        buttons[i : i + HISTORY_BUTTONS_PER_ROW]
        for i in range(0, len(buttons), HISTORY_BUTTONS_PER_ROW)
    ]
    return InlineKeyboardMarkup(rows)
