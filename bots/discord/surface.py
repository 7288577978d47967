"""A job's place on Discord: the interaction's original response, or its channel.

The original response shows the status, then becomes the result. It can be edited through the
interaction (this process) or through its stored token (after a restart) for 15 minutes; after
that — or when Discord says the token or the message is gone (401 50027, 404 10015) — the result
is posted in the channel, mentioning the user. Errors are classified here, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord

from backend.domain import Delivery, Job
from bots.discord.messages import DEFAULT_FILESIZE_LIMIT, Upload, fit_upload, result_embed
from bots.discord.views import progress_view, result_view
from bots.follow import Lane
from bots.follow.policy import Failure, SurfaceGone
from bots.i18n import translate

log = logging.getLogger("majicbot.discord")

TOKEN_TTL_S = 15 * 60
TOKEN_MARGIN_S = 60  # stop relying on a token a minute before Discord expires it
EDIT_INTERVAL_S = 2.0  # an interaction token's webhook bucket: about 5 requests per 2 s
# Discord error codes that mean "the original response is out of reach: post anew".
GONE_CODES = frozenset({50027, 10015, 10008, 10062})  # bad token, webhook, message, interaction


@dataclass(frozen=True)
class Target:
    """Where one job's status and result are shown."""

    channel_id: int
    user_id: int
    token_expires_at: float  # unix seconds
    filesize_limit: int = DEFAULT_FILESIZE_LIMIT
    interaction: discord.Interaction[Any] | None = None  # live interaction (this process)
    token: str | None = None  # stored interaction token (after a restart)
    message_id: int | None = None  # the original response, for editing through the token

    @classmethod
    def of_interaction(cls, interaction: discord.Interaction[Any]) -> Target:
        return cls(
            channel_id=int(interaction.channel_id or 0),
            user_id=interaction.user.id,
            token_expires_at=time.time() + TOKEN_TTL_S - TOKEN_MARGIN_S,
            filesize_limit=interaction.filesize_limit,
            interaction=interaction,
        )

    @classmethod
    def of_job(cls, job: Job) -> Target:
        """Rebuilt from SQLite after a restart; the token age is bounded by the job's age."""
        reply = job.reply_to
        return cls(
            channel_id=int(reply.chat_id),
            user_id=int(job.requester.user_id),
            token_expires_at=job.created_at + TOKEN_TTL_S - TOKEN_MARGIN_S,
            token=reply.token,
            message_id=int(reply.message_id) if reply.message_id else None,
        )


class DiscordSurface:
    """One job's original response (while its token lives) and its channel."""

    def __init__(self, client: discord.Client, job_id: str, target: Target, lang: str) -> None:
        self._client = client
        self._job_id = job_id
        self._target = target
        self.lang = lang
        self.lane = Lane(f"discord:{job_id}", EDIT_INTERVAL_S)

    async def show(self, text: str, *, cancellable: bool) -> None:
        view = progress_view(self._job_id, self.lang) if cancellable else None
        await self._edit(content=text, view=view)

    async def keep_alive(self) -> None:
        """Nothing: the original response shows the progress."""

    async def send_result(self, job: Job, *, anew: bool) -> str:
        assert job.result_path is not None
        limit = self._target.filesize_limit if not anew else self._channel_filesize_limit()
        upload = await asyncio.to_thread(fit_upload, job.result_path, limit)
        fields = self._result_fields(job, upload)
        if anew:
            message = await self._post(fields.pop("content"), **fields)
        else:
            message = await self._edit(**fields)
        return str(message.id)

    async def remove_status(self) -> None:
        """Nothing: the original response became the result."""

    async def send_final(self, text: str, *, anew: bool) -> None:
        if anew:
            await self._post(text)
        else:
            await self._edit(content=text, embed=None, view=None, attachments=[])

    def classify(self, error: Exception) -> Failure:
        return classify(error)

    def _result_fields(self, job: Job, upload: Upload) -> dict[str, Any]:
        note = None
        if upload.recompressed_as:
            note = translate("discord.recompressed", self.lang, format=upload.recompressed_as)
        return {
            "content": note,
            "embed": result_embed(job, self.lang, upload.filename),
            "attachments": [upload.file(spoiler=job.delivery is Delivery.SPOILER)],  # issue 16
            "view": result_view(job.id, self.lang),
        }

    async def _edit(self, **fields: Any) -> discord.Message:
        """Edit the original response; ``SurfaceGone`` once its token cannot be used."""
        target = self._target
        if time.time() >= target.token_expires_at:
            raise SurfaceGone("the interaction token expired")
        fields.setdefault("allowed_mentions", discord.AllowedMentions.none())
        if target.interaction is not None:
            return await target.interaction.edit_original_response(**fields)
        if target.token and target.message_id and self._client.application_id:
            webhook = discord.Webhook.partial(
                self._client.application_id, target.token, client=self._client
            )
            return await webhook.edit_message(target.message_id, **fields)
        raise SurfaceGone("no original response to edit")

    async def _post(self, text: str | None, **fields: Any) -> discord.Message:
        """A new channel message mentioning the user (only them: nothing else pings)."""
        user_id = self._target.user_id
        mention = translate("discord.delivered_in_channel", self.lang, mention=f"<@{user_id}>")
        content = f"{mention}\n{text}" if text else mention
        files = fields.pop("attachments", [])
        channel = self._client.get_partial_messageable(self._target.channel_id)
        return await channel.send(
            content,
            files=files,
            allowed_mentions=discord.AllowedMentions(
                users=[discord.Object(user_id)], everyone=False, roles=False
            ),
            **fields,
        )

    def _channel_filesize_limit(self) -> int:
        channel = self._client.get_channel(self._target.channel_id)
        guild = getattr(channel, "guild", None)
        if isinstance(guild, discord.Guild):
            return guild.filesize_limit
        return min(self._target.filesize_limit, DEFAULT_FILESIZE_LIMIT)


def classify(error: Exception) -> Failure:
    """What a discord.py error means for a delivery."""
    if isinstance(error, discord.HTTPException):
        if error.code in GONE_CODES or error.status == 404:
            return Failure.GONE
        if isinstance(error, discord.Forbidden):
            return Failure.UNREACHABLE
        if error.status == 429 or error.status >= 500:
            return Failure.TRANSIENT
        return Failure.REJECTED
    if isinstance(error, aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return Failure.TRANSIENT
    return Failure.REJECTED
