"""Pure pieces of the Discord adapter: classifying errors, fitting an image under a limit."""

from __future__ import annotations

from pathlib import Path

import discord
from PIL import Image

from bots.discord.messages import fit_upload
from bots.discord.surface import classify
from bots.follow.policy import Failure


class _Response:
    """What ``discord.HTTPException`` reads from an aiohttp response."""

    def __init__(self, status: int) -> None:
        self.status, self.reason = status, "test"


def _http(cls: type[discord.HTTPException], status: int, code: int) -> discord.HTTPException:
    return cls(_Response(status), {"code": code, "message": "test"})  # type: ignore[arg-type]


def test_discord_errors_are_classified_once_for_every_delivery() -> None:
    assert classify(_http(discord.HTTPException, 401, 50027)) is Failure.GONE  # expired token
    assert classify(_http(discord.NotFound, 404, 10015)) is Failure.GONE  # unknown webhook
    assert classify(_http(discord.NotFound, 404, 10008)) is Failure.GONE  # unknown message
    assert classify(_http(discord.Forbidden, 403, 50013)) is Failure.UNREACHABLE
    assert classify(_http(discord.HTTPException, 429, 0)) is Failure.TRANSIENT
    assert classify(_http(discord.DiscordServerError, 503, 0)) is Failure.TRANSIENT
    assert classify(_http(discord.HTTPException, 400, 50035)) is Failure.REJECTED
    assert classify(TimeoutError()) is Failure.TRANSIENT
    assert classify(ValueError("a bug")) is Failure.REJECTED


def _noise_png(path: Path, side: int = 128) -> Path:
    Image.effect_noise((side, side), 80).convert("RGB").save(path, "PNG")
    return path


def test_fit_upload_keeps_a_png_that_fits(tmp_path: Path) -> None:
    path = _noise_png(tmp_path / "job.png")
    upload = fit_upload(path, path.stat().st_size)
    assert (upload.data, upload.filename, upload.recompressed_as) == (
        path.read_bytes(),
        "job.png",
        None,
    )


def test_fit_upload_sends_a_jpeg_under_the_limit_when_the_png_is_too_large(
    tmp_path: Path,
) -> None:
    path = _noise_png(tmp_path / "job.png")
    limit = path.stat().st_size // 4
    upload = fit_upload(path, limit)
    assert (upload.filename, upload.recompressed_as) == ("job.jpg", "JPEG")
    assert len(upload.data) <= limit
    assert upload.data[:3] == b"\xff\xd8\xff"  # a JPEG
