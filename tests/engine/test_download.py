"""`majicbot download [--check]` offline: check good, broken and missing files; a fake fetch."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

from backend.config import Config
from backend.download import run_download
from tests.engine.conftest import tiny_engine_config
from tests.tinyflux import FLUX_DEV, MAJICFLUS_DIT


def check(config: Config) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = run_download(config, check_only=True, out=out)
    return code, out.getvalue().splitlines()


def test_check_passes_on_the_tiny_files(tiny_models_dir: Path, tmp_path: Path) -> None:
    code, lines = check(tiny_engine_config(tiny_models_dir, tmp_path))
    assert code == 0
    assert [line.split(" (")[0] for line in lines] == [
        f"checking model files under {tiny_models_dir}",
        "  ok   black-forest-labs/FLUX.1-dev/text_encoder/model.safetensors",
        "  ok   black-forest-labs/FLUX.1-dev/text_encoder_2/model-00001-of-00002.safetensors",
        "  ok   black-forest-labs/FLUX.1-dev/text_encoder_2/model-00002-of-00002.safetensors",
        "  ok   black-forest-labs/FLUX.1-dev/ae.safetensors",
        "  ok   MAILAND/majicflus_v1/majicflus_v134.safetensors",
        "  ok   black-forest-labs/FLUX.1-dev/tokenizer",
        "  ok   black-forest-labs/FLUX.1-dev/tokenizer_2",
        "all model files present and recognised",
    ]


def test_check_fails_on_missing_broken_and_unknown_files(
    linked_models_dir: Path, tmp_path: Path
) -> None:
    flux = linked_models_dir / FLUX_DEV
    (flux / "ae.safetensors").unlink()
    shutil.rmtree(flux / "tokenizer_2")
    t5 = flux / "text_encoder_2" / "model-00002-of-00002.safetensors"
    t5.unlink()
    t5.write_bytes(b"<html>rate limited</html>")
    dit = linked_models_dir / MAJICFLUS_DIT
    clip_bytes = (flux / "text_encoder" / "model.safetensors").read_bytes()
    dit.unlink()
    dit.write_bytes(clip_bytes)  # a whole safetensors file, but not a DiT
    code, lines = check(tiny_engine_config(linked_models_dir, tmp_path))
    assert code == 1
    fails = [line for line in lines if line.startswith("  FAIL")]
    assert fails == [
        "  FAIL black-forest-labs/FLUX.1-dev/text_encoder_2/model-00002-of-00002.safetensors: "
        "not a safetensors file (header length is implausible)",
        "  FAIL black-forest-labs/FLUX.1-dev/ae.safetensors: missing",
        "  FAIL MAILAND/majicflus_v1/majicflus_v134.safetensors: "
        "not recognised by diffsynth as dit (unknown key layout)",
        "  FAIL black-forest-labs/FLUX.1-dev/tokenizer_2: missing (no tokenizer_config.json)",
    ]
    assert lines[-1] == "4 problem(s); fetch the files with `majicbot download`"


def test_check_names_a_shard_the_index_expects(linked_models_dir: Path, tmp_path: Path) -> None:
    t5 = linked_models_dir / FLUX_DEV / "text_encoder_2"
    (t5 / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-00001-of-00003.safetensors",'
        ' "b": "model-00002-of-00003.safetensors"}}'
    )
    code, lines = check(tiny_engine_config(linked_models_dir, tmp_path))
    assert code == 1
    assert [line for line in lines if "FAIL" in line] == [
        "  FAIL black-forest-labs/FLUX.1-dev/text_encoder_2/model-00001-of-00003.safetensors: "
        "missing",
        "  FAIL black-forest-labs/FLUX.1-dev/text_encoder_2/model-00002-of-00003.safetensors: "
        "missing",
    ]


def test_download_fetches_exactly_the_needed_patterns_then_checks(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "models"
    calls: list[tuple[str, Path, tuple[str, ...]]] = []

    def fake_fetch(repo: str, folder: Path, patterns: tuple[str, ...]) -> None:
        calls.append((repo, folder, patterns))
        shutil.copytree(tiny_models_dir / repo, folder, dirs_exist_ok=True)

    out = io.StringIO()
    config = tiny_engine_config(target, tmp_path)
    assert run_download(config, check_only=False, out=out, fetch=fake_fetch) == 0
    assert calls == [
        ("black-forest-labs/FLUX.1-dev", target / FLUX_DEV, (
            "text_encoder/model.safetensors",
            "text_encoder_2/*.safetensors",
            "ae.safetensors",
            "tokenizer/*",
            "tokenizer_2/*",
            "text_encoder_2/model.safetensors.index.json",
        )),
        ("MAILAND/majicflus_v1", target / "MAILAND/majicflus_v1", ("majicflus_v134.safetensors",)),
    ]  # fmt: skip
    assert out.getvalue().splitlines()[-1] == "all model files present and recognised"


def test_flux1_dev_fetches_its_own_dit(tmp_path: Path) -> None:
    base = tiny_engine_config(tmp_path / "models", tmp_path)
    config = dataclasses.replace(base, engine=dataclasses.replace(base.engine, model="flux1-dev"))
    calls: list[tuple[str, tuple[str, ...]]] = []
    out = io.StringIO()
    code = run_download(
        config, check_only=False, out=out, fetch=lambda r, f, p: calls.append((r, p))
    )
    assert code == 1  # nothing was written
    assert calls == [
        ("black-forest-labs/FLUX.1-dev", (
            "text_encoder/model.safetensors",
            "text_encoder_2/*.safetensors",
            "ae.safetensors",
            "flux1-dev.safetensors",
            "tokenizer/*",
            "tokenizer_2/*",
            "text_encoder_2/model.safetensors.index.json",
        )),
    ]  # fmt: skip


def test_a_failing_fetch_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    def offline(repo: str, folder: Path, patterns: tuple[str, ...]) -> None:
        raise ConnectionError("modelscope.cn unreachable")

    out = io.StringIO()
    config = tiny_engine_config(tmp_path / "models", tmp_path)
    assert run_download(config, check_only=False, out=out, fetch=offline) == 1
    assert out.getvalue().splitlines()[-1] == "download failed: modelscope.cn unreachable"
