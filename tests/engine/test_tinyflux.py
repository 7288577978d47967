"""The tiny FLUX fixture itself: deterministic files the real diffsynth converters accept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import transformers
from diffsynth.core.loader import hash_model_file
from diffsynth.models.flux_text_encoder_clip import FluxTextEncoderClip
from diffsynth.utils.state_dict_converters.flux_text_encoder_clip import (
    FluxTextEncoderClipStateDictConverter,
)
from transformers import CLIPTokenizer

from tests.tinyflux import FLUX_DEV, models, write_tiny_models
from tests.tinyflux.weights import clip_state

REAL_VAE_HASH = "21ea55f476dfc4fd135587abb59dfe5d"  # ae.safetensors of FLUX.1-dev


def _digest(folder: Path, names: list[str]) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def test_the_vae_has_the_real_layout(tiny_models_dir: Path) -> None:
    assert hash_model_file(str(tiny_models_dir / FLUX_DEV / "ae.safetensors")) == REAL_VAE_HASH


def test_clip_file_round_trips_through_diffsynths_converter() -> None:
    saved = clip_state()
    converted = FluxTextEncoderClipStateDictConverter(saved)
    with torch.device("meta"):
        model = FluxTextEncoderClip(**models.CLIP_KWARGS)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }


def test_writing_is_deterministic(tiny_models_dir: Path, tmp_path: Path) -> None:
    names = [
        "MAILAND/majicflus_v1/majicflus_v134.safetensors",
        f"{FLUX_DEV}/text_encoder/model.safetensors",
        f"{FLUX_DEV}/text_encoder_2/model-00001-of-00002.safetensors",
        f"{FLUX_DEV}/text_encoder_2/model-00002-of-00002.safetensors",
    ]
    write_tiny_models(tmp_path)
    assert _digest(tmp_path, names) == _digest(tiny_models_dir, names)


def test_tokenizers_load_with_the_pipelines_classes(tiny_models_dir: Path) -> None:
    clip = CLIPTokenizer.from_pretrained(str(tiny_models_dir / FLUX_DEV / "tokenizer"))
    t5 = transformers.T5TokenizerFast.from_pretrained(
        str(tiny_models_dir / FLUX_DEV / "tokenizer_2")
    )
    # The real CLIP BPE: <start> a photo of a cat <end>
    assert clip("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    ids = t5("a photo of a cat").input_ids
    assert (ids[-1], t5.pad_token_id, len(ids)) == (1, 0, 6)
    assert len(t5) <= models.T5_VOCAB
