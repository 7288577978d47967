"""Pure pieces of the Discord adapter: edit throttling, fitting an image under a size limit."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bots.discord.delivery import EditThrottle
from bots.discord.messages import fit_upload


def test_throttle_never_repeats_a_text_and_waits_between_edits() -> None:
    free = EditThrottle(interval_s=0.0, shown="Queued, position 1")
    assert [free.allows(t) for t in ["Queued, position 1", "Step 1/2", "Step 1/2", "Step 2/2"]] == [
        False,
        True,
        False,
        True,
    ]
    slow = EditThrottle(interval_s=3600.0)
    assert [slow.allows(t) for t in ["Queued", "Step 1/2"]] == [True, False]


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
