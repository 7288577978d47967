"""A tiny FLUX.1 built from diffsynth's own classes, for CPU tests of the unchanged engine code.

Files are written in the same ModelScope layout the product reads::

    models_dir/MAILAND/majicflus_v1/majicflus_v134.safetensors       tiny DiT (hidden 64), fp8
    models_dir/black-forest-labs/FLUX.1-dev/ae.safetensors           real FLUX VAE classes, bf16
    models_dir/black-forest-labs/FLUX.1-dev/text_encoder/model.safetensors     CLIP at width 32
    models_dir/black-forest-labs/FLUX.1-dev/text_encoder_2/model-0000{1,2}-of-00002.safetensors
    models_dir/black-forest-labs/FLUX.1-dev/tokenizer/      real CLIP BPE (from open-clip-torch)
    models_dir/black-forest-labs/FLUX.1-dev/tokenizer_2/    generated T5-style tokenizer

The VAE has the real key layout and shapes, so diffsynth detects it without help; the DiT, CLIP
and T5 files have tiny shapes, so ``register_tiny_models()`` adds their hashes to diffsynth's
``MODEL_CONFIGS`` (and the VRAM-management maps) before the product loads them.

Importing this package does not import torch; both functions do.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["FLUX_DEV", "MAJICFLUS_DIT", "register_tiny_models", "write_tiny_models"]

FLUX_DEV = Path("black-forest-labs/FLUX.1-dev")
MAJICFLUS_DIT = Path("MAILAND/majicflus_v1/majicflus_v134.safetensors")
_MARKER = ".tinyflux.json"
_VERSION = 1


def register_tiny_models() -> None:
    """Make diffsynth recognise the tiny files (idempotent; imports diffsynth)."""
    from tests.tinyflux.weights import register

    register()


def write_tiny_models(models_dir: Path) -> None:
    """Write every tiny file under ``models_dir`` (deterministic; skipped if already written)."""
    marker = models_dir / _MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version") == _VERSION:
        return
    from safetensors.torch import save_file

    from bench.fixture_tokenizers import write_clip_tokenizer, write_t5_tokenizer
    from tests.tinyflux import weights

    flux = models_dir / FLUX_DEV
    files = {
        models_dir / MAJICFLUS_DIT: weights.dit_state(),
        flux / "ae.safetensors": weights.vae_state(),
        flux / "text_encoder" / "model.safetensors": weights.clip_state(),
    }
    for name, shard in zip(weights.T5_SHARDS, weights.t5_shards(), strict=True):
        files[flux / "text_encoder_2" / name] = shard
    for path, state in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path))
    write_clip_tokenizer(flux / "tokenizer")
    write_t5_tokenizer(flux / "tokenizer_2")
    marker.write_text(json.dumps({"version": _VERSION}))
    register_tiny_models()
