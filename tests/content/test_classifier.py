"""The safety classifier through the product's own loading and scoring code; its files checked
and fetched like the FLUX files (``majicbot download [--check]``)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

from PIL import Image

from backend.config import Config
from backend.content.classifier import (
    DOWNLOAD_PATTERNS,
    ImageClassifier,
    check_classifier,
    classifier_folder,
)
from backend.download import check_classifier_files, run_download
from backend.engine.files import FileProblem
from tests.content.fixtures import with_content
from tests.engine.conftest import tiny_engine_config


def _image(side: int = 1024) -> Image.Image:
    return Image.new("RGB", (side, side), (200, 120, 90))


def test_the_tiny_classifiers_flag_every_image_or_none(
    nsfw_classifier_dir: Path, normal_classifier_dir: Path
) -> None:
    flags = ImageClassifier.load(nsfw_classifier_dir, ("nsfw",), "cpu")
    passes = ImageClassifier.load(normal_classifier_dir, ("nsfw",), "cpu")
    assert flags.score(_image()) > 0.99
    assert passes.score(_image()) < 0.01
    assert passes.score(_image(64)) < 0.01  # any size: resized to the model's input
    # The score is the summed probability of the flagged labels.
    both = ImageClassifier.load(nsfw_classifier_dir, ("nsfw", "normal"), "cpu")
    assert abs(both.score(_image()) - 1.0) < 1e-5
    # bfloat16 (the default on the CPU) gives the same verdicts.
    half = ImageClassifier.load(nsfw_classifier_dir, ("nsfw",), "cpu", "bfloat16")
    assert half.score(_image()) > 0.99


def test_check_reports_missing_and_unusable_files(
    tmp_path: Path, nsfw_classifier_dir: Path
) -> None:
    empty = tmp_path / "empty"
    assert check_classifier(empty, ("nsfw",)) == [
        FileProblem(empty / "config.json", "missing"),
        FileProblem(empty / "model.safetensors", "missing"),
    ]
    assert check_classifier(nsfw_classifier_dir, ("nsfw",)) == []
    broken = tmp_path / "broken"
    shutil.copytree(nsfw_classifier_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    [problem] = check_classifier(broken, ("nsfw",))
    assert problem.path == weights and problem.reason.startswith("truncated or damaged")
    assert check_classifier(broken, ("porn",))[0] == FileProblem(
        broken / "config.json", "labels normal, nsfw include none of content.flagged_labels (porn)"
    )


def test_download_check_includes_the_classifier(
    tiny_models_dir: Path, tmp_path: Path, nsfw_classifier_dir: Path
) -> None:
    config = with_content(tiny_engine_config(tiny_models_dir, tmp_path), image_check=True)
    out = io.StringIO()
    assert run_download(config, check_only=True, out=out) == 1
    lines = out.getvalue().splitlines()
    folder = classifier_folder(config)
    assert folder == tiny_models_dir / "Falconsai" / "nsfw_image_detection"
    assert lines[-4:] == [
        f"checking the image safety classifier in {folder}",
        "  FAIL config.json: missing",
        "  FAIL model.safetensors: missing",
        "the image safety check cannot run; fetch it with `majicbot download`",
    ]
    good = with_content(config, classifier_path=str(nsfw_classifier_dir))
    out = io.StringIO()
    assert run_download(good, check_only=True, out=out) == 0
    assert out.getvalue().splitlines()[-1] == "  ok   classifier files present"


def test_download_fetches_the_classifier_from_modelscope(
    tmp_path: Path, nsfw_classifier_dir: Path
) -> None:
    base = Config()
    config = dataclasses.replace(
        base, engine=dataclasses.replace(base.engine, models_dir=tmp_path / "models")
    )
    fetched: list[tuple[str, Path, tuple[str, ...]]] = []

    def fetch(repo: str, folder: Path, patterns: tuple[str, ...]) -> None:
        fetched.append((repo, folder, patterns))
        if repo == config.content.classifier_model:
            shutil.copytree(nsfw_classifier_dir, folder)

    out = io.StringIO()
    run_download(config, check_only=False, out=out, fetch=fetch)  # the FLUX files stay missing
    folder = tmp_path / "models" / "Falconsai" / "nsfw_image_detection"
    assert fetched[-1] == ("Falconsai/nsfw_image_detection", folder, DOWNLOAD_PATTERNS)
    assert check_classifier_files(config, io.StringIO()) == 0
    labels = json.loads((folder / "config.json").read_text())["id2label"]
    assert labels == {"0": "normal", "1": "nsfw"}


def test_download_skips_the_classifier_when_the_check_is_off(tmp_path: Path) -> None:
    config = with_content(Config(), image_check=False)
    assert check_classifier_files(config, io.StringIO()) == 0
