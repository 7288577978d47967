"""Result PNGs: the A1111 ``parameters`` chunk, the dated path, the atomic write."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from backend.domain import GenerationParams
from backend.images import output_path, parameters_text, read_parameters, write_png


def test_parameters_text_in_a1111_form() -> None:
    params = GenerationParams("a cat, in a hat", 42, 28, 1024, 768, 3.5)
    assert parameters_text(params, "majicflus_v1", "balanced", "majicbot 0.1.0") == (
        "a cat, in a hat\n"
        "Steps: 28, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
        "Seed: 42, Size: 1024x768, Model: majicflus_v1, Profile: balanced, Version: majicbot 0.1.0"
    )
    odd = parameters_text(GenerationParams("p", 1, 4, 64, 64, 2.0), "my,model")
    assert odd.splitlines()[1].endswith('Size: 64x64, Model: "my,model"')


def test_output_path_is_dated_by_acceptance() -> None:
    created = time.mktime((2026, 3, 9, 23, 30, 0, 0, 0, -1))
    assert output_path(Path("/out"), "abc123", created) == Path("/out/2026-03-09/abc123.png")


async def test_write_png_is_atomic_and_readable(tmp_path: Path) -> None:
    target = tmp_path / "outputs" / "2026-03-09" / "job.png"
    await write_png(Image.new("RGB", (32, 16), (1, 2, 3)), target, "prompt\nSteps: 2")
    assert read_parameters(target) == "prompt\nSteps: 2"
    with Image.open(target) as image:
        assert (image.size, image.getpixel((0, 0))) == ((32, 16), (1, 2, 3))
    assert [p.name for p in target.parent.iterdir()] == ["job.png"]  # no temp file left behind


@pytest.mark.parametrize("prompt", ["a red fox in snow", "雪中的红狐狸 🦊"])
async def test_png_bytes_from_an_actor_get_the_parameters_chunk(
    tmp_path: Path, prompt: str
) -> None:
    from backend.images import decode_png, encode_png, with_parameters

    image = Image.new("RGB", (24, 16), (9, 8, 7))
    png = encode_png(image)
    text = f"{prompt}\nSteps: 2, Seed: 5"
    target = tmp_path / "outputs" / "day" / "job.png"
    await write_png(image, target, text, png)
    assert read_parameters(target) == text  # tEXt for Latin-1, iTXt (UTF-8) otherwise
    assert target.read_bytes() == with_parameters(png, text)
    with Image.open(target) as written:
        assert written.tobytes() == decode_png(png).tobytes() == image.tobytes()
    with pytest.raises(ValueError):
        with_parameters(b"GIF89a" + png[6:], text)
