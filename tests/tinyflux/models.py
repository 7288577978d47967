"""Tiny FLUX model classes built from diffsynth's own blocks (imports torch and diffsynth).

``FluxDiT`` hard-codes hidden 3072 and 38 single blocks and ``FluxTextEncoderT5`` hard-codes
T5-XXL, so the tiny versions are subclasses whose ``__init__`` skips the parent's and builds the
same attribute names at tiny sizes. Everything else (forward code, the pipeline's ``model_fn``,
VRAM-management wrapping) is the library's.
"""

from __future__ import annotations

from typing import Any

import torch
from diffsynth.models.flux_dit import (
    AdaLayerNormContinuous,
    FluxDiT,
    FluxJointTransformerBlock,
    FluxSingleTransformerBlock,
    RoPEEmbedding,
)
from diffsynth.models.flux_text_encoder_t5 import FluxTextEncoderT5
from diffsynth.models.general_modules import TimestepEmbeddings
from transformers import T5Config, T5EncoderModel

DIT_HIDDEN = 64
DIT_HEADS = 2  # head_dim 32 = sum of the RoPE axes
DIT_ROPE_AXES = (8, 12, 12)
CLIP_DIM = 32
CLIP_LAYERS = 2  # the pipeline's clip_skip=2 needs at least 2
CLIP_INTERMEDIATE = 64
CLIP_VOCAB = 49408  # the real CLIP BPE vocabulary (end-of-text is the largest id)
T5_DIM = 32
T5_VOCAB = 256  # covers the generated tokenizer_2 (bench.fixture_tokenizers.t5_vocab)

CLIP_KWARGS = {
    "embed_dim": CLIP_DIM,
    "vocab_size": CLIP_VOCAB,
    "max_position_embeddings": 77,
    "num_encoder_layers": CLIP_LAYERS,
    "encoder_intermediate_size": CLIP_INTERMEDIATE,
}


class TinyFluxDiT(FluxDiT):  # type: ignore[misc]
    """FluxDiT at hidden 64: one joint block, one single block."""

    def __init__(self) -> None:
        torch.nn.Module.__init__(self)
        dim = DIT_HIDDEN
        self.pos_embedder = RoPEEmbedding(dim, 10000, list(DIT_ROPE_AXES))
        self.time_embedder = TimestepEmbeddings(256, dim)
        self.guidance_embedder = TimestepEmbeddings(256, dim)
        self.pooled_text_embedder = torch.nn.Sequential(
            torch.nn.Linear(CLIP_DIM, dim), torch.nn.SiLU(), torch.nn.Linear(dim, dim)
        )
        self.context_embedder = torch.nn.Linear(T5_DIM, dim)
        self.x_embedder = torch.nn.Linear(64, dim)
        self.blocks = torch.nn.ModuleList([FluxJointTransformerBlock(dim, DIT_HEADS)])
        self.single_blocks = torch.nn.ModuleList([FluxSingleTransformerBlock(dim, DIT_HEADS)])
        self.final_norm_out = AdaLayerNormContinuous(dim)
        self.final_proj_out = torch.nn.Linear(dim, 64)
        self.input_dim = 64


def tiny_t5_config() -> T5Config:
    """A one-layer gated-GELU T5 encoder, the same family as FLUX's T5-XXL."""
    settings: dict[str, Any] = {
        "vocab_size": T5_VOCAB,
        "d_model": T5_DIM,
        "d_kv": 16,
        "d_ff": 64,
        "num_layers": 1,
        "num_decoder_layers": 1,
        "num_heads": 2,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.0,
        "layer_norm_epsilon": 1e-6,
        "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": True,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }
    return T5Config(**settings)


class TinyFluxTextEncoderT5(FluxTextEncoderT5):  # type: ignore[misc]
    """FluxTextEncoderT5 (its forward returns the last hidden state) on a one-layer T5."""

    def __init__(self) -> None:
        T5EncoderModel.__init__(self, tiny_t5_config())
