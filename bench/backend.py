"""CPU benchmark of the backend itself (no model): ``python -m bench.backend [--jobs N ...]``.

1. Overhead per job: submit → events → PNG on disk → recorded, one job at a time, with an engine
   that returns a 64×64 image at once (so everything measured is backend: validation, SQLite
   commits, scheduling, thread hops, PNG encode + fsync + rename, event fan-out).
2. Queue under load: ``--users`` × ``--per-user`` jobs submitted concurrently (one coroutine
   each) while the engine is still "loading": submit throughput and latency, the fair order that
   results, and peak RSS.
3. Followers (``--followers 250,1000,4000``): that many jobs queued while the engine loads, one
   subscriber per job as the chat adapters have — each consumes ``subscribe()`` and, like a
   follower, pulls ``waiting()`` after ``queue_moved``, every N-th move with N = position // 10
   (coarser the further back). Then the engine is released: backend overhead per job (drain time
   / jobs) and event-loop lag (a ticker's lateness) p50 / p99 / max; the same without followers.
4. Ray path (issue 15; ``--ray``, on when ray is importable): the overhead loop of 1. once with
   the instant engine in this process and once with it in a Ray CPU actor (a local Ray started
   here, one ``GpuWorker`` behind ``RayCluster``), with the 64×64 image and with a noise-like
   1024×1024 one (PNG ≈ 2.4 MB: results cross as PNG bytes, so this shows the encode / transfer /
   decode share); then, for both, concurrent submits while the engine serves (submits/s) and how
   fast the queue drains (jobs/s). Ray − local = Ray's overhead per job.

Prints a Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import os
import platform
import resource
import sqlite3
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from PIL import Image

from backend.cluster.actor import EngineBuilder
from backend.cluster.ray_cluster import RayCluster
from backend.config import ClusterConfig, Config, EngineSettings
from backend.domain import (
    TERMINAL_EVENTS,
    ComponentState,
    EngineState,
    GenerationParams,
    ImagineRequest,
    LoadState,
    Platform,
    Queued,
    ReplyTarget,
    Requester,
    Succeeded,
    Timings,
)
from backend.engine.protocol import (
    CancelCheck,
    Engine,
    EngineFactory,
    EngineSource,
    GenerationResult,
    LoadReport,
    StepCallback,
)
from backend.service import Service

ROOT = Path(__file__).resolve().parents[1]  # the repository: on the Ray actors' PYTHONPATH


class InstantEngine:
    """Returns a prepared image (64×64 unless given) at once; ``load`` waits for ``ready``."""

    def __init__(
        self, ready: threading.Event | None = None, image: Image.Image | None = None
    ) -> None:
        self._ready = ready
        self._image = image if image is not None else Image.new("RGB", (64, 64), (40, 90, 160))
        done = ComponentState("dit", LoadState.READY, 1, 1)
        self._state = EngineState("cpu", components=(done,), warmed_up=True)

    @property
    def device(self) -> str:
        return "cpu"

    def load(self, report: LoadReport) -> None:
        if self._ready is not None:
            self._ready.wait()
        report(self._state)

    def generate(
        self, params: GenerationParams, on_step: StepCallback, cancelled: CancelCheck
    ) -> GenerationResult:
        for step in range(1, params.steps + 1):
            on_step(step, params.steps)
        return GenerationResult(self._image, Timings(), model="instant")

    def state(self) -> EngineState:
        return self._state

    def close(self) -> None:
        pass


BIG_SIDE = 1024
NOISE_SIGMA = 12.0  # a smooth gradient plus this much noise: PNG ≈ 2.4 MB at 1024², like a photo


def noise_image(side: int = BIG_SIDE, seed: int = 7) -> Image.Image:
    """A deterministic photo-like RGB image whose PNG is about as large as a generated one's."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) * (255 / side)
    base = np.stack([x, y, (x + y) / 2], axis=-1)
    pixels = np.clip(base + rng.normal(0, NOISE_SIGMA, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


# Builders for the Ray actor (``backend.cluster.actor.EngineBuilder``): module-level functions,
# which Ray pickles by name and the actor imports (the repository is on its PYTHONPATH).


def instant_engine(settings: EngineSettings, device: str) -> Engine:
    """``InstantEngine`` with its 64×64 image."""
    return InstantEngine()


def instant_engine_big(settings: EngineSettings, device: str) -> Engine:
    """``InstantEngine`` with the 1024×1024 noise-like image."""
    return InstantEngine(image=noise_image())


def bench_config(data_dir: Path, users: int, per_user: int) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        storage=dataclasses.replace(base.storage, data_dir=data_dir),
        limits=dataclasses.replace(
            base.limits,
            default_side=64,
            min_side=64,
            default_steps=4,
            per_user_queue=per_user,
            per_user_hourly=100_000,
            queue_max=max(users * per_user, 200),
        ),
        service=dataclasses.replace(base.service, stop_grace_s=0.0),
    )


def request(user: int, n: int) -> ImagineRequest:
    who = Requester(Platform.TELEGRAM, f"user{user}", chat_id=f"chat{user}")
    return ImagineRequest(f"u{user} j{n}", requester=who, reply_to=ReplyTarget(f"chat{user}"))


TICK_S = 0.005  # the lag ticker's period
REFRESH_EVERY = 10  # a follower at position p refreshes every max(1, p // 10)-th queue move


class LagTicker:
    """Sleeps ``TICK_S`` again and again and records how late each wake-up is (ms)."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []

    async def run(self) -> None:
        while True:
            due = time.perf_counter() + TICK_S
            await asyncio.sleep(TICK_S)
            self.lags_ms.append(1000 * max(0.0, time.perf_counter() - due))


class Countdown:
    """Sets ``all_done`` once ``one_done`` was called ``count`` times."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.all_done = asyncio.Event()

    def one_done(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.all_done.set()


async def pull_positions(
    service: Service, job_id: str, first: Queued, pulls: list[int], set_up: Countdown
) -> None:
    """What a follower does while its job waits: refresh after every N-th queue move."""
    seen, position = service.queue_version, first.position
    set_up.one_done()
    while True:
        seen = await service.queue_moved(seen + max(1, position // REFRESH_EVERY) - 1)
        waiting = service.waiting(job_id)
        pulls.append(1)
        if waiting is None:
            return
        position = waiting.position


async def follow(service: Service, job_id: str, pulls: list[int], set_up: Countdown) -> None:
    """Consume the job's events to the end, pulling its position while it waits."""
    events = service.subscribe(job_id)
    first = await anext(events)
    puller = None
    if isinstance(first, Queued):
        puller = asyncio.create_task(pull_positions(service, job_id, first, pulls, set_up))
    try:
        async for event in events:
            assert not isinstance(event, Queued), "positions are pulled, never pushed"
            if isinstance(event, TERMINAL_EVENTS):
                assert isinstance(event, Succeeded), event
    finally:
        if puller is not None:
            puller.cancel()


async def followers_run(data_dir: Path, jobs: int, *, subscribe: bool) -> dict[str, float]:
    """``jobs`` queued (one per user) while the engine loads, then drained; see the docstring."""
    config = bench_config(data_dir, jobs, 1)
    ready = threading.Event()
    engines: list[Engine] = [InstantEngine(ready)]
    pulls: list[int] = []
    set_up = Countdown(jobs)  # followers waiting for their first queue move
    ticker = LagTicker()
    async with Service.open(config, lambda: engines) as service:
        ids = [(await service.submit(request(user, 0))).job.id for user in range(jobs)]
        async with asyncio.TaskGroup() as group:
            tick = group.create_task(ticker.run())
            watched = ids if subscribe else []
            followers = [group.create_task(follow(service, i, pulls, set_up)) for i in watched]
            if watched:  # every follower set up before the engine starts
                await set_up.all_done.wait()
            await asyncio.sleep(2 * TICK_S)  # the ticker records the setup's lag: not counted
            ticker.lags_ms.clear()
            started = time.perf_counter()
            ready.set()
            for job_id in ids if not subscribe else []:
                async for _ in service.subscribe(job_id):
                    pass
            await asyncio.gather(*followers)
            elapsed = time.perf_counter() - started
            tick.cancel()
    lags = ticker.lags_ms or [0.0]
    return {
        "ms_per_job": 1000 * elapsed / jobs,
        "lag_p50_ms": statistics.median(lags),
        "lag_p99_ms": percentile(lags, 0.99),
        "lag_max_ms": max(lags),
        "pulls_per_job": len(pulls) / jobs,
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def overhead(data_dir: Path, jobs: int) -> list[float]:
    """Seconds from submit to the Succeeded event (image stored and recorded), per job."""
    seconds, _ = await overhead_and_serving(data_dir, jobs)
    return seconds


# The engines of a run, made from its config: a factory of local engines, or a Ray source.
Engines = Callable[[Config], EngineFactory | EngineSource]


async def overhead_and_serving(
    data_dir: Path,
    jobs: int,
    engines: Engines | None = None,
    *,
    warm: int = 1,
    served: tuple[int, int] | None = None,
) -> tuple[list[float], dict[str, float]]:
    """The overhead loop (seconds per job, one job at a time), then ``serving`` on the same
    service if ``served`` = (users, jobs per user) is given. ``engines``: one ``InstantEngine``
    in this process unless given; ``warm`` jobs first, not counted (the first one waits for the
    engine to load)."""
    users, per_user = served or (1, max(1, jobs))
    config = bench_config(data_dir, users, per_user)
    seconds = []
    async with Service.open(config, (engines or local_engines(instant_engine))(config)) as service:
        for n in range(warm):
            sub = await service.submit(request(0, -1 - n))
            async for _ in service.subscribe(sub.job.id):
                pass
        for n in range(jobs):
            started = time.perf_counter()
            sub = await service.submit(request(0, n))
            async for event in service.subscribe(sub.job.id):
                if isinstance(event, TERMINAL_EVENTS):
                    assert isinstance(event, Succeeded), event
            seconds.append(time.perf_counter() - started)
        stats = await serving(service, users, per_user) if served else {}
    return seconds, stats


async def serving(service: Service, users: int, per_user: int) -> dict[str, float]:
    """``users`` × ``per_user`` jobs submitted concurrently while the engine is ready and serves
    them: submit throughput and latency, then jobs per second until the last one is stored."""
    latencies: list[float] = []
    ids: list[str] = []

    async def one(user: int, n: int) -> None:
        begin = time.perf_counter()
        sub = await service.submit(request(1 + user, n))
        latencies.append(time.perf_counter() - begin)
        ids.append(sub.job.id)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n in range(per_user):
            for user in range(users):
                group.create_task(one(user, n))
    submitted = time.perf_counter() - started
    for job_id in ids:  # roughly in completion order: the last one ends the wait
        async for event in service.subscribe(job_id):
            if isinstance(event, TERMINAL_EVENTS):
                assert isinstance(event, Succeeded), event
    drained = time.perf_counter() - started
    return {
        "submits_per_s": len(ids) / submitted,
        "submit_p50_ms": 1000 * statistics.median(latencies),
        "submit_p99_ms": 1000 * percentile(latencies, 0.99),
        "jobs_per_s": len(ids) / drained,
    }


def local_engines(build: EngineBuilder) -> Engines:
    """``build``'s engine in this process, driven by the service's engine thread."""

    def engines(config: Config) -> EngineFactory:
        return lambda: [build(EngineSettings.of(config), "cpu")]

    return engines


def ray_engines(build: EngineBuilder) -> Engines:
    """``build``'s engine in one Ray CPU actor (``RayCluster``, workers = 1) of the Ray this
    process joined: the service drives it through ``RayEngine``."""
    cluster = ClusterConfig(
        backend="ray", workers=1, gpus_per_worker=0, cpus_per_worker=1, max_restarts=0
    )
    return lambda config: RayCluster(cluster, EngineSettings.of(config), build).source()


RAY_OBJECT_STORE_BYTES = 256 * 1024**2


def start_ray(**options: Any) -> bool:
    """Start a local Ray and join it; False when this process already joined one (a test's).

    Call it from the main thread: Ray's processes end with the thread that started them.
    ``address="local"`` starts a new one even where another Ray runs on this host. The actors
    get this repository on their PYTHONPATH (they import the builders by name). ``options`` go
    to ``ray.init`` (``num_gpus``, ``object_store_memory``).
    """
    import ray

    if ray.is_initialized():
        return False
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    settings: dict[str, Any] = {
        "address": "local",
        "include_dashboard": False,
        "object_store_memory": RAY_OBJECT_STORE_BYTES,
        "namespace": "majicbot-bench",
        "runtime_env": {"env_vars": {"PYTHONPATH": path}},
        "logging_level": "WARNING",
    }
    ray.init(**{**settings, **options})
    return True


@dataclasses.dataclass
class RayComparison:
    """Per image ("small" 64×64, "big" 1024×1024) and path ("local", "ray"): the seconds per
    job of the overhead loop; per path: ``serving`` with the small image."""

    jobs: dict[str, int]
    png_bytes: dict[str, int]
    seconds: dict[tuple[str, str], list[float]]
    serving: dict[str, dict[str, float]]
    users: int
    per_user: int


def ray_comparison(
    data_dir: Path, jobs: int, big_jobs: int, users: int, per_user: int, warm: int = 5
) -> RayComparison:
    """The overhead loop and ``serving``, local engine vs Ray actor, same process and config."""
    from backend.images import encode_png

    started = start_ray()
    builds = {"small": instant_engine, "big": instant_engine_big}
    png = {
        "small": len(encode_png(Image.new("RGB", (64, 64)))),
        "big": len(encode_png(noise_image())),
    }
    result = RayComparison({"small": jobs, "big": big_jobs}, png, {}, {}, users, per_user)
    try:
        for image, build in builds.items():
            count = result.jobs[image]
            for path, engines in (("local", local_engines(build)), ("ray", ray_engines(build))):
                served = (users, per_user) if image == "small" else None
                seconds, stats = asyncio.run(
                    overhead_and_serving(
                        data_dir / f"{image}-{path}", count, engines, warm=warm, served=served
                    )
                )
                result.seconds[image, path] = seconds
                if stats:
                    result.serving[path] = stats
    finally:
        if started:
            import ray

            ray.shutdown()
    return result


async def load(data_dir: Path, users: int, per_user: int) -> dict[str, float]:
    """Concurrent submits while the engine loads; then the planned order's fairness."""
    config = bench_config(data_dir, users, per_user)
    ready = threading.Event()
    engines: list[Engine] = [InstantEngine(ready)]
    latencies: list[float] = []

    async def one(user: int, n: int) -> None:
        started = time.perf_counter()
        await service.submit(request(user, n))
        latencies.append(time.perf_counter() - started)

    async with Service.open(config, lambda: engines) as service:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for n in range(per_user):
                for user in range(users):
                    group.create_task(one(user, n))
        elapsed = time.perf_counter() - started
        order = [job.params.prompt for job in service._board.ordered()]
        ready.set()
    return {
        "submits_per_s": len(latencies) / elapsed,
        "submit_p50_ms": 1000 * statistics.median(latencies),
        "submit_p99_ms": 1000 * percentile(latencies, 0.99),
        **fairness(order, users),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def fairness(order: list[str], users: int) -> dict[str, float]:
    """Rank spread of each round (the k-th jobs of all users) and FIFO within users."""
    ranks: defaultdict[int, list[int]] = defaultdict(list)
    last_n: dict[str, int] = {}
    fifo = True
    for rank, prompt in enumerate(order):
        user, job = prompt.split()
        n = int(job[1:])
        fifo = fifo and last_n.get(user, -1) < n
        last_n[user] = n
        ranks[n].append(rank)
    spreads = [max(r) - min(r) for r in ranks.values()]
    firsts = ranks[0]
    return {
        "max_round_spread": max(spreads),
        "ideal_round_spread": users - 1,
        "last_first_job_rank": max(firsts),
        "fifo_within_users": float(fifo),
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        ray = f", ray {version('ray')}"
    except PackageNotFoundError:
        ray = ""
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}; Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, aiosqlite "
        f"{version('aiosqlite')}, Pillow {version('pillow')}{ray}"
    )


def ray_importable() -> bool:
    return importlib.util.find_spec("ray") is not None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs for the overhead run")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--followers", default="250,1000,4000", help="queue sizes; '' to skip")
    parser.add_argument(
        "--ray",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="local engine vs Ray actor (default: on when ray is importable)",
    )
    parser.add_argument("--ray-jobs", type=int, default=300, help="Ray run: jobs, 64×64 image")
    parser.add_argument("--ray-big-jobs", type=int, default=100, help="Ray run: jobs, 1024²")
    parser.add_argument("--ray-users", type=int, default=20, help="Ray run: serving, users")
    parser.add_argument("--ray-per-user", type=int, default=10, help="Ray run: serving, jobs each")
    args = parser.parse_args(argv)
    with_ray = ray_importable() if args.ray is None else args.ray
    sizes = [int(n) for n in args.followers.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        seconds = asyncio.run(overhead(Path(tmp) / "overhead", args.jobs))
        stats = asyncio.run(load(Path(tmp) / "load", args.users, args.per_user))
        runs = {
            (n, subscribe): asyncio.run(
                followers_run(Path(tmp) / f"f{n}{subscribe}", n, subscribe=subscribe)
            )
            for n in sizes
            for subscribe in (True, False)
        }
        compared = None
        if with_ray:
            compared = ray_comparison(
                Path(tmp) / "ray", args.ray_jobs, args.ray_big_jobs, args.ray_users,
                args.ray_per_user,
            )  # fmt: skip
    ms = [1000 * s for s in seconds]
    print(f"### Backend (CPU, `python -m bench.backend`), {time.strftime('%Y-%m-%d')}\n")
    print(f"Machine: {machine()}.\n")
    print("| measure | value |\n|---|---|")
    print(
        f"| overhead per job, median ({len(ms)} jobs, 4 steps) | {statistics.median(ms):.2f} ms |"
    )
    print(f"| overhead per job, p99 | {percentile(ms, 0.99):.2f} ms |")
    total = args.users * args.per_user
    print(f"| submit throughput ({total} jobs, {args.users} users, concurrent) "
          f"| {stats['submits_per_s']:.0f} /s |")  # fmt: skip
    print(f"| submit latency under load, p50 / p99 | {stats['submit_p50_ms']:.1f} / "
          f"{stats['submit_p99_ms']:.1f} ms |")  # fmt: skip
    print(f"| max rank spread of a round (k-th jobs of all users); ideal {args.users - 1} | "
          f"{stats['max_round_spread']:.0f} |")  # fmt: skip
    print(f"| rank of the last user's first job (ideal {args.users - 1}) | "
          f"{stats['last_first_job_rank']:.0f} |")  # fmt: skip
    print(f"| FIFO within every user | {'yes' if stats['fifo_within_users'] else 'NO'} |")
    print(f"| peak RSS of the process | {stats['peak_rss_mib']:.0f} MiB |")
    if runs:
        print_followers(runs)
    if compared is not None:
        print_ray(compared)


def print_followers(runs: dict[tuple[int, bool], dict[str, float]]) -> None:
    print("\n| queued jobs | followers | overhead per job | loop lag p50 / p99 / max "
          "| waiting() pulls per job |\n|---|---|---|---|---|")  # fmt: skip
    for (jobs, subscribe), r in runs.items():
        print(f"| {jobs:,} | {'one per job' if subscribe else 'none'} | {r['ms_per_job']:.2f} ms "
              f"| {r['lag_p50_ms']:.1f} / {r['lag_p99_ms']:.1f} / {r['lag_max_ms']:.1f} ms "
              f"| {r['pulls_per_job']:.1f} |")  # fmt: skip


def print_ray(r: RayComparison) -> None:
    """Local engine vs Ray actor, and the difference (Ray's cost per job)."""
    print("\n#### Ray path (issue 15): the instant engine here vs in a Ray CPU actor\n")
    print("| measure | local engine | Ray actor | Ray − local |\n|---|---|---|---|")
    names = {"small": "64×64", "big": "1024×1024"}
    for image in ("small", "big"):
        local, ray = (
            [1000 * s for s in r.seconds[image, path]] for path in ("local", "ray")
        )  # fmt: skip
        size = r.png_bytes[image]
        png = f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
        what = f"{r.jobs[image]} jobs, {names[image]}, PNG {png}"
        for label, stat in (
            ("median", statistics.median),
            ("p99", lambda v: percentile(v, 0.99)),
        ):
            a, b = stat(local), stat(ray)
            print(f"| overhead per job, {label} ({what}) | {a:.2f} ms | {b:.2f} ms "
                  f"| {b - a:+.2f} ms |")  # fmt: skip
    if r.serving:
        local_s, ray_s = r.serving["local"], r.serving["ray"]
        total = r.users * r.per_user
        print(f"| submit throughput while serving ({total} jobs, {r.users} users, concurrent) "
              f"| {local_s['submits_per_s']:.0f} /s | {ray_s['submits_per_s']:.0f} /s "
              f"| {ray_s['submits_per_s'] / local_s['submits_per_s']:.2f}× |")  # fmt: skip
        print(f"| submit latency while serving, p50 / p99 | {local_s['submit_p50_ms']:.1f} / "
              f"{local_s['submit_p99_ms']:.1f} ms | {ray_s['submit_p50_ms']:.1f} / "
              f"{ray_s['submit_p99_ms']:.1f} ms | |")  # fmt: skip
        extra_ms = 1000 / ray_s["jobs_per_s"] - 1000 / local_s["jobs_per_s"]
        print(f"| jobs served per second, those {total} back to back (64×64) "
              f"| {local_s['jobs_per_s']:.1f} /s | {ray_s['jobs_per_s']:.1f} /s "
              f"| {extra_ms:+.2f} ms per job |")  # fmt: skip


if __name__ == "__main__":
    main()
