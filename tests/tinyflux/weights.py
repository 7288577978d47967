"""Tiny FLUX weights: state dicts in the real files' key layouts, their hashes, and registration.

Imports torch and diffsynth; reached only through the functions in ``tests.tinyflux``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffsynth.configs import MODEL_CONFIGS, VRAM_MANAGEMENT_MODULE_MAPS
from diffsynth.core.loader.file import hash_state_dict_keys
from diffsynth.models.flux_text_encoder_clip import FluxTextEncoderClip
from diffsynth.models.flux_vae import FluxVAEDecoder, FluxVAEEncoder
from diffsynth.utils.state_dict_converters.flux_vae import (
    FluxVAEDecoderStateDictConverter,
    FluxVAEEncoderStateDictConverter,
)

from tests.tinyflux import models

StateDict = dict[str, torch.Tensor]

SEED = 20240806
AE_LAYOUT = Path(__file__).resolve().parents[2] / "bench" / "layouts" / "ae_vae.tsv"
T5_SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
DIT_DTYPE = torch.float8_e4m3fn  # majicflus_v1 ships its DiT in fp8
DTYPE = torch.bfloat16


def _seeded(build: Callable[[], torch.nn.Module], offset: int) -> torch.nn.Module:
    torch.manual_seed(SEED + offset)
    return build()


def _cast(state: StateDict, dtype: torch.dtype) -> StateDict:
    return {k: v.detach().to(dtype).contiguous() for k, v in state.items()}


def dit_state() -> StateDict:
    """TinyFluxDiT in diffsynth's own key layout (the original-format converter hard-codes 3072)."""
    return _cast(_seeded(models.TinyFluxDiT, 1).state_dict(), DIT_DTYPE)


def clip_state() -> StateDict:
    """FluxTextEncoderClip at tiny sizes under Hugging Face CLIP key names (as the real file)."""
    model = _seeded(lambda: FluxTextEncoderClip(**models.CLIP_KWARGS), 2)
    with torch.no_grad():
        model.get_parameter("position_embeds").normal_(0.0, 0.02)
    return _cast(_clip_to_hf(model.state_dict()), DTYPE)


_CLIP_LAYER_NAMES = {
    "attn.to_q": "self_attn.q_proj",
    "attn.to_k": "self_attn.k_proj",
    "attn.to_v": "self_attn.v_proj",
    "attn.to_out": "self_attn.out_proj",
    "layer_norm1": "layer_norm1",
    "layer_norm2": "layer_norm2",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
}


def _clip_to_hf(state: StateDict) -> StateDict:
    """Inverse of diffsynth's FluxTextEncoderClipStateDictConverter."""
    out: StateDict = {
        "text_model.embeddings.token_embedding.weight": state["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": state["position_embeds"][0],
        "text_model.final_layer_norm.weight": state["final_layer_norm.weight"],
        "text_model.final_layer_norm.bias": state["final_layer_norm.bias"],
    }
    for key, value in state.items():
        if key.startswith("encoders."):
            _, layer, *middle, tail = key.split(".")
            name = _CLIP_LAYER_NAMES[".".join(middle)]
            out[f"text_model.encoder.layers.{layer}.{name}.{tail}"] = value
    return out


def t5_shards() -> list[StateDict]:
    """The tiny T5 saved like the real one: only ``shared.weight``, split over two shards."""
    state = _seeded(models.TinyFluxTextEncoderT5, 3).state_dict()
    state.pop("encoder.embed_tokens.weight", None)
    state = _cast(state, DTYPE)
    keys = sorted(state)
    half = len(keys) // 2
    return [{k: state[k] for k in keys[:half]}, {k: state[k] for k in keys[half:]}]


def vae_state() -> StateDict:
    """The real FLUX VAE classes (random init) under the real ``ae.safetensors`` key names."""
    original_keys = _ae_keys()
    state: StateDict = {}
    for build, converter, offset in (
        (FluxVAEEncoder, FluxVAEEncoderStateDictConverter, 4),
        (FluxVAEDecoder, FluxVAEDecoderStateDictConverter, 5),
    ):
        ours = _seeded(build, offset).state_dict()
        to_original: dict[str, str] = converter({k: k for k in original_keys})
        state.update({to_original[k]: v for k, v in ours.items()})
    return _cast(state, DTYPE)


def _ae_keys() -> list[str]:
    lines = AE_LAYOUT.read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines if line and not line.startswith("#")]


def _registrations() -> list[dict[str, Any]]:
    """MODEL_CONFIGS entries for the tiny files (hashes over keys and shapes, as diffsynth does)."""
    with torch.device("meta"):
        dit = models.TinyFluxDiT().state_dict()
        clip = _clip_to_hf(FluxTextEncoderClip(**models.CLIP_KWARGS).state_dict())
        t5 = models.TinyFluxTextEncoderT5().state_dict()
    t5.pop("encoder.embed_tokens.weight", None)
    converters = "diffsynth.utils.state_dict_converters"
    return [
        {
            "model_hash": hash_state_dict_keys(dit),
            "model_name": "flux_dit",
            "model_class": "tests.tinyflux.models.TinyFluxDiT",
        },
        {
            "model_hash": hash_state_dict_keys(clip),
            "model_name": "flux_text_encoder_clip",
            "model_class": "diffsynth.models.flux_text_encoder_clip.FluxTextEncoderClip",
            "extra_kwargs": dict(models.CLIP_KWARGS),
            "state_dict_converter": (
                f"{converters}.flux_text_encoder_clip.FluxTextEncoderClipStateDictConverter"
            ),
        },
        {
            "model_hash": hash_state_dict_keys(t5),
            "model_name": "flux_text_encoder_t5",
            "model_class": "tests.tinyflux.models.TinyFluxTextEncoderT5",
            "state_dict_converter": (
                f"{converters}.flux_text_encoder_t5.FluxTextEncoderT5StateDictConverter"
            ),
        },
    ]


_VRAM_MAP_SOURCES = {
    "tests.tinyflux.models.TinyFluxDiT": "diffsynth.models.flux_dit.FluxDiT",
    "tests.tinyflux.models.TinyFluxTextEncoderT5": (
        "diffsynth.models.flux_text_encoder_t5.FluxTextEncoderT5"
    ),
}


def register() -> None:
    """Append the tiny entries to diffsynth's tables unless they are already there."""
    known = {(c["model_hash"], c["model_name"]) for c in MODEL_CONFIGS}
    for entry in _registrations():
        if (entry["model_hash"], entry["model_name"]) not in known:
            MODEL_CONFIGS.append(entry)
    for tiny, real in _VRAM_MAP_SOURCES.items():
        VRAM_MANAGEMENT_MODULE_MAPS.setdefault(
            tiny, copy.deepcopy(VRAM_MANAGEMENT_MODULE_MAPS[real])
        )
