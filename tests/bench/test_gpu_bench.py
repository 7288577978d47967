"""The GPU benchmark's parts that run anywhere: arguments, the raw-read floor, the table."""

from __future__ import annotations

import json
from pathlib import Path

from bench import gpu

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "gpu-h100-2026-11-26.json"


def test_arguments_per_run() -> None:
    argv = ["--runs", "baseline,lowvram", "--steps-for", "lowvram=4", "--tti", "auto"]
    args = gpu.parse_args(argv)
    assert args.runs == ["baseline", "lowvram"]
    assert args.steps_for == {"lowvram": 4}
    assert args.tti_profiles == ["auto"]
    assert args.cap_for == {}


def test_read_files_counts_every_byte(tmp_path: Path) -> None:
    files = [tmp_path / "a", tmp_path / "b"]
    files[0].write_bytes(b"x" * 1000)
    files[1].write_bytes(b"y" * 3)
    nbytes, seconds = gpu.read_files(files, block=64)
    assert nbytes == 1003
    assert seconds >= 0


def test_table_of_a_stored_run_shows_every_run_and_the_ratio() -> None:
    results = json.loads(RESULTS.read_text())
    text = gpu.table(results)
    for run in results["runs"]:
        assert f"\n{run} " in text
    baseline_line = next(line for line in text.splitlines() if line.startswith("baseline"))
    assert " 1.00 " in baseline_line
    assert "time to interactive (auto)" in text


def test_table_reports_a_failed_run() -> None:
    results = {"runs": {"gpu": {"ok": False, "error": "OutOfMemory: 1 GiB"}}, "raw_read": {}}
    assert "gpu        FAILED: OutOfMemory: 1 GiB" in gpu.table(results)
