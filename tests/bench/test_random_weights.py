"""The random-weight fixture writer: exact layouts, diffsynth detection, values fit for timing."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors import safe_open

from bench import random_weights as rw


def _sparse_files_supported(directory: Path) -> bool:
    probe = directory / "probe"
    with probe.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    sparse = probe.stat().st_blocks * 512 < 1024 * 1024
    probe.unlink()
    return sparse


def test_layout_hashes_match_their_keys_and_shapes() -> None:
    found = rw.layouts()
    assert sorted(found) == ["clip", "dit", "t5", "vae"]
    for layout in found.values():
        assert rw.keys_hash(layout.tensors) == layout.model_hash


@pytest.mark.parametrize("model", ["majicflus_v1", "flux1-dev"])
def test_plan_has_real_sizes(model: str) -> None:
    files = {str(f.relpath): f for f in rw.plan(model)}
    dit = files[str(rw.dit_relpath(model))]
    # 11.9 B DiT parameters: 11.9 GB in float8, 23.8 GB in bfloat16 (FLUX.md).
    expected_gb = 11.9 if model == "majicflus_v1" else 23.8
    assert dit.data_bytes / 1e9 == pytest.approx(expected_gb, rel=0.01)
    t5 = [f for f in files.values() if f.group == "t5"]
    assert [f.relpath.name for f in t5] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert sum(f.data_bytes for f in t5) / 1e9 == pytest.approx(9.52, rel=0.01)


def test_sparse_fixture_is_detected_by_diffsynth(tmp_path: Path) -> None:
    if not _sparse_files_supported(tmp_path):
        pytest.skip("this filesystem has no sparse files; the check would write 22 GB")
    lines: list[str] = []
    paths = rw.write_fixture(tmp_path, fill="sparse", log=lines.append)
    assert all(line.startswith("wrote") for line in lines)
    rw.verify(tmp_path)  # diffsynth's own hash_model_file, shards hashed together
    again: list[str] = []
    rw.write_fixture(tmp_path, fill="sparse", log=again.append)
    assert all(line.startswith("present") for line in again)
    assert paths[0] == tmp_path / "MAILAND/majicflus_v1/majicflus_v134.safetensors"


def test_verify_rejects_a_wrong_layout(tmp_path: Path) -> None:
    if not _sparse_files_supported(tmp_path):
        pytest.skip("this filesystem has no sparse files")
    rw.write_fixture(tmp_path, fill="sparse", log=lambda _: None)
    clip = next(f for f in rw.plan() if f.group == "clip")
    rw.write_file(tmp_path / clip.relpath, clip.tensors[:-1], fill="sparse")
    with pytest.raises(ValueError, match="clip: diffsynth hash"):
        rw.verify(tmp_path)


def test_random_fill_writes_real_values(tmp_path: Path) -> None:
    dit = rw.plan()[0]
    matrices = [t for t in dit.tensors if len(t.shape) == 2][:3]
    scales = [t for t in dit.tensors if t.is_norm_scale][:2]
    biases = [t for t in dit.tensors if len(t.shape) == 1 and not t.is_norm_scale][:2]
    tensors = [*matrices, *scales, *biases]
    path = tmp_path / "part.safetensors"
    rw.write_file(path, tensors, pool=rw.RandomPool(nbytes=1 << 20))
    assert rw.is_complete(path, tensors)
    with safe_open(str(path), framework="pt") as fh:
        for t in tensors:
            value = fh.get_tensor(t.name).float()
            assert tuple(value.shape) == t.shape
            assert value.isfinite().all()
            if t.is_norm_scale:
                assert (value == 1).all()
            else:
                assert value.std().item() == pytest.approx(rw.WEIGHT_STD, rel=0.1)
        assert str(fh.get_tensor(matrices[0].name).dtype) == "torch.float8_e4m3fn"
        assert str(fh.get_tensor(biases[0].name).dtype) == "torch.bfloat16"
    # Two tensors of the same shape get different bytes (cut at different pool offsets).
    with safe_open(str(path), framework="pt") as fh:
        a, b = (fh.get_tensor(t.name).float() for t in biases)
        assert not (a[: b.numel()] == b[: a.numel()]).all()


def test_an_interrupted_file_is_not_complete(tmp_path: Path) -> None:
    clip = next(f for f in rw.plan() if f.group == "clip")
    path = tmp_path / "model.safetensors"
    path.write_bytes(rw.header_bytes(clip.tensors))
    assert not rw.is_complete(path, clip.tensors)
