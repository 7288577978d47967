"""Result images on disk: ``<outputs>/YYYY-MM-DD/<job>.png``, with an A1111 ``parameters`` chunk.

The ``parameters`` text is what Automatic1111, Forge, ComfyUI's loaders and civitai read:

    a cat in a hat
    Steps: 28, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5,
    Seed: 42, Size: 1024x768, Model: majicflus_v1, Profile: balanced, Version: majicbot 0.1.0

(one line after the prompt; wrapped here). FLUX.1-dev's guidance is "Distilled CFG Scale" in Forge.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from backend.domain import GenerationParams
from backend.files import open_private, private_dir

if TYPE_CHECKING:
    from PIL.Image import Image


def output_path(outputs_dir: Path, job_id: str, created_at: float) -> Path:
    """Where the PNG of ``job_id`` goes: a folder per (local) day of acceptance."""
    day = time.strftime("%Y-%m-%d", time.localtime(created_at))
    return outputs_dir / day / f"{job_id}.png"


def parameters_text(
    params: GenerationParams, model: str, profile: str = "", version: str = ""
) -> str:
    """The A1111 ``parameters`` string for ``params``."""
    fields = [
        ("Steps", str(params.steps)),
        ("Sampler", "Euler"),
        ("Schedule type", "Simple"),
        ("CFG scale", "1"),
        ("Distilled CFG Scale", _number(params.guidance)),
        ("Seed", str(params.seed)),
        ("Size", f"{params.width}x{params.height}"),
        ("Model", model),
        ("Profile", profile),
        ("Version", version),
    ]
    line = ", ".join(f"{name}: {_quote(value)}" for name, value in fields if value)
    return f"{params.prompt}\n{line}"


def _number(value: float) -> str:
    return f"{value:g}"


def _quote(value: str) -> str:
    # A1111 quotes values that contain its separators.
    return f'"{value}"' if any(ch in value for ch in ',:"\n') else value


def write_png_sync(
    image: Image | None, path: Path, parameters: str, png: bytes | None = None
) -> None:
    """Encode and write atomically: a temp file in the same folder, fsync, then rename.

    ``png``: the image already encoded (a Ray actor's result); the parameters chunk is added to
    those bytes instead of encoding ``image`` again. The folders are 0700 and the file 0600
    (``backend.files``): the PNG carries the prompt.
    """
    from PIL.PngImagePlugin import PngInfo

    private_dir(path.parent.parent)  # the outputs folder
    private_dir(path.parent)  # the day's folder
    info = PngInfo()
    info.add_text("parameters", parameters)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left over by a crash of an earlier process with this pid
    try:
        with os.fdopen(open_private(tmp), "wb") as fh:
            if png is None:
                assert image is not None, "nothing to write"
                image.save(fh, format="PNG", pnginfo=info)
            else:
                fh.write(with_parameters(png, parameters))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


async def write_png(
    image: Image | None, path: Path, parameters: str, png: bytes | None = None
) -> None:
    """``write_png_sync`` in a thread: PIL encoding and file I/O stay off the event loop."""
    await asyncio.to_thread(write_png_sync, image, path, parameters, png)


_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_AFTER_IHDR = len(_SIGNATURE) + 8 + 13 + 4  # length, type, 13 bytes of IHDR data, CRC


def with_parameters(png: bytes, parameters: str) -> bytes:
    """``png`` with a ``parameters`` text chunk after its header, as PIL's ``add_text`` writes
    it: ``tEXt`` when the text is Latin-1, else an uncompressed ``iTXt`` (UTF-8)."""
    if png[: len(_SIGNATURE)] != _SIGNATURE or png[12:16] != b"IHDR":
        raise ValueError("not a PNG stream that starts with its IHDR chunk")
    try:
        kind, data = b"tEXt", b"parameters\0" + parameters.encode("latin-1")
    except UnicodeEncodeError:  # flag 0, method 0, no language, no translated keyword
        kind, data = b"iTXt", b"parameters\0\0\0\0\0" + parameters.encode("utf-8")
    chunk = struct.pack(">I", len(data)) + kind + data
    chunk += struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return png[:_AFTER_IHDR] + chunk + png[_AFTER_IHDR:]


def encode_png(image: Image) -> bytes:
    """``image`` as PNG bytes, without metadata (a Ray actor's result; blocking)."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(png: bytes) -> Image:
    """The image of PNG bytes, fully read (blocking)."""
    import io

    from PIL import Image as PILImage

    image = PILImage.open(io.BytesIO(png))
    image.load()
    return image


def read_parameters(path: Path) -> str | None:
    """The ``parameters`` text of a PNG (for tests and tools), or None."""
    from PIL import Image as PILImage

    with PILImage.open(path) as image:
        text = image.info.get("parameters")
    return text if isinstance(text, str) else None
