"""Which files a configured model needs, and the safetensors header check (no torch)."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest

from backend.config import Config
from backend.engine.factory import resolve_devices
from backend.engine.files import Component, check_file, model_files, read_header


def config(models_dir: Path, **engine: object) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        engine=dataclasses.replace(base.engine, models_dir=models_dir, **engine),  # type: ignore[arg-type]
    )


def test_majicflus_layout_is_modelscopes(tmp_path: Path) -> None:
    files = model_files(config(tmp_path))
    flux = tmp_path / "black-forest-labs/FLUX.1-dev"
    assert [(c.component, c.repo, c.expected) for c in files.components] == [
        (
            Component.CLIP,
            "black-forest-labs/FLUX.1-dev",
            (flux / "text_encoder/model.safetensors",),
        ),
        (Component.T5, "black-forest-labs/FLUX.1-dev", (flux / "text_encoder_2/*.safetensors",)),
        (Component.VAE, "black-forest-labs/FLUX.1-dev", (flux / "ae.safetensors",)),
        (
            Component.DIT,
            "MAILAND/majicflus_v1",
            (tmp_path / "MAILAND/majicflus_v1/majicflus_v134.safetensors",),
        ),
    ]
    assert (files.tokenizer_1, files.tokenizer_2) == (flux / "tokenizer", flux / "tokenizer_2")
    assert all(c.paths == () for c in files.components)


def test_a_dit_path_override_is_not_downloaded(tmp_path: Path) -> None:
    own = tmp_path / "mine.safetensors"
    files = model_files(config(tmp_path / "models", dit_path=str(own)))
    assert files.of(Component.DIT).expected == (own,)
    assert "MAILAND/majicflus_v1" not in files.download_patterns()


def write_safetensors(path: Path, header: object, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_header_gives_shapes_parameters_and_expected_size(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
        "b": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [12, 16]},
    }
    write_safetensors(path, header, bytes(16))
    parsed = read_header(path)
    assert parsed.tensors == {"a": ("BF16", (2, 3)), "b": ("F8_E4M3", (4,))}
    assert (parsed.parameters, parsed.expected_file_size) == (10, path.stat().st_size)
    assert check_file(path) is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"abc", "shorter than a safetensors header"),
        (struct.pack("<Q", 10) + b"{", "truncated inside the header"),
        (struct.pack("<Q", 3) + b"xyz", "not a safetensors file (header is not JSON)"),
    ],
)
def test_broken_headers_have_readable_reasons(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    problem = check_file(path)
    assert problem is not None and problem.reason == reason


def test_a_shape_that_disagrees_with_its_bytes_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    write_safetensors(path, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, bytes(8))
    problem = check_file(path)
    assert problem is not None
    assert problem.reason == "not a safetensors file (size of 'a' does not match its shape)"


def test_explicit_devices_need_no_torch_and_keep_their_order() -> None:
    assert resolve_devices(("cuda:1", "cuda", "cuda:1", "cpu")) == ["cuda:1", "cuda:0", "cpu"]
