"""Ray path on GPUs (issue 15): a Ray actor's cost per job against the local engine, 2 GPUs vs 1.

    python -m bench.ray_gpu [--out DIR] [--models-dir .bench/models] [--tokenizers-from DIR]
                            [--jobs 8] [--local-jobs N] [--steps 28] [--size 1024]
    python -m bench.ray_gpu --tiny --models-dir DIR --jobs 2 --steps 2   # CPU, tiny FLUX

In ONE process: writes the random-weight fixture (``bench.random_weights``) if absent, then queues
``--jobs`` jobs at once (one user each, 1024², 28 steps, the same prompt, seeds differ) through

- ``local``: ``Service.open(config, factory)`` with the factory of ``make_engines``: one
  ``DiffsynthEngine`` on cuda:0 in this process;
- ``ray``: one ``GpuWorker`` actor (``num_gpus=1``) behind ``RayCluster`` (workers = 1) in a local
  Ray started here (repository on the actors' PYTHONPATH);
- ``ray-x2`` (when there are 2 GPUs or more, or ``--two on``): two actors, one per GPU.

Every path uses the same engine settings (default: profile ``gpu``, bf16, compile and fp8
compute off, so no background compile runs during the timed jobs). Each engine first runs one
warm job of the same size with ``--warm-steps`` steps, not counted. Per timed job, from the store:
wall = started → finished (image stored), the engine's own seconds (text encode + denoise +
decode), and the rest (wall − engine). Ray overhead per job = median wall (ray) − median wall
(local), and the same on the rest (which does not depend on the GPU's speed of the moment).
Throughput = jobs / (first submit → last finished); ``ray-x2`` against ``ray`` (target ≥ 1.9×).
Full results: ``<out>/ray-gpu-<card>-<date>.json``; a log ``<out>/ray-gpu.log``; a short table.

``--tiny`` runs the same on the CPU with the tiny FLUX (``tests/tinyflux``), for tests.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from backend.config import (
    ClusterConfig,
    Config,
    ContentConfig,
    EngineConfig,
    EngineSettings,
    LimitsConfig,
    ServiceConfig,
    StorageConfig,
)
from backend.domain import (
    CLI_REQUESTER,
    TERMINAL_EVENTS,
    ImagineRequest,
    Options,
    Platform,
    ReplyTarget,
    Requester,
    Succeeded,
)
from backend.engine.protocol import EngineFactory, EngineSource
from backend.service import Service
from bench import random_weights as rw
from bench.backend import start_ray
from bench.gpu import PROMPT, SEED, gpu_info, versions

log = logging.getLogger("majicbot.bench")

PATHS = ("local", "ray", "ray-x2")
OVERHEAD_TARGET_MS = 50.0
SPEEDUP_TARGET = 1.9


# ---- configuration (no GPU, no ray needed: tested on the CPU) ----------------------------------


def bench_config(args: argparse.Namespace, path: str) -> Config:
    """The service's config for one path: the same engine settings for every path, its own data
    dir, the size and steps of the run, no image safety check (no classifier on the machine)."""
    side, steps = args.size, max(args.steps, args.warm_steps)
    jobs = max(args.jobs, args.local_jobs or 0) + 8
    return Config(
        engine=EngineConfig(
            models_dir=args.models_dir, devices=(args.device,), profile=args.profile,
            compile=args.compile, fp8_compute=args.fp8_compute,
            t5_max_tokens=64 if args.tiny else 512,
        ),
        storage=StorageConfig(data_dir=args.work / f"data-{path}"),
        limits=LimitsConfig(
            default_side=side, min_side=min(64, side), max_side=max(2048, side),
            default_steps=steps, max_steps=max(50, steps), aspect_ratios=("1:1",),
            per_user_hourly=100_000, queue_max=max(200, jobs),
        ),
        service=ServiceConfig(stop_grace_s=0.0),
        content=ContentConfig(image_check=False),
    )  # fmt: skip


def cluster_config(args: argparse.Namespace, workers: int) -> ClusterConfig:
    """``workers`` actors, one GPU each (CPU actors in ``--tiny``), never restarted."""
    gpus = 0.0 if args.tiny else 1.0
    return ClusterConfig(
        backend="ray", workers=workers, gpus_per_worker=gpus, cpus_per_worker=1, max_restarts=0
    )


def actor_builder(args: argparse.Namespace) -> Any:
    """The ``EngineBuilder`` the actors import by name: the product's engine, or the tiny one."""
    if args.tiny:
        from tests.cluster.engines import tiny_engine

        return tiny_engine
    from backend.cluster.actor import diffsynth_engine

    return diffsynth_engine


def engines_of(args: argparse.Namespace, path: str, config: Config) -> EngineFactory | EngineSource:
    """``local``: ``make_engines`` here (one engine on ``args.device``); else a ``RayCluster``."""
    settings = EngineSettings.of(config)
    if path == "local":
        from backend.engine.factory import make_engines

        return lambda: make_engines(settings)
    from backend.cluster.ray_cluster import RayCluster

    workers = 2 if path == "ray-x2" else 1
    return RayCluster(cluster_config(args, workers), settings, actor_builder(args)).source()


def prepare_models(args: argparse.Namespace) -> None:
    """The tiny files (registered here), or the full-size random weights and tokenizers."""
    if args.tiny:
        from tests.tinyflux import register_tiny_models, write_tiny_models

        write_tiny_models(args.models_dir)
        register_tiny_models()
        return
    rw.write_fixture(args.models_dir, log=lambda line: print(line, flush=True))
    if args.tokenizers_from:
        rw.copy_tokenizers(args.tokenizers_from, args.models_dir)
    for name in ("tokenizer", "tokenizer_2"):
        if not (args.models_dir / rw.FLUX_DEV / name).is_dir():
            raise SystemExit(
                f"{args.models_dir / rw.FLUX_DEV / name} is missing: pass --tokenizers-from "
                "(folders made with bench.fixture_tokenizers)"
            )


def job_request(user: str, n: int, args: argparse.Namespace, steps: int) -> ImagineRequest:
    who = Requester(Platform.TELEGRAM, user, chat_id=user)
    options = Options(seed=SEED + n, steps=steps, width=args.size, height=args.size)
    return ImagineRequest(PROMPT, who, ReplyTarget(user), options)


# ---- one path: open, wait for every engine, warm, queue the jobs at once -----------------------


@dataclass
class JobTime:
    worker: str
    wall_s: float  # started -> finished (image stored, job recorded)
    engine_s: float  # the engine's own text encode + denoise + decode
    text_encode_s: float
    denoise_s: float
    decode_s: float
    started_at: float
    finished_at: float

    @property
    def rest_s(self) -> float:
        return self.wall_s - self.engine_s


@dataclass
class PathResult:
    path: str
    ok: bool = False
    error: str | None = None
    engines: int = 0
    engine_devices: list[str] = field(default_factory=list)
    profile: str = ""
    ready_s: float | None = None  # service open -> every engine ready (imports, loads, warm-up)
    warm_workers: list[str] = field(default_factory=list)
    jobs: list[JobTime] = field(default_factory=list)
    total_s: float | None = None  # first submit -> last job finished

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        walls = [j.wall_s for j in self.jobs]
        data["median_wall_s"] = statistics.median(walls) if walls else None
        data["median_engine_s"] = statistics.median([j.engine_s for j in self.jobs] or [0.0])
        data["median_rest_s"] = statistics.median([j.rest_s for j in self.jobs] or [0.0])
        data["gap_median_ms"] = gap_median_ms(self.jobs)
        data["jobs_per_s"] = len(self.jobs) / self.total_s if self.total_s else None
        data["workers_used"] = sorted({j.worker for j in self.jobs})
        return data


def gap_median_ms(jobs: Sequence[JobTime]) -> float | None:
    """Median idle time of a worker between one job's end and its next job's start."""
    gaps = []
    for worker in {j.worker for j in jobs}:
        mine = sorted((j for j in jobs if j.worker == worker), key=lambda j: j.started_at)
        gaps += [b.started_at - a.finished_at for a, b in itertools.pairwise(mine)]
    return 1000 * statistics.median(gaps) if gaps else None


async def wait_ready(service: Service, count: int, timeout_s: float) -> list[Any]:
    """Every engine's state once ``count`` are ready; raises when one failed or on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await service.status(CLI_REQUESTER)
        failed = [e.error for e in status.engines if e.error]
        if failed:
            raise RuntimeError(f"an engine failed to load: {failed}")
        ready = [e for e in status.engines if e.ready]
        if len(ready) >= count:
            return ready
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ready)} of {count} engines ready after {timeout_s} s")
        await asyncio.sleep(0.2)


async def finish(service: Service, ids: Sequence[str]) -> None:
    """Wait for every job, in order; each must succeed."""
    for job_id in ids:
        async for event in service.subscribe(job_id):
            if isinstance(event, TERMINAL_EVENTS):
                assert isinstance(event, Succeeded), event


async def run_path(args: argparse.Namespace, path: str, jobs: int, engines: int) -> PathResult:
    result = PathResult(path, engines=engines)
    config = bench_config(args, path)
    opened = time.monotonic()
    async with Service.open(config, engines_of(args, path, config)) as service:
        states = await wait_ready(service, engines, args.ready_timeout_s)
        result.ready_s = time.monotonic() - opened
        result.engine_devices = [s.device for s in states]
        result.profile = states[0].profile
        print(f"{path}: {engines} engine(s) ready in {result.ready_s:.1f} s", flush=True)
        warmed: set[str] = set()
        for attempt in range(3):  # one warm job per engine (an idle one takes each)
            ids = [
                (
                    await service.submit(
                        job_request(f"warm{attempt}-{i}", i, args, args.warm_steps)
                    )
                ).job.id
                for i in range(engines)
            ]
            await asyncio.wait_for(finish(service, ids), args.job_timeout_s * engines)
            warmed |= {(await service.job(i)).worker or "" for i in ids}
            if len(warmed) >= engines:
                break
        result.warm_workers = sorted(warmed)
        first = time.time()
        ids = [
            (await service.submit(job_request(f"user{n}", n, args, args.steps))).job.id
            for n in range(jobs)
        ]
        await asyncio.wait_for(finish(service, ids), args.job_timeout_s * jobs)
        done = [await service.job(i) for i in ids]
    for job in done:
        t = job.timings
        assert t is not None and job.started_at is not None and job.finished_at is not None
        result.jobs.append(
            JobTime(
                job.worker or "", job.finished_at - job.started_at, t.generate_s,
                t.text_encode_s, t.denoise_s, t.decode_s, job.started_at, job.finished_at,
            )
        )  # fmt: skip
    result.total_s = max(j.finished_at for j in result.jobs) - first
    result.ok = True
    return result


def measure(args: argparse.Namespace, path: str, jobs: int, engines: int) -> dict[str, Any]:
    """One path in this process; a failure is recorded and the other paths still run."""
    print(f"--- {path}: {jobs} jobs, {engines} engine(s)", flush=True)
    try:
        result = asyncio.run(run_path(args, path, jobs, engines))
    except Exception as exc:  # reported in the JSON and the table
        log.exception("%s failed", path)
        result = PathResult(path, engines=engines, error=f"{type(exc).__name__}: {exc}"[:2000])
    return result.summary()


# ---- summary, table, main ----------------------------------------------------------------------


def compare(paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ray's overhead per job (ray − local medians) and the two-actor speed-up."""
    local, ray, two = (paths.get(p) or {} for p in PATHS)
    found: dict[str, Any] = {}
    if local.get("ok") and ray.get("ok"):
        wall = 1000 * (ray["median_wall_s"] - local["median_wall_s"])
        rest = 1000 * (ray["median_rest_s"] - local["median_rest_s"])
        found.update(
            overhead_wall_ms=wall,
            overhead_rest_ms=rest,
            overhead_target_ms=OVERHEAD_TARGET_MS,
            overhead_met=max(wall, rest) <= OVERHEAD_TARGET_MS,
        )
    if ray.get("ok") and two.get("ok") and ray.get("jobs_per_s"):
        speedup = two["jobs_per_s"] / ray["jobs_per_s"]
        found.update(speedup_x2=speedup, speedup_target=SPEEDUP_TARGET, speedup_met=speedup >= 1.9)
    return found


def _fmt(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    return "—" if value is None else f"{value * scale:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """A short fixed-width table of the paths and the comparison."""
    rows = [
        f"{'path':<7} {'engines':>7} {'jobs':>4} {'ready s':>8} {'wall s':>7} {'engine s':>8} "
        f"{'rest ms':>8} {'gap ms':>7} {'jobs/s':>7} {'total s':>8}  workers"
    ]
    for name, r in results["paths"].items():
        if not r.get("ok"):
            rows.append(f"{name:<7} FAILED: {r.get('error')}")
            continue
        rows.append(
            f"{name:<7} {r['engines']:>7} {len(r['jobs']):>4} {_fmt(r['ready_s'], 1):>8} "
            f"{_fmt(r['median_wall_s'], 3):>7} {_fmt(r['median_engine_s'], 3):>8} "
            f"{_fmt(r['median_rest_s'], 1, 1000):>8} {_fmt(r['gap_median_ms'], 1):>7} "
            f"{_fmt(r['jobs_per_s'], 3):>7} {_fmt(r['total_s'], 1):>8}  "
            f"{','.join(r['workers_used'])}"
        )
    c = results.get("compare", {})
    if "overhead_wall_ms" in c:
        rows.append(
            f"Ray overhead per job (medians, ray − local): wall {c['overhead_wall_ms']:+.1f} ms, "
            f"rest {c['overhead_rest_ms']:+.1f} ms (target ≤ {OVERHEAD_TARGET_MS:.0f} ms: "
            f"{'met' if c['overhead_met'] else 'NOT met'})"
        )
    if "speedup_x2" in c:
        rows.append(
            f"two actors vs one: {c['speedup_x2']:.2f}× jobs/s (target ≥ {SPEEDUP_TARGET}×: "
            f"{'met' if c['speedup_met'] else 'NOT met'})"
        )
    return "\n".join(rows)


def gpu_count(args: argparse.Namespace) -> int:
    if args.tiny:
        return 0
    import torch

    return int(torch.cuda.device_count())


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    gpus = gpu_count(args)
    try:
        ray_version = metadata.version("ray")
    except metadata.PackageNotFoundError:
        ray_version = "absent"
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": "python -m bench.ray_gpu " + " ".join(args.argv),
            "gpu": {} if args.tiny else gpu_info(),
            "gpus": gpus,
            "versions": {**versions(), "ray": ray_version},
            "cpu_count": os.cpu_count(),
            "tiny": args.tiny,
            "size": args.size,
            "steps": args.steps,
            "warm_steps": args.warm_steps,
            "profile": args.profile,
            "compile": args.compile,
            "fp8_compute": args.fp8_compute,
            "prompt": PROMPT,
        },
        "paths": {},
    }
    started = time.perf_counter()
    prepare_models(args)
    results["fixture_s"] = time.perf_counter() - started
    two = args.two == "on" or (args.two == "auto" and gpus >= 2)
    results["paths"]["local"] = measure(args, "local", args.local_jobs or args.jobs, 1)
    _save(results, args.out)
    ray_started = start_ray(num_gpus=gpus, object_store_memory=args.object_store_mib * 1024**2)
    try:
        results["paths"]["ray"] = measure(args, "ray", args.jobs, 1)
        _save(results, args.out)
        if two:
            results["paths"]["ray-x2"] = measure(args, "ray-x2", args.jobs, 2)
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    results["compare"] = compare(results["paths"])
    results["total_s"] = time.perf_counter() - started
    _save(results, args.out)
    return results


def _save(results: dict[str, Any], out: Path) -> Path:
    name = results["meta"]["gpu"].get("name", "cpu").replace(" ", "-")
    path = out / f"ray-gpu-{name}-{results['meta']['date'][:10]}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_gpu", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".bench/out")))
    parser.add_argument("--work", type=Path, default=Path(".bench/work-ray"), help="data dirs")
    parser.add_argument("--models-dir", type=Path, default=Path(".bench/models"))
    parser.add_argument("--tokenizers-from", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny FLUX (tests/tinyflux)")
    parser.add_argument("--jobs", type=int, default=8, help="jobs queued at once per Ray path")
    parser.add_argument("--local-jobs", type=int, default=0, help="for the local path (0: --jobs)")
    parser.add_argument("--size", type=int, default=None, help="side (1024; --tiny: 64)")
    parser.add_argument("--steps", type=int, default=None, help="steps (28; --tiny: 2)")
    parser.add_argument("--warm-steps", type=int, default=2, help="the warm job per engine")
    parser.add_argument("--profile", default=None, help="engine.profile (gpu; --tiny: auto)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--fp8-compute", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument(
        "--two", choices=("auto", "on", "off"), default="auto", help="auto: with ≥ 2 GPUs"
    )
    parser.add_argument("--object-store-mib", type=int, default=512)
    parser.add_argument("--ready-timeout-s", type=float, default=300)
    parser.add_argument("--job-timeout-s", type=float, default=120, help="per queued job")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.size = args.size or (64 if args.tiny else 1024)
    args.steps = args.steps or (2 if args.tiny else 28)
    args.profile = args.profile or ("auto" if args.tiny else "gpu")
    args.device = "cpu" if args.tiny else "cuda:0"
    # Absolute: the actors' working directory is not this one.
    args.models_dir, args.work = args.models_dir.resolve(), args.work.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(args.out / "ray-gpu.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        results = run_all(args)
    finally:
        root.removeHandler(handler)
        handler.close()
    print(table(results), flush=True)
    return 0 if all(r.get("ok") for r in results["paths"].values()) else 1


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger().handlers[0].setLevel(logging.WARNING)  # stderr: warnings and errors
    logging.getLogger("majicbot").setLevel(logging.INFO)  # ray-gpu.log: the service's INFO too
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)  # engine threads left in the driver must not hold up (or crash) the exit
