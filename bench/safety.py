"""CPU cost of the image safety check.

    python -m bench.safety [--threads 2] [--images 30] [--dtype bfloat16]

Writes a full-size random-weight ViT-base classifier (the shape of the default
``Falconsai/nsfw_image_detection``: patch 16, 224×224, hidden 768, 12 layers, 2 labels; ~86 M
parameters) with safetensors into a temporary folder, loads it through the product's
``ImageClassifier`` and scores 1024×1024 images (resize and normalisation included, as in
production). Prints load time and per-image latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def write_vit_base(folder: Path) -> int:
    """A random ViT-base image classifier with labels normal/nsfw; returns its parameter count."""
    from tests.content.fixtures import write_tiny_classifier

    write_tiny_classifier(
        folder,
        "nsfw",
        image_size=224,
        patch_size=16,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    )
    from backend.engine.files import read_header

    return read_header(folder / "model.safetensors").parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    args = parser.parse_args()
    import numpy as np
    import torch
    from PIL import Image

    from backend.content.classifier import ImageClassifier

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        parameters = write_vit_base(folder)
        started = time.perf_counter()
        classifier = ImageClassifier.load(folder, ("nsfw",), "cpu", args.dtype)
        load_s = time.perf_counter() - started
        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)) for _ in range(3)
        ]
        for image in images:  # warm-up
            classifier.score(image)
        times_ms = []
        for index in range(args.images):
            started = time.perf_counter()
            classifier.score(images[index % len(images)])
            times_ms.append((time.perf_counter() - started) * 1000)
    times_ms.sort()
    result = {
        "parameters": parameters,
        "threads": args.threads,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "load_s": round(load_s, 2),
        "median_ms": round(statistics.median(times_ms), 1),
        "p90_ms": round(times_ms[int(0.9 * (len(times_ms) - 1))], 1),
        "min_ms": round(times_ms[0], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
