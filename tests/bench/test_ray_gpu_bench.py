"""The Ray GPU benchmark's parts that run anywhere: arguments, configs, the comparison and table.

The whole tiny run on a local Ray is in ``tests/cluster/test_bench_ray.py`` (it needs the session
Ray cluster of ``tests/cluster/conftest.py``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from backend.config import Config, EngineSettings
from bench import backend as backend_bench
from bench import ray_gpu


def test_full_size_defaults_are_the_issues_jobs(tmp_path: Path) -> None:
    args = ray_gpu.parse_args(["--models-dir", str(tmp_path / "m"), "--work", str(tmp_path)])
    assert (args.jobs, args.size, args.steps, args.profile) == (8, 1024, 28, "gpu")
    assert (args.compile, args.fp8_compute, args.two, args.device) == (
        False,
        False,
        "auto",
        "cuda:0",
    )
    config = ray_gpu.bench_config(args, "ray")
    assert config.engine.devices == ("cuda:0",)
    assert (config.engine.compile, config.engine.fp8_compute) == (False, False)
    assert not config.content.image_check
    assert config.storage.data_dir == tmp_path / "data-ray"
    limits = config.limits
    assert limits.min_side <= 1024 <= limits.max_side and limits.max_steps >= 28
    settings = EngineSettings.of(config)
    assert settings.max_pixels >= 1024 * 1024
    two = ray_gpu.cluster_config(args, 2)
    assert (two.backend, two.workers, two.gpus_per_worker, two.max_restarts) == ("ray", 2, 1, 0)


def test_every_path_gets_the_same_engine_settings(tmp_path: Path) -> None:
    args = ray_gpu.parse_args(["--work", str(tmp_path), "--compile", "--fp8-compute"])
    configs = [ray_gpu.bench_config(args, path) for path in ray_gpu.PATHS]
    assert len({c.engine for c in configs}) == 1
    assert configs[0].engine.compile and configs[0].engine.fp8_compute
    assert len({c.storage.data_dir for c in configs}) == len(ray_gpu.PATHS)  # one store each


def test_tiny_mode_is_cpu_sized(tmp_path: Path) -> None:
    args = ray_gpu.parse_args(["--tiny", "--models-dir", str(tmp_path)])
    assert (args.size, args.steps, args.device, args.profile) == (64, 2, "cpu", "auto")
    assert ray_gpu.cluster_config(args, 1).gpus_per_worker == 0
    assert ray_gpu.bench_config(args, "local").engine.t5_max_tokens == 64
    assert args.models_dir.is_absolute() and args.work.is_absolute()


def _path(wall: float, engine: float, total: float, workers: int = 1) -> dict[str, Any]:
    jobs = [
        ray_gpu.JobTime(
            f"w{i % workers}", wall, engine, 0.0, engine, 0.0, 10.0 * i, 10.0 * i + wall
        )
        for i in range(8)
    ]
    result = ray_gpu.PathResult("p", ok=True, engines=workers, ready_s=20.0, jobs=jobs)
    result.total_s = total
    return result.summary()


def test_comparison_and_table() -> None:
    paths = {
        "local": _path(5.300, 5.200, 43.0),
        "ray": _path(5.330, 5.210, 43.3),
        "ray-x2": _path(5.330, 5.210, 22.0, workers=2),
    }
    found = ray_gpu.compare(paths)
    assert found["overhead_wall_ms"] == pytest.approx(30.0)
    assert found["overhead_rest_ms"] == pytest.approx(20.0)
    assert found["overhead_met"]
    assert found["speedup_x2"] == pytest.approx(43.3 / 22.0)
    assert found["speedup_met"]
    text = ray_gpu.table({"paths": paths, "compare": found})
    assert "wall +30.0 ms, rest +20.0 ms (target ≤ 50 ms: met)" in text
    assert "two actors vs one: 1.97× jobs/s (target ≥ 1.9×: met)" in text
    assert "\nray-x2        2    8 " in text


def test_a_failed_path_is_reported_and_not_compared() -> None:
    paths = {"local": _path(5.3, 5.2, 43.0), "ray": {"ok": False, "error": "TimeoutError: x"}}
    found = ray_gpu.compare(paths)
    assert found == {}
    assert "ray     FAILED: TimeoutError: x" in ray_gpu.table({"paths": paths, "compare": found})


def test_the_big_instant_image_has_a_realistic_png_size() -> None:
    image = backend_bench.noise_image()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert image.size == (1024, 1024)
    assert 2.0e6 <= len(buffer.getvalue()) <= 3.0e6
    engine = backend_bench.instant_engine_big(EngineSettings.of(Config()), "cpu")
    assert engine.device == "cpu"
