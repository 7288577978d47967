"""Model detection the way diffsynth does it: an md5 over a file's keys and shapes.

Imports diffsynth when called (never at import time). Used by the engine before it loads anything
and by ``majicbot download --check``.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from backend.engine.files import Component, ComponentFiles, FileProblem, ModelFiles

# diffsynth model names each component must provide (the VAE file provides both halves).
DIFFSYNTH_NAMES: dict[Component, tuple[str, ...]] = {
    Component.CLIP: ("flux_text_encoder_clip",),
    Component.T5: ("flux_text_encoder_t5",),
    Component.VAE: ("flux_vae_encoder", "flux_vae_decoder"),
    Component.DIT: ("flux_dit",),
}


def diffsynth_path(files: ComponentFiles) -> str | list[str]:
    """The ``path`` argument diffsynth expects: one string, or a list for sharded models."""
    paths = [str(p) for p in files.paths]
    return paths[0] if len(paths) == 1 else paths


def model_entries(files: ComponentFiles) -> dict[str, dict[str, Any]]:
    """diffsynth's MODEL_CONFIGS entry per required model name, for this component's files.

    Only the names this component needs are taken: the CLIP-L file also matches SDXL's text
    encoder, which would cost ~246 MB of RAM for nothing.
    """
    from diffsynth.configs import MODEL_CONFIGS
    from diffsynth.core.loader import hash_model_file

    model_hash = hash_model_file(diffsynth_path(files))
    wanted = DIFFSYNTH_NAMES[files.component]
    found: dict[str, dict[str, Any]] = {}
    for entry in MODEL_CONFIGS:
        name = entry["model_name"]
        if entry["model_hash"] == model_hash and name in wanted and name not in found:
            found[name] = entry
    return found


def recognise(files: ModelFiles, skip: Collection[Path] = ()) -> list[FileProblem]:
    """Files diffsynth would not load as the component they stand for (components with a file in
    ``skip``, already known to be unusable, are not hashed)."""
    problems: list[FileProblem] = []
    for comp in files.components:
        if not comp.paths or any(p in skip for p in comp.expected):
            continue
        try:
            entries = model_entries(comp)
        except Exception as exc:  # any read failure means "cannot use this file"
            problems.append(FileProblem(comp.paths[0], f"unreadable by diffsynth: {exc}"))
            continue
        missing = [n for n in DIFFSYNTH_NAMES[comp.component] if n not in entries]
        if missing:
            reason = f"not recognised by diffsynth as {comp.component.value} (unknown key layout)"
            problems.extend(FileProblem(Path(p), reason) for p in comp.paths)
    return problems
