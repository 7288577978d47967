"""The image safety classifier: its files, loading it, scoring one image.

The model is a Hugging Face-format image classifier (``config.json`` + ``model.safetensors``, and
usually ``preprocessor_config.json``), by default ``Falconsai/nsfw_image_detection``: a ViT-base
(patch 16, 224×224, ~86 M parameters) fine-tuned to two labels, ``normal`` and ``nsfw``. Any
classifier ``transformers.AutoModelForImageClassification`` loads works; ``content.flagged_labels``
names the labels that count as flagged, and the score is their summed probability.

Files live in the ModelScope layout under ``engine.models_dir`` (``models/<id>/``), fetched by
``majicbot download`` and checked by ``majicbot download --check`` (``check_classifier``: no
torch). Loading and scoring import torch and transformers and block: call them from a worker
thread (``backend.content.controls`` does), never from the event loop.

Preprocessing is done here rather than by transformers' image processors (which pull in
torchvision for their fast path): resize to the model's square input with bilinear filtering,
scale to 0..1, normalise with the preprocessor's mean and std (0.5 when it gives none). That is
what ``ViTImageProcessor`` does for this model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.config import Config
from backend.engine.files import FileProblem, check_file
from backend.loading import MODEL_LOADS

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger("majicbot.content")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "preprocessor_config.json"
DOWNLOAD_PATTERNS = (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSOR_FILE)


def classifier_folder(config: Config) -> Path:
    """Where the classifier's files are: ``content.classifier_path`` or the ModelScope layout."""
    content = config.content
    if content.classifier_path:
        return Path(content.classifier_path)
    return config.engine.models_dir / content.classifier_model


def check_classifier(folder: Path, flagged_labels: tuple[str, ...]) -> list[FileProblem]:
    """Every problem with the classifier's files, found without importing torch (milliseconds)."""
    problems: list[FileProblem] = []
    config_path = folder / CONFIG_FILE
    try:
        labels = _labels(config_path)
    except FileNotFoundError:
        problems.append(FileProblem(config_path, "missing"))
    except (OSError, ValueError) as exc:
        problems.append(FileProblem(config_path, f"not a classifier config: {exc}"))
    else:
        if not set(flagged_labels) & set(labels):
            wanted = ", ".join(flagged_labels)
            problems.append(
                FileProblem(
                    config_path,
                    f"labels {', '.join(labels)} include none of content.flagged_labels ({wanted})",
                )
            )
    weights = check_file(folder / WEIGHTS_FILE)
    if weights is not None:
        problems.append(weights)
    return problems


def _labels(config_path: Path) -> list[str]:
    data = json.loads(config_path.read_text(encoding="utf-8"))
    id2label = data.get("id2label") if isinstance(data, dict) else None
    if not isinstance(id2label, dict) or not id2label:
        raise ValueError("no id2label")
    return [str(label) for label in id2label.values()]


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input."""

    side: int  # square input side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def read(cls, folder: Path, model_side: int) -> Preprocessing:
        """From ``preprocessor_config.json`` when present, else ViT's defaults."""
        path = folder / PREPROCESSOR_FILE
        data: dict[str, Any] = {}
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
        size = data.get("size", model_side)
        side = int(size.get("height", model_side)) if isinstance(size, dict) else int(size)
        mean = tuple(float(v) for v in data.get("image_mean", (0.5, 0.5, 0.5)))
        std = tuple(float(v) for v in data.get("image_std", (0.5, 0.5, 0.5)))
        return cls(side, (mean[0], mean[1], mean[2]), (std[0], std[1], std[2]))


class ImageClassifier:
    """A loaded classifier on one device. ``load`` and ``score`` block; call them in a thread."""

    def __init__(self, model: Any, flagged_ids: list[int], prep: Preprocessing, device: str):
        self._model = model
        self._flagged_ids = flagged_ids
        self._prep = prep
        self._device = device

    @classmethod
    def load(
        cls, folder: Path, flagged_labels: tuple[str, ...], device: str, dtype: str = "float32"
    ) -> ImageClassifier:
        """Import transformers, load the model in eval mode on ``device`` in ``dtype``."""
        import torch
        from transformers import AutoModelForImageClassification
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        with MODEL_LOADS:  # never beside a diffsynth load (``backend.loading``)
            model = AutoModelForImageClassification.from_pretrained(
                str(folder), local_files_only=True
            )
        model.eval().to(device, dtype=getattr(torch, dtype))
        id2label = {int(i): str(label) for i, label in model.config.id2label.items()}
        flagged = [i for i, label in id2label.items() if label in flagged_labels]
        if not flagged:
            raise ValueError(f"the classifier has no label among {flagged_labels}")
        side = int(getattr(model.config, "image_size", 224))
        prep = Preprocessing.read(folder, side)
        log.info("safety classifier loaded from %s on %s %s (%s)", folder, device, dtype, id2label)
        return cls(model, flagged, prep, device)

    def score(self, image: Image) -> float:
        """Probability (0..1) that ``image`` belongs to a flagged label."""
        import torch

        pixels = self._pixels(image)
        with torch.inference_mode():
            logits = self._model(pixel_values=pixels).logits[0]
            probabilities = torch.softmax(logits.float(), dim=-1)
        return float(probabilities[self._flagged_ids].sum().item())

    def _pixels(self, image: Image) -> Any:
        import numpy as np
        import torch
        from PIL import Image as PILImage

        prep = self._prep
        small = image.convert("RGB").resize((prep.side, prep.side), PILImage.Resampling.BILINEAR)
        array = np.asarray(small, dtype=np.float32) / np.float32(255.0)
        mean, std = np.asarray(prep.mean, np.float32), np.asarray(prep.std, np.float32)
        normalised = (array - mean) / std
        tensor = torch.from_numpy(normalised.transpose(2, 0, 1).copy()).unsqueeze(0)
        dtype = next(self._model.parameters()).dtype
        return tensor.to(self._device, dtype=dtype)
