"""Discord's message rules the real-transport fake enforces, and its error bodies.

Each check raises :class:`DiscordError` with the status, JSON ``code`` and ``message`` Discord
answers (https://discord.com/developers/docs/topics/opcodes-and-status-codes#json).
"""

from __future__ import annotations

from typing import Any

CONTENT_MAX_CHARS = 2000
EMBEDS_MAX = 10
EMBED_DESCRIPTION_MAX_CHARS = 4096
EMBED_TITLE_MAX_CHARS = 256
EMBED_FIELDS_MAX = 25
EMBED_FIELD_NAME_MAX_CHARS = 256
EMBED_FIELD_VALUE_MAX_CHARS = 1024
EMBED_FOOTER_MAX_CHARS = 2048
EMBED_TOTAL_MAX_CHARS = 6000
CUSTOM_ID_MAX_CHARS = 100
ROWS_MAX = 5
BUTTONS_PER_ROW_MAX = 5
LABEL_MAX_CHARS = 80


class DiscordError(Exception):
    """An error answer: HTTP ``status`` and Discord's JSON ``{"code", "message"[, "errors"]}``."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors is not None:
            data["errors"] = self.errors
        return data


def unknown_interaction() -> DiscordError:
    return DiscordError(404, 10062, "Unknown interaction")


def already_acknowledged() -> DiscordError:
    return DiscordError(400, 40060, "Interaction has already been acknowledged.")


def invalid_webhook_token() -> DiscordError:
    return DiscordError(401, 50027, "Invalid Webhook Token")


def unknown_webhook() -> DiscordError:
    return DiscordError(404, 10015, "Unknown Webhook")


def unknown_message() -> DiscordError:
    return DiscordError(404, 10008, "Unknown Message")


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def empty_message() -> DiscordError:
    return DiscordError(400, 50006, "Cannot send an empty message")


def invalid_form_body(path: str, error_code: str, message: str) -> DiscordError:
    """400 50035 with the nested ``errors`` object Discord gives, e.g. for ``content``."""
    errors: dict[str, Any] = {"_errors": [{"code": error_code, "message": message}]}
    for part in reversed(path.split(".")):
        errors = {part: errors}
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def too_long(path: str, limit: int) -> DiscordError:
    return invalid_form_body(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def check_message(body: dict[str, Any], *, creating: bool, has_files: bool) -> None:
    """Content, embeds and components within Discord's limits; a new message is not empty."""
    content = body.get("content")
    if content is not None and len(str(content)) > CONTENT_MAX_CHARS:
        raise too_long("content", CONTENT_MAX_CHARS)
    embeds = body.get("embeds") or []
    if len(embeds) > EMBEDS_MAX:
        raise too_long("embeds", EMBEDS_MAX)
    for index, embed in enumerate(embeds):
        _check_embed(embed, f"embeds.{index}")
    _check_components(body.get("components") or [])
    if creating and not (content or embeds or has_files or body.get("components")):
        raise empty_message()


def _check_embed(embed: dict[str, Any], path: str) -> None:
    limits = {
        "title": EMBED_TITLE_MAX_CHARS,
        "description": EMBED_DESCRIPTION_MAX_CHARS,
    }
    for key, limit in limits.items():
        if len(str(embed.get(key) or "")) > limit:
            raise too_long(f"{path}.{key}", limit)
    fields = embed.get("fields") or []
    if len(fields) > EMBED_FIELDS_MAX:
        raise too_long(f"{path}.fields", EMBED_FIELDS_MAX)
    for index, item in enumerate(fields):
        if len(str(item.get("name") or "")) > EMBED_FIELD_NAME_MAX_CHARS:
            raise too_long(f"{path}.fields.{index}.name", EMBED_FIELD_NAME_MAX_CHARS)
        if len(str(item.get("value") or "")) > EMBED_FIELD_VALUE_MAX_CHARS:
            raise too_long(f"{path}.fields.{index}.value", EMBED_FIELD_VALUE_MAX_CHARS)
    footer = str((embed.get("footer") or {}).get("text") or "")
    if len(footer) > EMBED_FOOTER_MAX_CHARS:
        raise too_long(f"{path}.footer.text", EMBED_FOOTER_MAX_CHARS)
    if _embed_chars(embed) > EMBED_TOTAL_MAX_CHARS:
        raise invalid_form_body(
            "embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )


def _embed_chars(embed: dict[str, Any]) -> int:
    fields = embed.get("fields") or []
    parts = [embed.get("title"), embed.get("description"), (embed.get("footer") or {}).get("text")]
    parts.append((embed.get("author") or {}).get("name"))
    parts += [f.get("name") for f in fields] + [f.get("value") for f in fields]
    return sum(len(str(p)) for p in parts if p)


def _check_components(rows: list[dict[str, Any]]) -> None:
    if len(rows) > ROWS_MAX:
        raise too_long("components", ROWS_MAX)
    for r, row in enumerate(rows):
        children = row.get("components") or []
        if len(children) > BUTTONS_PER_ROW_MAX:
            raise too_long(f"components.{r}.components", BUTTONS_PER_ROW_MAX)
        for c, child in enumerate(children):
            path = f"components.{r}.components.{c}"
            if len(str(child.get("custom_id") or "")) > CUSTOM_ID_MAX_CHARS:
                raise too_long(f"{path}.custom_id", CUSTOM_ID_MAX_CHARS)
            if len(str(child.get("label") or "")) > LABEL_MAX_CHARS:
                raise too_long(f"{path}.label", LABEL_MAX_CHARS)
