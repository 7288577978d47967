"""Shared pytest fixtures. Each helper appends its fixtures below, one block per concern."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import Config
from backend.logs import RedactSecrets
from tests.content.fixtures import NO_IMAGE_CHECK
from tests.log_scan import SCANNED_LOGGERS, LeakScan
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


# ---- privacy: no prompt or name in any log record at INFO or above ------------------------------


@pytest.fixture(scope="session")
def leak_scan() -> Iterator[LeakScan]:
    """``LeakScan`` on the root logger for the whole run (see ``tests/log_scan.py``)."""
    scan = LeakScan()
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in SCANNED_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    root.addHandler(scan)
    try:
        yield scan
    finally:
        root.removeHandler(scan)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@pytest.fixture(autouse=True)
def _no_prompt_in_logs(leak_scan: LeakScan) -> Iterator[None]:
    root = logging.getLogger()
    if leak_scan not in root.handlers:  # ``setup_logging`` (the CLI's) replaces root handlers
        root.addHandler(leak_scan)
    yield
    for handler in list(root.handlers):  # what a CLI test's ``setup_logging`` left behind
        if any(isinstance(f, RedactSecrets) for f in handler.filters):
            root.removeHandler(handler)
    if leak_scan not in root.handlers:
        root.addHandler(leak_scan)
    leaks = leak_scan.take()
    assert leaks == [], "a prompt or a name was logged at INFO or above:\n" + "\n".join(leaks)
