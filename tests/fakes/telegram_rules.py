"""The Bot API's rules the fake enforces, with the real error descriptions, and flood accounting.

Every check raises :class:`ApiError` (a Bot-API-shaped error: ``error_code`` + ``description``);
the server turns it into ``{"ok": false, "error_code": ..., "description": ...}``. Flood limits
are measured over the fake's own records (``flood_violations``) and enforced only on request
(``FakeTelegram.enforce_flood_limits``).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

TEXT_MAX_CHARS = 4096
CAPTION_MAX_CHARS = 1024
CALLBACK_DATA_MAX_BYTES = 64
PHOTO_MAX_SIDES_SUM = 10_000  # width + height
UPLOAD_MAX_BYTES = 50 * 1024 * 1024

TOO_LONG = "Bad Request: message is too long"
EDIT_TOO_LONG = "Bad Request: MESSAGE_TOO_LONG"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
TEXT_EMPTY = "Bad Request: message text is empty"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
EDIT_NOT_FOUND = "Bad Request: message to edit not found"
DELETE_NOT_FOUND = "Bad Request: message to delete not found"
CANT_EDIT = "Bad Request: message can't be edited"
NO_TEXT_TO_EDIT = "Bad Request: there is no text in the message to edit"
NO_CAPTION_TO_EDIT = "Bad Request: there is no caption in the message to edit"
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
TEXT_BUTTON = (
    "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline "
    "keyboard"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
PHOTO_DIMENSIONS = "Bad Request: PHOTO_INVALID_DIMENSIONS"
BLOCKED = "Forbidden: bot was blocked by the user"
KICKED = "Forbidden: bot was kicked from the group chat"

# Methods that put or change a message in a chat: what the flood limits count.
FLOOD_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
        "editMessageMedia",
    }
)
# Methods a blocked user (or a group that removed the bot) refuses with 403.
CHAT_METHODS = FLOOD_METHODS | {"sendChatAction", "deleteMessage"}


class ApiError(Exception):
    """A Bot API error answer; ``retry_after`` (seconds) only for 429."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


def default_description(status: int, retry_after: int | None) -> str:
    """What Telegram says for ``status`` when a test does not choose the words."""
    return {
        400: "Bad Request",
        401: "Unauthorized",
        403: BLOCKED,
        404: "Not Found",
        409: "Conflict: terminated by other getUpdates request; make sure that only one bot "
        "instance is running",
        429: f"Too Many Requests: retry after {retry_after}",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(status, "Internal Server Error")


def visible_text(text: str, parse_mode: str | None) -> str:
    """The text as the user sees it (the limits count it after entity parsing)."""
    if parse_mode is not None and parse_mode.upper() == "HTML":
        return html.unescape(re.sub(r"<[^>]*>", "", text))
    return text


def check_text(text: Any, parse_mode: str | None, *, editing: bool) -> str:
    """The message text if it is within the limits; else the error the method answers."""
    shown = visible_text(str(text if text is not None else ""), parse_mode)
    if not shown.strip():
        raise ApiError(400, TEXT_EMPTY)
    if len(shown) > TEXT_MAX_CHARS:
        raise ApiError(400, EDIT_TOO_LONG if editing else TOO_LONG)
    return str(text)


def check_caption(caption: Any, parse_mode: str | None) -> None:
    if caption is not None and len(visible_text(str(caption), parse_mode)) > CAPTION_MAX_CHARS:
        raise ApiError(400, CAPTION_TOO_LONG)


def check_markup(markup: Any) -> None:
    """Inline buttons must carry an action; callback_data is 1–64 bytes."""
    if not isinstance(markup, dict):
        return
    for row in markup.get("inline_keyboard") or []:
        for button in row:
            actions = set(button) - {"text"}
            if not actions:
                raise ApiError(400, TEXT_BUTTON)
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_MAX_BYTES:
                raise ApiError(400, BUTTON_DATA_INVALID)


def check_photo_size(width: int, height: int) -> None:
    if width + height > PHOTO_MAX_SIDES_SUM:
        raise ApiError(400, PHOTO_DIMENSIONS)


def forbidden_for(chat_id: int) -> ApiError:
    """What a send to a chat that blocked (private) or removed (group) the bot answers."""
    return ApiError(403, KICKED if chat_id < 0 else BLOCKED)


# ---- flood accounting ----------------------------------------------------------------------


class Stamped(Protocol):
    """A recorded call as flood accounting sees it."""

    @property
    def method(self) -> str: ...
    @property
    def chat_id(self) -> int | None: ...
    @property
    def received_at(self) -> float: ...
    @property
    def applied(self) -> bool: ...


@dataclass(frozen=True)
class Rate:
    """At most ``count`` calls in any window of ``per_s`` seconds."""

    count: int
    per_s: float


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's published limits (the same numbers as PTB's ``AIORateLimiter``)."""

    per_chat: Rate = Rate(1, 1.0)  # any chat, private or group
    per_group: Rate = Rate(20, 60.0)  # chats with a negative id
    overall: Rate = Rate(30, 1.0)
    slack_s: float = 0.05  # timer jitter forgiven at a window's edge


def counted(calls: Iterable[Stamped], chat_id: int | None) -> list[float]:
    """Receive times of applied flood-counted calls (to ``chat_id``, or to every chat)."""
    return [
        c.received_at
        for c in calls
        if c.applied and c.method in FLOOD_METHODS and (chat_id is None or c.chat_id == chat_id)
    ]


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """The most timestamps in any half-open window ``[t, t + window_s)``."""
    ordered, best, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def rule_for(chat_id: int | None, limits: FloodLimits) -> list[tuple[str, Rate, int | None]]:
    """The (name, rate, chat) rules that apply to a call to ``chat_id``."""
    rules: list[tuple[str, Rate, int | None]] = [("overall", limits.overall, None)]
    if chat_id is not None:
        rules.append(("chat", limits.per_chat, chat_id))
        if chat_id < 0:
            rules.append(("group", limits.per_group, chat_id))
    return rules


def retry_after_s(times: Sequence[float], rate: Rate, now: float, slack_s: float) -> int | None:
    """Seconds until one more call fits ``rate`` (None: it fits now)."""
    recent = sorted(t for t in times if now - t < rate.per_s - slack_s)
    if len(recent) < rate.count:
        return None
    return max(1, math.ceil(recent[-rate.count] + rate.per_s - now))
