"""The Ray benchmarks end to end on the session's local Ray: ``bench.ray_gpu --tiny`` (the tiny
FLUX in this process and in a CPU actor) and the Ray rows of ``bench.backend``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import backend as backend_bench
from bench import ray_gpu

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.slow]


def test_ray_gpu_tiny_mode_runs_the_local_and_the_ray_path(
    ray_cluster: str, tiny_models_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    argv = ["--tiny", "--models-dir", str(tiny_models_dir), "--out", str(out), "--work",
            str(tmp_path / "work"), "--jobs", "2", "--two", "off"]  # fmt: skip
    assert ray_gpu.main(argv) == 0
    [written] = out.glob("ray-gpu-*.json")
    results = json.loads(written.read_text())
    local, ray = results["paths"]["local"], results["paths"]["ray"]
    assert local["ok"] and ray["ok"], (local.get("error"), ray.get("error"))
    assert [len(local["jobs"]), len(ray["jobs"])] == [2, 2]
    assert local["workers_used"] == ["cpu"] and ray["workers_used"] == ["ray-1"]
    assert ray["warm_workers"] == ["ray-1"]
    assert all(job["engine_s"] > 0 and job["wall_s"] >= job["engine_s"] for job in ray["jobs"])
    assert "overhead_wall_ms" in results["compare"]
    assert "ray-x2" not in results["paths"]
    assert (out / "ray-gpu.log").exists()


def test_backend_bench_prints_the_ray_rows(
    ray_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--jobs", "3", "--users", "3", "--per-user", "2", "--followers", "", "--ray",
            "--ray-jobs", "3", "--ray-big-jobs", "2", "--ray-users", "2",
            "--ray-per-user", "2"]  # fmt: skip
    backend_bench.main(argv)
    text = capsys.readouterr().out
    assert "#### Ray path (issue 15)" in text
    rows = [line for line in text.splitlines() if line.startswith("| overhead per job, median (")]
    assert len(rows) == 3  # the backend run's, then 64×64 and 1024×1024 local vs Ray
    assert "1024×1024, PNG 2." in rows[2]
    assert "| submit throughput while serving (4 jobs, 2 users, concurrent) |" in text
