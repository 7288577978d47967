"""Engine fixtures: one tiny CPU engine loaded once per session, and a linked copy of the files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from backend.config import Config, EngineSettings
from backend.domain import EngineState
from backend.engine.diffsynth_engine import DiffsynthEngine
from tests.content.fixtures import NO_IMAGE_CHECK


def tiny_engine_config(models_dir: Path, data_dir: Path) -> Config:
    """The tiny_config of tests/conftest.py without tmp_path (usable from session fixtures)."""
    base = Config()
    return dataclasses.replace(
        base,
        engine=dataclasses.replace(
            base.engine, models_dir=models_dir, devices=("cpu",), t5_max_tokens=64
        ),
        storage=dataclasses.replace(base.storage, data_dir=data_dir),
        content=NO_IMAGE_CHECK,
    )


@dataclasses.dataclass(frozen=True)
class LoadedEngine:
    engine: DiffsynthEngine
    reports: tuple[EngineState, ...]  # every EngineState load() reported, in order


@pytest.fixture(scope="session")
def loaded_engine(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedEngine:
    config = tiny_engine_config(tiny_models_dir, tmp_path_factory.mktemp("data"))
    engine = DiffsynthEngine(EngineSettings.of(config), "cpu")
    reports: list[EngineState] = []
    engine.load(reports.append)
    return LoadedEngine(engine, tuple(reports))


@pytest.fixture
def linked_models_dir(tiny_models_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny models made of symlinks, so a test can delete or replace one file."""
    target = tmp_path / "models"
    for source in tiny_models_dir.rglob("*"):
        if source.is_file():
            link = target / source.relative_to(tiny_models_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(source, link)
    return target
