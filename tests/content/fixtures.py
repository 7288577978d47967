"""Content-control fixtures: configs, and tiny deterministic safety classifiers.

The classifiers are real ``transformers`` ``ViTForImageClassification`` models (the class of the
default ``Falconsai/nsfw_image_detection``), tiny and saved with safetensors in the same folder
layout, so CI runs the product's loading and scoring code. The head's weights are zero and its
bias decides: ``write_tiny_classifier(folder, verdict="nsfw")`` flags every image,
``verdict="normal"`` none.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from backend.config import Config, ContentConfig

# Existing tests keep their old behaviour: no image check unless a test asks for one.
NO_IMAGE_CHECK = ContentConfig(image_check=False)

LABELS = {0: "normal", 1: "nsfw"}


def write_tiny_classifier(folder: Path, verdict: str = "nsfw", **vit: Any) -> Path:
    """A ViT image classifier whose every answer is ``verdict``; returns ``folder``."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    settings: dict[str, Any] = {
        "image_size": 32,
        "patch_size": 16,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        **vit,
    }
    config = ViTConfig(**settings, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    torch.manual_seed(0)
    model: Any = ViTForImageClassification(config)
    model.eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(
            torch.tensor([8.0, -8.0] if verdict == "normal" else [-8.0, 8.0])
        )
    model.save_pretrained(folder, safe_serialization=True)
    side = settings["image_size"]
    preprocessor = {
        "do_normalize": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "resample": 2,
        "size": {"height": side, "width": side},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder


def with_content(config: Config, **content: Any) -> Config:
    """``config`` with ``[content]`` keys replaced."""
    return dataclasses.replace(config, content=dataclasses.replace(config.content, **content))
