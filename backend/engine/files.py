"""Which weight files each configured model needs, where they live, and whether they are whole.

The layout under ``engine.models_dir`` is the one ModelScope's ``snapshot_download`` writes::

    MAILAND/majicflus_v1/majicflus_v134.safetensors                 DiT (model majicflus_v1)
    black-forest-labs/FLUX.1-dev/flux1-dev.safetensors              DiT (model flux1-dev)
    black-forest-labs/FLUX.1-dev/ae.safetensors                     VAE
    black-forest-labs/FLUX.1-dev/text_encoder/model.safetensors     CLIP-L
    black-forest-labs/FLUX.1-dev/text_encoder_2/*.safetensors       T5-XXL (shards)
    black-forest-labs/FLUX.1-dev/tokenizer/, tokenizer_2/           tokenizers

Pure Python (no torch): the safetensors header is read by hand, so ``majicbot download --check``
and the engine's pre-load check cost milliseconds. Whether diffsynth *recognises* a file is decided
in ``backend.engine.detect`` (which imports diffsynth).
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from backend.config import Config, EngineSettings

FLUX_DEV_REPO = "black-forest-labs/FLUX.1-dev"
MAJICFLUS_REPO = "MAILAND/majicflus_v1"
T5_INDEX = "model.safetensors.index.json"
_HEADER_LIMIT_BYTES = 100 * 1024 * 1024  # a larger header means the file is not safetensors

_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip


class Component(StrEnum):
    """The four model parts, in load order (encoders and VAE first, then the DiT)."""

    CLIP = "clip"
    T5 = "t5"
    VAE = "vae"
    DIT = "dit"


LOAD_ORDER = (Component.CLIP, Component.T5, Component.VAE, Component.DIT)


@dataclass(frozen=True)
class ComponentFiles:
    """The weight files of one component as found on disk (``paths``) or expected (``expected``)."""

    component: Component
    repo: str  # ModelScope repository id, "" for a user-supplied file (engine.dit_path)
    pattern: str  # allow pattern inside the repository, e.g. "text_encoder_2/*.safetensors"
    expected: tuple[Path, ...]  # files that must exist (a glob's index may name shards)
    paths: tuple[Path, ...]  # files that exist and belong to the component

    @property
    def bytes_total(self) -> int:
        return sum(p.stat().st_size for p in self.paths if p.is_file())


@dataclass(frozen=True)
class ModelFiles:
    """Everything one configured model needs under ``models_dir``."""

    models_dir: Path
    components: tuple[ComponentFiles, ...]
    tokenizer_1: Path
    tokenizer_2: Path

    def of(self, component: Component) -> ComponentFiles:
        return next(c for c in self.components if c.component is component)

    def download_patterns(self) -> dict[str, tuple[str, ...]]:
        """ModelScope allow patterns per repository (the files ``majicbot download`` fetches)."""
        patterns: dict[str, list[str]] = {}
        for comp in self.components:
            if comp.repo:
                patterns.setdefault(comp.repo, []).append(comp.pattern)
        tokenizers = ["tokenizer/*", "tokenizer_2/*"]
        patterns.setdefault(FLUX_DEV_REPO, []).extend(tokenizers)
        if any(c.component is Component.T5 and c.repo for c in self.components):
            patterns[FLUX_DEV_REPO].append(f"text_encoder_2/{T5_INDEX}")
        return {repo: tuple(p) for repo, p in patterns.items()}


def model_files(config: Config | EngineSettings) -> ModelFiles:
    """Resolve the files of ``config.engine.model`` under ``config.engine.models_dir``."""
    root = Path(config.engine.models_dir)
    flux = root / FLUX_DEV_REPO
    if config.engine.dit_path:
        dit = _single(
            Component.DIT, "", Path(config.engine.dit_path).name, Path(config.engine.dit_path)
        )
    elif config.engine.model == "flux1-dev":
        dit = _single(
            Component.DIT, FLUX_DEV_REPO, "flux1-dev.safetensors", flux / "flux1-dev.safetensors"
        )
    else:
        dit_path = root / MAJICFLUS_REPO / "majicflus_v134.safetensors"
        dit = _single(Component.DIT, MAJICFLUS_REPO, "majicflus_v134.safetensors", dit_path)
    clip_path = flux / "text_encoder" / "model.safetensors"
    components = (
        _single(Component.CLIP, FLUX_DEV_REPO, "text_encoder/model.safetensors", clip_path),
        _t5_files(flux / "text_encoder_2"),
        _single(Component.VAE, FLUX_DEV_REPO, "ae.safetensors", flux / "ae.safetensors"),
        dit,
    )
    return ModelFiles(root, components, flux / "tokenizer", flux / "tokenizer_2")


def _single(component: Component, repo: str, pattern: str, path: Path) -> ComponentFiles:
    return ComponentFiles(component, repo, pattern, (path,), (path,) if path.is_file() else ())


def _t5_files(folder: Path) -> ComponentFiles:
    """T5 shards: those the index names if there is an index, else every *.safetensors there."""
    found = tuple(sorted(folder.glob("*.safetensors")))
    expected = found
    index = folder / T5_INDEX
    if index.is_file():
        try:
            names = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            expected = tuple(folder / n for n in sorted(names))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged index is reported by the shards it fails to describe
    if not expected:
        expected = (folder / "*.safetensors",)
    present = tuple(p for p in expected if p.is_file())
    return ComponentFiles(
        Component.T5, FLUX_DEV_REPO, "text_encoder_2/*.safetensors", expected, present
    )


# ---- integrity ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileProblem:
    """A file that cannot be used, and why (for messages and ``download --check``)."""

    path: Path
    reason: str  # "missing", "not a safetensors file: ...", "truncated: ...", "not recognised ..."

    def describe(self, root: Path) -> str:
        return f"{shown_path(self.path, root)}: {self.reason}"


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to the models folder when it is inside it (shorter messages)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class SafetensorsHeader:
    """What the header of one safetensors file says."""

    tensors: dict[str, tuple[str, tuple[int, ...]]]  # name → (dtype code, shape)
    data_bytes: int  # where the last tensor ends, relative to the data section
    header_bytes: int  # 8 + JSON length

    @property
    def expected_file_size(self) -> int:
        return self.header_bytes + self.data_bytes

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensors.values())


def read_header(path: Path) -> SafetensorsHeader:
    """Parse a safetensors header; raises ValueError with a readable reason."""
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > _HEADER_LIMIT_BYTES:
            raise ValueError("not a safetensors file (header length is implausible)")
        raw = fh.read(length)
    if len(raw) < length:
        raise ValueError("truncated inside the header")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file (header is not a JSON object)")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, stop) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"not a safetensors file (bad entry for {name!r})") from None
        if stop - begin != math.prod(shape) * _ITEMSIZE.get(dtype, 0):
            raise ValueError(f"not a safetensors file (size of {name!r} does not match its shape)")
        tensors[name] = (dtype, shape)
        end = max(end, stop)
    return SafetensorsHeader(tensors, end, 8 + length)


def check_file(path: Path) -> FileProblem | None:
    """Presence, header and size of one weight file (milliseconds: reads the header only)."""
    if not path.is_file():
        return FileProblem(path, "missing")
    try:
        header = read_header(path)
    except (OSError, ValueError) as exc:
        return FileProblem(path, str(exc))
    size = path.stat().st_size
    if size != header.expected_file_size:
        expected = header.expected_file_size
        return FileProblem(path, f"truncated or damaged: {size} bytes, header says {expected}")
    return None


def check_tokenizer(folder: Path) -> FileProblem | None:
    if not (folder / "tokenizer_config.json").is_file():
        return FileProblem(folder, "missing (no tokenizer_config.json)")
    return None


def check_files(files: ModelFiles) -> list[FileProblem]:
    """Every problem found without importing diffsynth, in load order."""
    problems: list[FileProblem] = []
    for comp in files.components:
        problems.extend(p for p in map(check_file, comp.expected) if p is not None)
    for folder in (files.tokenizer_1, files.tokenizer_2):
        problem = check_tokenizer(folder)
        if problem is not None:
            problems.append(problem)
    return problems


def component_parameters(files: ModelFiles) -> dict[Component, int]:
    """Parameter count of each component from its headers (0 where a file is unreadable)."""
    counts: dict[Component, int] = {}
    for comp in files.components:
        total = 0
        for path in comp.paths:
            with contextlib.suppress(OSError, ValueError):
                total += read_header(path).parameters
        counts[comp.component] = total
    return counts


def describe_problems(files: ModelFiles, problems: list[FileProblem]) -> str:
    """The message of ModelFilesMissing: one line per file, then how to fix it."""
    lines = [f"model files missing or unusable under {files.models_dir}:"]
    lines += [f"  - {p.describe(files.models_dir)}" for p in problems]
    lines.append("Fetch them with `majicbot download` (verify with `majicbot download --check`).")
    return "\n".join(lines)
