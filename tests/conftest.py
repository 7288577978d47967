"""Shared pytest fixtures. Each helper appends its fixtures below, one block per concern."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backend.config import Config
from tests.content.fixtures import NO_IMAGE_CHECK
from tests.tinyflux import register_tiny_models, write_tiny_models

# ---- tiny FLUX (engine) -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny FLUX files in the product's ModelScope layout, written once per session and
    registered with diffsynth (imports diffsynth: ~8 s once)."""
    models_dir = tmp_path_factory.mktemp("tinyflux") / "models"
    write_tiny_models(models_dir)
    register_tiny_models()
    return models_dir


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_models_dir: Path) -> Config:
    """A Config that runs the tiny FLUX on the CPU at 64×64 in 2 steps."""
    base = Config()
    return dataclasses.replace(
        base,
        engine=dataclasses.replace(
            base.engine, models_dir=tiny_models_dir, devices=("cpu",), t5_max_tokens=64
        ),
        storage=dataclasses.replace(base.storage, data_dir=tmp_path / "data"),
        limits=dataclasses.replace(
            base.limits, default_side=64, min_side=64, max_side=256, default_steps=2
        ),
        content=NO_IMAGE_CHECK,
    )


# ---- tiny safety classifiers (content controls, issue 16) --------------------------------------


@pytest.fixture(scope="session")
def nsfw_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ViT classifier (transformers, safetensors) that flags every image."""
    from tests.content.fixtures import write_tiny_classifier

    return write_tiny_classifier(tmp_path_factory.mktemp("classifier-nsfw"), "nsfw")


@pytest.fixture(scope="session")
def normal_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ViT classifier that flags no image."""
    from tests.content.fixtures import write_tiny_classifier

    return write_tiny_classifier(tmp_path_factory.mktemp("classifier-normal"), "normal")
