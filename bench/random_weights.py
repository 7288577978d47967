"""Full-size random-weight FLUX.1 fixtures with the exact key layouts of the real files.

    python -m bench.random_weights <models_dir> [--model majicflus_v1|flux1-dev] [--dtype ...]

writes, in the ModelScope layout the product reads::

    <models_dir>/MAILAND/majicflus_v1/majicflus_v134.safetensors          (model majicflus_v1)
    <models_dir>/black-forest-labs/FLUX.1-dev/flux1-dev.safetensors       (model flux1-dev)
    <models_dir>/black-forest-labs/FLUX.1-dev/ae.safetensors
    <models_dir>/black-forest-labs/FLUX.1-dev/text_encoder/model.safetensors
    <models_dir>/black-forest-labs/FLUX.1-dev/text_encoder_2/model-0000{1,2}-of-00002.safetensors
    <models_dir>/black-forest-labs/FLUX.1-dev/tokenizer{,_2}/        (copied with --tokenizers-from)

diffsynth recognises a file by an md5 over its keys and shapes (``hash_model_file``), so these
files load as the real models. Each file is written tensor by tensor from a small pool of random
bytes (host RAM stays around 100 MB), under a temporary name renamed at the end, and skipped when a
file of the right size and header is already there. Values: N(0, 0.02) everywhere except
normalisation scales, which are 1 (so activations neither vanish nor overflow at full depth).

``--fill sparse`` writes only the headers and leaves the data as a hole (no disk blocks, zeros):
enough for model detection, never for timing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

LAYOUTS_DIR = Path(__file__).parent / "layouts"
FLUX_DEV = Path("black-forest-labs/FLUX.1-dev")
T5_SHARD_MAX_BYTES = 5_000_000_000  # what the real shards were cut at (4.99 GB + 4.53 GB)
POOL_BYTES = 64 * 1024 * 1024
WEIGHT_STD = 0.02
SEED = 20240801


@dataclass(frozen=True)
class DType:
    """A safetensors dtype: its header code, bytes per element and torch attribute name."""

    code: str
    itemsize: int
    torch_name: str


DTYPES: dict[str, DType] = {
    "float8_e4m3fn": DType("F8_E4M3", 1, "float8_e4m3fn"),
    "bfloat16": DType("BF16", 2, "bfloat16"),
    "float16": DType("F16", 2, "float16"),
    "float32": DType("F32", 4, "float32"),
}


@dataclass(frozen=True)
class Layout:
    """Keys and shapes of one real file, as listed in ``bench/layouts/*.tsv``."""

    kind: str  # "dit", "t5", "clip", "vae"
    model_hash: str  # diffsynth's hash_model_file of the real file
    tensors: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DType

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape:
            n *= d
        return n

    @property
    def is_norm_scale(self) -> bool:
        """Normalisation gains (RMSNorm/LayerNorm/GroupNorm weights): filled with ones."""
        leaf = self.name.rsplit(".", 1)[-1]
        norm_gain = leaf == "scale" or ("norm" in self.name and leaf == "weight")
        return len(self.shape) == 1 and norm_gain


@dataclass(frozen=True)
class FixtureFile:
    """One safetensors file to write; ``group`` joins the shards that hash together."""

    relpath: Path
    group: str
    tensors: tuple[Tensor, ...]

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def read_layout(path: Path) -> Layout:
    """Parse a layout file: ``# kind hash=... tensors=N`` then ``key<TAB>AxBxC`` lines."""
    lines = path.read_text().splitlines()
    head = lines[0].lstrip("# ").split()
    fields = dict(part.split("=", 1) for part in head[1:])
    tensors = tuple(
        (key, tuple(int(d) for d in dims.split("x")))
        for key, dims in (line.split("\t") for line in lines[1:] if line.strip())
    )
    if len(tensors) != int(fields["tensors"]):
        raise ValueError(f"{path}: header says {fields['tensors']} tensors, found {len(tensors)}")
    return Layout(kind=head[0], model_hash=fields["hash"], tensors=tensors)


def layouts() -> dict[str, Layout]:
    """The four FLUX.1-dev layouts by kind."""
    found = (read_layout(p) for p in sorted(LAYOUTS_DIR.glob("*.tsv")))
    return {layout.kind: layout for layout in found}


def keys_hash(shapes: Iterable[tuple[str, Sequence[int]]]) -> str:
    """diffsynth's ``hash_model_file`` computed from keys and shapes, without any file."""
    parts: list[str] = []
    for key, shape in shapes:
        parts.append(key + ":" + "_".join(str(d) for d in shape))
        parts.append(key)
    return hashlib.md5(",".join(sorted(parts)).encode("utf-8")).hexdigest()


def dit_relpath(model: str) -> Path:
    if model == "majicflus_v1":
        return Path("MAILAND/majicflus_v1/majicflus_v134.safetensors")
    if model == "flux1-dev":
        return FLUX_DEV / "flux1-dev.safetensors"
    raise ValueError(f"unknown model {model!r}; use majicflus_v1 or flux1-dev")


def default_dit_dtype(model: str) -> str:
    # majicflus v1 is published in float8; FLUX.1-dev in bfloat16.
    return "float8_e4m3fn" if model == "majicflus_v1" else "bfloat16"


def plan(model: str = "majicflus_v1", dit_dtype: str | None = None) -> list[FixtureFile]:
    """Every file of ``model``'s fixture with the dtypes the published files use.

    DiT matrices take ``dit_dtype``; its 1-D tensors (biases, norm scales) stay bfloat16 as in
    published float8 checkpoints. CLIP is float16, T5 bfloat16 in two shards, the VAE float32.
    """
    lay = layouts()
    dit_dt = DTYPES[dit_dtype or default_dit_dtype(model)]
    bf16 = DTYPES["bfloat16"]

    def dit_dtype_of(shape: tuple[int, ...]) -> DType:
        return dit_dt if len(shape) > 1 else (bf16 if dit_dt.itemsize < 2 else dit_dt)

    dit = tuple(Tensor(k, s, dit_dtype_of(s)) for k, s in lay["dit"].tensors)
    clip = tuple(Tensor(k, s, DTYPES["float16"]) for k, s in lay["clip"].tensors)
    vae = tuple(Tensor(k, s, DTYPES["float32"]) for k, s in lay["vae"].tensors)
    t5 = [Tensor(k, s, bf16) for k, s in lay["t5"].tensors]
    shards = _split(t5, T5_SHARD_MAX_BYTES)
    files = [
        FixtureFile(dit_relpath(model), "dit", dit),
        FixtureFile(FLUX_DEV / "text_encoder/model.safetensors", "clip", clip),
        *(
            FixtureFile(
                FLUX_DEV / f"text_encoder_2/model-{i:05d}-of-{len(shards):05d}.safetensors",
                "t5",
                tuple(shard),
            )
            for i, shard in enumerate(shards, start=1)
        ),
        FixtureFile(FLUX_DEV / "ae.safetensors", "vae", vae),
    ]
    return files


def _split(tensors: list[Tensor], max_bytes: int) -> list[list[Tensor]]:
    shards: list[list[Tensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def expected_hashes() -> dict[str, str]:
    """Group ("dit", "t5", ...) → the hash diffsynth must compute for that group's file(s)."""
    return {kind: layout.model_hash for kind, layout in layouts().items()}


# ---- writing -----------------------------------------------------------------------------------


def header_bytes(tensors: Sequence[Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors header (length prefix + JSON, padded to 8 bytes) for contiguous data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for t in tensors:
        header[t.name] = {
            "dtype": t.dtype.code,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


class RandomPool:
    """A few MB of random values per dtype; tensors are cut from it at shifting offsets."""

    def __init__(self, nbytes: int = POOL_BYTES, seed: int = SEED) -> None:
        self._nbytes = nbytes
        self._seed = seed
        self._pools: dict[str, memoryview] = {}
        self._ones: dict[str, memoryview] = {}

    def _make(self, dtype: DType, ones: bool) -> memoryview:
        import torch

        n = self._nbytes // dtype.itemsize
        tdt = getattr(torch, dtype.torch_name)
        if ones:
            values = torch.ones(n, dtype=tdt)
        else:
            gen = torch.Generator().manual_seed(self._seed)
            values = (torch.randn(n, generator=gen) * WEIGHT_STD).to(tdt)
        return memoryview(values.view(torch.uint8).numpy().tobytes())

    def chunks(self, tensor: Tensor, index: int) -> Iterator[memoryview]:
        """Bytes of ``tensor`` (the ``index``-th of its file) in pool-sized pieces."""
        cache = self._ones if tensor.is_norm_scale else self._pools
        pool = cache.get(tensor.dtype.code)
        if pool is None:
            pool = cache[tensor.dtype.code] = self._make(tensor.dtype, tensor.is_norm_scale)
        size = len(pool)
        step = tensor.dtype.itemsize
        offset = (index * 7919 * step) % size
        remaining = tensor.nbytes
        while remaining:
            n = min(remaining, size - offset)
            yield pool[offset : offset + n]
            remaining -= n
            offset = 0


Progress = Callable[[FixtureFile, int], None]


def write_file(
    path: Path, tensors: Sequence[Tensor], *, fill: str = "random", pool: RandomPool | None = None
) -> None:
    """Write one safetensors file under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    head = header_bytes(tensors)
    total = len(head) + sum(t.nbytes for t in tensors)
    with tmp.open("wb") as fh:
        fh.write(head)
        if fill == "sparse":
            fh.truncate(total)
        elif fill == "random":
            _write_random(fh, tensors, pool or RandomPool())
        else:
            raise ValueError(f"unknown fill {fill!r}")
    if tmp.stat().st_size != total:
        raise OSError(f"{tmp}: wrote {tmp.stat().st_size} bytes, expected {total}")
    os.replace(tmp, path)


def _write_random(fh: IO[bytes], tensors: Sequence[Tensor], pool: RandomPool) -> None:
    for index, tensor in enumerate(tensors):
        for chunk in pool.chunks(tensor, index):
            fh.write(chunk)


def is_complete(path: Path, tensors: Sequence[Tensor]) -> bool:
    """True when ``path`` exists with exactly this header and total size."""
    head = header_bytes(tensors)
    try:
        if path.stat().st_size != len(head) + sum(t.nbytes for t in tensors):
            return False
        with path.open("rb") as fh:
            return fh.read(len(head)) == head
    except FileNotFoundError:
        return False


def write_fixture(
    models_dir: Path,
    model: str = "majicflus_v1",
    dit_dtype: str | None = None,
    *,
    fill: str = "random",
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write every missing file of the fixture; returns the safetensors paths in plan order."""
    pool = RandomPool()
    paths = []
    for f in plan(model, dit_dtype):
        path = models_dir / f.relpath
        paths.append(path)
        if not force and is_complete(path, f.tensors):
            log(f"present  {f.relpath}")
            continue
        start = time.perf_counter()
        write_file(path, f.tensors, fill=fill, pool=pool)
        seconds = time.perf_counter() - start
        gb = f.data_bytes / 1e9
        log(f"wrote    {f.relpath}  {gb:.2f} GB in {seconds:.1f} s ({gb / seconds:.2f} GB/s)")
    if (models_dir / FLUX_DEV / "text_encoder_2").exists():
        _write_t5_index(models_dir, model, dit_dtype)
    return paths


def _write_t5_index(models_dir: Path, model: str, dit_dtype: str | None) -> None:
    shards = [f for f in plan(model, dit_dtype) if f.group == "t5"]
    index = {
        "metadata": {"total_size": sum(f.data_bytes for f in shards)},
        "weight_map": {t.name: f.relpath.name for f in shards for t in f.tensors},
    }
    path = models_dir / FLUX_DEV / "text_encoder_2/model.safetensors.index.json"
    path.write_text(json.dumps(index, indent=2) + "\n")


def copy_tokenizers(source: Path, models_dir: Path) -> None:
    """Copy ``source/tokenizer`` and ``source/tokenizer_2`` into the FLUX.1-dev folder."""
    for name in ("tokenizer", "tokenizer_2"):
        src = source / name
        if not src.is_dir():
            raise FileNotFoundError(f"{src} is missing (make it with bench.fixture_tokenizers)")
        dst = models_dir / FLUX_DEV / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)


def verify(models_dir: Path, model: str = "majicflus_v1", dit_dtype: str | None = None) -> None:
    """Check with diffsynth's own ``hash_model_file`` that each file is detected as the real one."""
    from diffsynth.core.loader.file import hash_model_file

    groups: dict[str, list[str]] = {}
    for f in plan(model, dit_dtype):
        groups.setdefault(f.group, []).append(str(models_dir / f.relpath))
    expected = expected_hashes()
    for group, paths in groups.items():
        got = hash_model_file(paths if len(paths) > 1 else paths[0])
        if got != expected[group]:
            raise ValueError(f"{group}: diffsynth hash {got} != expected {expected[group]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.random_weights", description=__doc__)
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--model", default="majicflus_v1", choices=("majicflus_v1", "flux1-dev"))
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default=None, help="DiT matrix dtype (default: as real)"
    )
    parser.add_argument("--fill", choices=("random", "sparse"), default="random")
    parser.add_argument("--force", action="store_true", help="rewrite files already complete")
    parser.add_argument("--tokenizers-from", type=Path, help="folder with tokenizer/, tokenizer_2/")
    parser.add_argument("--no-verify", action="store_true", help="skip diffsynth's hash check")
    args = parser.parse_args(argv)
    write_fixture(args.models_dir, args.model, args.dtype, fill=args.fill, force=args.force)
    if args.tokenizers_from:
        copy_tokenizers(args.tokenizers_from, args.models_dir)
    if not args.no_verify:
        verify(args.models_dir, args.model, args.dtype)
        print("verified: diffsynth detects every file as the real model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
