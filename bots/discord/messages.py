"""A finished job on Discord: the attachment (fitted to the size limit) and its embed."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import discord

from backend.domain import Delivery, Job
from bots.i18n import translate
from bots.render import format_seconds, shorten

DEFAULT_FILESIZE_LIMIT = 10 * 1024 * 1024  # Discord's limit without boosts (and in DMs)
_JPEG_QUALITIES = (95, 90, 85, 80)
_EMBED_DESCRIPTION_LIMIT = 4096


@dataclass(frozen=True)
class Upload:
    """The bytes to attach; ``recompressed_as`` names the format when the PNG did not fit."""

    data: bytes = b""
    filename: str = "image.png"
    recompressed_as: str | None = None

    def file(self, *, spoiler: bool = False) -> discord.File:
        """A fresh ``discord.File`` (one is consumed by each send attempt); ``spoiler`` names it
        ``SPOILER_…`` so that Discord blurs it until clicked."""
        return discord.File(io.BytesIO(self.data), filename=self.filename, spoiler=spoiler)


def fit_upload(path: Path, limit_bytes: int) -> Upload:
    """The PNG as is when it fits, else a high-quality JPEG (downscaled if it must). Blocking."""
    data = path.read_bytes()
    if len(data) <= limit_bytes:
        return Upload(data, path.name)
    from PIL import Image  # only needed for the rare oversized image

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    name = path.with_suffix(".jpg").name
    while True:
        for quality in _JPEG_QUALITIES:
            buffer = io.BytesIO()
            rgb.save(buffer, "JPEG", quality=quality, optimize=True)
            if buffer.tell() <= limit_bytes:
                return Upload(buffer.getvalue(), name, "JPEG")
        if min(rgb.size) <= 16:
            raise ValueError(f"cannot fit {path.name} into {limit_bytes} bytes")
        rgb = rgb.resize((rgb.width * 3 // 4, rgb.height * 3 // 4), Image.Resampling.LANCZOS)


def result_embed(job: Job, lang: str, filename: str) -> discord.Embed:
    """Prompt, seed, steps, size, guidance, seconds, job id and who asked, around the image.

    A spoilered image (``Delivery.SPOILER``) is not put in the embed, which cannot blur it: it
    stays a plain ``SPOILER_`` attachment below the embed.
    """
    params = job.params
    embed = discord.Embed(description=shorten(params.prompt, _EMBED_DESCRIPTION_LIMIT))
    fields = [
        ("discord.field.seed", str(params.seed)),
        ("discord.field.steps", str(params.steps)),
        ("discord.field.size", f"{params.width}×{params.height}"),
        ("discord.field.guidance", f"{params.guidance:g}"),
    ]
    if job.timings is not None:
        fields.append(("discord.field.seconds", format_seconds(job.timings.generate_s)))
    fields += [
        ("discord.field.job", job.id),
        ("discord.field.requester", f"<@{job.requester.user_id}>"),
    ]
    for key, value in fields:
        embed.add_field(name=translate(key, lang), value=value, inline=True)
    if job.delivery is not Delivery.SPOILER:  # issue 16
        embed.set_image(url=f"attachment://{filename}")
    return embed
