"""GPU benchmark: every placement profile on full-size random weights, against a same-run baseline.

    python -m bench.gpu [--models-dir .bench/models] [--out DIR] [--runs baseline,gpu,...]

On a GPU machine with no weights: writes the random-weight fixture (``bench.random_weights``) if
absent, times a raw read of the files (the floor for loading), then measures each run in a FRESH
PROCESS:

- ``baseline``: diffsynth's plain ``FluxImagePipeline.from_pretrained`` with everything on the GPU
  in bf16, called directly, no service around it;
- ``gpu``, ``gpu-fp8``, ``balanced``, ``lowvram``, ``auto``: the product engine
  (``DiffsynthEngine``, as ``backend.engine.factory.make_engines`` builds it) with that profile
  forced; ``<profile>-before`` (e.g. ``lowvram-before``) is the same with the engine's pinned
  streaming fix off (``pinned_streaming=False``, ``backend.engine.streaming``), so one run
  measures before and after on the same machine; ``-restart`` is a second fresh process on the
  same data dir (compile artefacts warm), ``-eager`` the same with ``engine.compile = false``.

Compiled runs (``gpu``, ``gpu-fp8``): the first image is served eager while the background compile
runs; then the bench waits for the first compile stage (``--compile-timeout-s``), times one image
on it if a later stage is still compiling, waits for the last stage (``--final-timeout-s``,
``--restart-final-timeout-s`` for ``-restart`` runs) and times the steady images on it. Each
image records the stage that served it; ``steady_by_mode`` has the medians per stage and
``compile_stages`` when each stage could be swapped in (seconds after process start).

Per run: time to ready (process start → load and warm-up done) with per-component load seconds;
first image and steady seconds per image (median) with the text-encode / denoise / decode split;
peak VRAM (``torch.cuda.max_memory_allocated`` and the device's own used memory read by
``nvidia-smi`` every 100 ms) and peak host RSS. ``--tti`` adds time to interactive: process start
of ``majicbot serve`` → the Telegram adapter answers ``/status`` through the local Bot API fake
(``tests/fakes/telegram_server.py``), one fresh ``serve`` per listed profile.

Full results go to ``<out>/gpu-<card>-<date>.json`` (plus ``bench-logs.txt``, the tail of every
run's log); per-run files stay in ``--work``. The last image of each run is kept there as PNG
(and one more at ``--check-steps`` steps), and runs with images of the same step count are
compared pixel by pixel (max abs difference). A short table is printed last.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import random_weights as rw

RUNS = ("baseline", "gpu", "gpu-fp8", "balanced", "lowvram", "auto")
BEFORE = "-before"  # run suffix: the engine without the pinned-streaming fix
RESTART = "-restart"  # run suffix: a second process on the same data dir (compile caches warm)
EAGER = "-eager"  # run suffix: engine.compile = false
STORAGE = "-storage"  # gpu-fp8-storage: fp8 weights computed in bf16 (engine.fp8_compute = false)
SUFFIXES = (BEFORE, RESTART, EAGER)
PROMPT = "a photo of a cat sitting on a red chair in a sunny garden, detailed, 35 mm"
SEED = 1234
GiB = 1024**3


# ---- shared helpers ----------------------------------------------------------------------------


def fixture_paths(models_dir: Path, model: str = "majicflus_v1") -> dict[str, list[Path]]:
    """Group ("dit", "clip", "t5", "vae") → the fixture's safetensors files."""
    groups: dict[str, list[Path]] = {}
    for f in rw.plan(model):
        groups.setdefault(f.group, []).append(models_dir / f.relpath)
    return groups


def versions() -> dict[str, str]:
    """Package versions without importing the packages (the parent stays light)."""
    found = {"python": platform.python_version()}
    for name in ("torch", "diffsynth", "transformers", "safetensors", "python-telegram-bot"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def gpu_info() -> dict[str, str]:
    """Card name, memory and driver from nvidia-smi (empty when there is none)."""
    query = "name,memory.total,driver_version"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    name, memory, driver = (part.strip() for part in out.split(","))
    return {"name": name, "memory_total": memory, "driver": driver}


class DeviceMemoryPoller:
    """Peak of the device's used memory (all processes), read by ``nvidia-smi -lms``."""

    def __init__(self, interval_ms: int = 100) -> None:
        self.peak_mib = 0
        self.idle_mib: int | None = None
        self._cmd = [
            "nvidia-smi",
            "--query-gpu=memory.used",
            "--format=csv,noheader,nounits",
            "-i",
            "0",
            f"-lms={interval_ms}",
        ]
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DeviceMemoryPoller:
        try:
            self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, text=True)
        except OSError:
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip().isdigit():
                value = int(line)
                if self.idle_mib is None:
                    self.idle_mib = value
                self.peak_mib = max(self.peak_mib, value)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)


def read_files(paths: Iterable[Path], block: int = 64 * 1024 * 1024) -> tuple[int, float]:
    """Read every byte once; returns (bytes, seconds)."""
    buf = bytearray(block)
    view = memoryview(buf)
    total = 0
    start = time.perf_counter()
    for path in paths:
        with path.open("rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
    return total, time.perf_counter() - start


def drop_page_cache() -> bool:
    """Ask the kernel to drop clean page cache (root only); False when not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def raw_read(models_dir: Path, cold: bool) -> dict[str, Any]:
    """The loading floor: one pass over every fixture file, cold (if allowed) then warm."""
    paths = [p for group in fixture_paths(models_dir).values() for p in group]
    result: dict[str, Any] = {}
    if cold and drop_page_cache():
        nbytes, seconds = read_files(paths)
        result["cold_s"] = seconds
    nbytes, seconds = read_files(paths)
    result.update(bytes=nbytes, warm_s=seconds, warm_gb_per_s=nbytes / seconds / 1e9)
    return result


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ---- measurements inside one fresh process -----------------------------------------------------


@dataclass
class ImageTiming:
    wall_s: float
    text_encode_s: float
    denoise_s: float
    decode_s: float
    steps: int
    peak_allocated_bytes: int
    compiled_mode: str = ""  # the compile stage that served this image ("" = eager)


@dataclass
class RunResult:
    run: str
    ok: bool = True
    fp8_compute: bool = False
    compile: bool = False
    compile_mode: str = ""
    compiled_ready_s: float | None = None  # process start -> compiled path installable
    compile_wall_s: float | None = None  # engine ready -> compiled path installable
    compile_cache: str = ""
    compile_stages: list[dict[str, Any]] = field(default_factory=list)
    final_mode: str = ""  # the last compile stage (steady images are the ones it served)
    final_ready_s: float | None = None  # process start -> last stage installable
    optimization: dict[str, Any] = field(default_factory=dict)
    first_image_compiled: bool = False
    sdpa_backend: str = ""
    busy_queue: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    profile: str = ""
    profile_reason: str = ""
    time_to_ready_s: float | None = None
    import_s: float | None = None
    load_s: float | None = None
    components: list[dict[str, Any]] = field(default_factory=list)
    images: list[ImageTiming] = field(default_factory=list)
    size: int = 0
    steps: int = 0
    peak_allocated_load_bytes: int | None = None
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    peak_host_rss_bytes: int | None = None
    device_used_peak_mib: int | None = None
    device_used_idle_mib: int | None = None
    image_checksum: str = ""

    @property
    def first_image_s(self) -> float | None:
        return self.images[0].wall_s if self.images else None

    def steady_images(self) -> list[ImageTiming]:
        """Images after the first; with compile, only those the last stage served."""
        later = self.images[1:]
        if self.final_mode:
            return [i for i in later if i.compiled_mode == self.final_mode]
        return later

    @property
    def steady_s(self) -> float | None:
        return median([i.wall_s for i in self.steady_images()])

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        steady = self.steady_images()
        data["first_image_s"] = self.first_image_s
        data["steady_s_per_image"] = self.steady_s
        for part in ("text_encode_s", "denoise_s", "decode_s"):
            data[f"steady_{part}"] = median([getattr(i, part) for i in steady])
        data["steady_s_per_step"] = median([i.denoise_s / i.steps for i in steady if i.steps])
        by_mode: dict[str, list[ImageTiming]] = {}
        for image in self.images[1:]:
            by_mode.setdefault(image.compiled_mode or "eager", []).append(image)
        data["steady_by_mode"] = {
            mode: {
                "images": len(images),
                "s_per_image": median([i.wall_s for i in images]),
                "s_per_step": median([i.denoise_s / i.steps for i in images if i.steps]),
            }
            for mode, images in by_mode.items()
        }
        return data


class StepClock:
    """A ``progress_bar_cmd`` that timestamps the first and the last denoising step."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self._sync = sync
        self.first: float | None = None
        self.last: float | None = None

    def __call__(self, iterable: Iterable[Any]) -> Iterator[Any]:
        self._sync()
        self.first = time.perf_counter()
        yield from iterable
        self._sync()
        self.last = time.perf_counter()


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _checksum(image: Any) -> str:
    import hashlib

    return hashlib.md5(image.tobytes()).hexdigest()


def child_baseline(args: argparse.Namespace, t0: float, result: RunResult) -> None:
    """diffsynth alone: from_pretrained with every model on the GPU in bf16, then images."""
    os.environ["DIFFSYNTH_SKIP_DOWNLOAD"] = "True"
    result.profile = "diffsynth bf16 all-GPU"
    import torch
    from diffsynth.core import ModelConfig
    from diffsynth.pipelines.flux_image import FluxImagePipeline

    result.import_s = time.time() - t0
    files = fixture_paths(args.models_dir)
    tokenizers = args.models_dir / rw.FLUX_DEV
    start = time.time()
    pipe = FluxImagePipeline.from_pretrained(
        torch_dtype=torch.bfloat16,
        device="cuda",
        model_configs=[
            ModelConfig(path=str(files["dit"][0])),
            ModelConfig(path=str(files["clip"][0])),
            ModelConfig(path=[str(p) for p in files["t5"]]),
            ModelConfig(path=str(files["vae"][0])),
        ],
        tokenizer_1_config=ModelConfig(path=str(tokenizers / "tokenizer")),
        tokenizer_2_config=ModelConfig(path=str(tokenizers / "tokenizer_2")),
    )
    torch.cuda.synchronize()
    result.load_s = time.time() - start
    result.time_to_ready_s = time.time() - t0  # no warm-up: the first image pays for it
    result.peak_allocated_load_bytes = torch.cuda.max_memory_allocated()
    steps = args.steps_for.get("baseline", args.steps)
    result.steps = steps
    deadline = time.time() + args.run_budget_s
    for i in range(args.images):
        torch.cuda.reset_peak_memory_stats()
        clock = StepClock(torch.cuda.synchronize)
        begin = time.perf_counter()
        image = pipe(
            PROMPT,
            seed=SEED,
            num_inference_steps=steps,
            height=args.size,
            width=args.size,
            embedded_guidance=3.5,
            progress_bar_cmd=clock,
        )
        end = time.perf_counter()
        assert clock.first is not None and clock.last is not None
        result.images.append(
            ImageTiming(
                wall_s=end - begin,
                text_encode_s=clock.first - begin,
                denoise_s=clock.last - clock.first,
                decode_s=end - clock.last,
                steps=steps,
                peak_allocated_bytes=torch.cuda.max_memory_allocated(),
            )
        )
        result.image_checksum = _checksum(image)
        if i >= 1 and time.time() > deadline:
            break
    _finish_memory(result, torch)


def _finish_memory(result: RunResult, torch: Any) -> None:
    peaks = [i.peak_allocated_bytes for i in result.images]
    result.peak_allocated_bytes = max([result.peak_allocated_load_bytes or 0, *peaks])
    result.peak_reserved_bytes = torch.cuda.max_memory_reserved()
    result.peak_host_rss_bytes = _peak_rss()


def run_profile(run: str) -> tuple[str, bool, bool]:
    """(profile, fp8 compute, compile) of a run name such as gpu-fp8-restart."""
    name = run
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix)
    storage = name.endswith(STORAGE)
    profile = name.removesuffix(STORAGE)
    fp8 = profile == "gpu-fp8" and not storage
    return profile, fp8, not run.endswith(EAGER)


def bench_config(args: argparse.Namespace, profile: str, fp8: bool, compile_on: bool) -> Any:
    """The engine config of a run: one image size (1:1) to compile, a data dir shared by runs."""
    from backend.config import Config, EngineConfig, LimitsConfig, StorageConfig

    return Config(
        engine=EngineConfig(
            models_dir=args.models_dir, profile=profile, devices=("cuda:0",),
            compile=compile_on, fp8_compute=fp8,
        ),
        storage=StorageConfig(data_dir=args.work / "data"),
        limits=LimitsConfig(aspect_ratios=("1:1",)),
    )  # fmt: skip


def sdpa_backend(torch: Any) -> str:
    """The SDPA backend torch picks for FLUX's attention shape (after the engine's setting)."""
    q = torch.randn(1, 24, 4608, 128, device="cuda:0", dtype=torch.bfloat16)
    choice = int(torch._fused_sdp_choice(q, q, q))
    names = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}
    return names.get(choice, str(choice))


def wait_compiled(engine: Any, timeout_s: float) -> bool:
    """Poll until the first image size is compiled (or the compile failed / timed out)."""
    from backend.domain import Optimization

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        state = engine.optimization()
        if state.phase is Optimization.FAILED or state.phase is Optimization.OFF:
            return False
        if state.sizes_done >= 1:
            return True
        time.sleep(0.1)
    return False


def busy_queue(engine: Any, params: Any, jobs: int) -> dict[str, Any]:
    """``jobs`` rerolls back to back (same prompt, new seeds): GPU idle between jobs.

    The GPU is idle from the end of a job's VAE decode (synchronised) to the next job's first
    GPU work (CLIP's forward, or the DiT's x_embedder when the prompt cache answers).
    """
    import torch

    pipe = engine._pipe
    marks: dict[str, list[float]] = {"start": [], "end": []}
    started: list[bool] = [False]

    def gpu_start(*_: Any) -> None:
        if not started[0]:
            started[0] = True
            marks["start"].append(time.perf_counter())

    def gpu_end(*_: Any) -> None:
        torch.cuda.synchronize()
        marks["end"].append(time.perf_counter())

    handles = [
        pipe.text_encoder_1.register_forward_pre_hook(gpu_start),
        pipe.dit.x_embedder.register_forward_pre_hook(gpu_start),
        pipe.vae_decoder.register_forward_hook(gpu_end),
    ]
    walls = []
    begin = time.perf_counter()
    try:
        for i in range(jobs):
            started[0] = False
            job_start = time.perf_counter()
            engine.generate(dataclasses.replace(params, seed=SEED + 1 + i), _no_step, _never)
            walls.append(time.perf_counter() - job_start)
    finally:
        for handle in handles:
            handle.remove()
    total = time.perf_counter() - begin
    gaps = [marks["start"][i + 1] - marks["end"][i] for i in range(len(marks["end"]) - 1)]
    cache = engine._prompt_cache
    return {
        "jobs": jobs,
        "total_s": total,
        "median_job_s": median(walls),
        "gap_median_ms": (median(gaps) or 0) * 1e3,
        "gap_max_ms": max(gaps, default=0) * 1e3,
        "idle_fraction_of_job": (median(gaps) or 0) / (median(walls) or 1),
        "prompt_cache_hits": getattr(cache, "hits", None),
        "prompt_cache_misses": getattr(cache, "misses", None),
    }


def child_engine(args: argparse.Namespace, t0: float, result: RunResult) -> None:
    """The product engine with ``profile`` forced (or ``auto``): load, warm up, images."""
    from backend.config import EngineSettings
    from backend.domain import GenerationParams
    from backend.engine.diffsynth_engine import DiffsynthEngine

    profile, fp8, compile_on = run_profile(result.run)
    result.fp8_compute = fp8
    cap_gib = args.cap_for.get(profile)
    if cap_gib is not None:
        import torch

        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(cap_gib * GiB / total, 0)
        result.profile_reason = f"simulated {cap_gib} GiB card; "
    config = bench_config(args, profile, fp8, compile_on)
    start = time.time()
    engine = DiffsynthEngine(
        EngineSettings.of(config), "cuda:0", pinned_streaming=not result.run.endswith(BEFORE)
    )
    engine.load(lambda _state: None)
    result.load_s = time.time() - start
    result.time_to_ready_s = time.time() - t0
    import torch

    state = engine.state()
    result.profile = state.profile
    result.profile_reason += state.profile_reason
    result.sdpa_backend = sdpa_backend(torch)
    result.components = [
        {k: getattr(c, k) for k in ("name", "seconds", "bytes_total", "device", "dtype")}
        for c in state.components
    ]
    result.peak_allocated_load_bytes = torch.cuda.max_memory_allocated()
    steps = args.steps_for.get(result.run, args.steps)
    result.steps = steps
    params = GenerationParams(PROMPT, SEED, steps, args.size, args.size, 3.5)
    optimizing = engine.optimization().phase.value == "optimizing"
    result.compile = optimizing
    out = _timed_image(engine, params, torch, result)  # eager, while the compile runs beside it
    if optimizing:
        _wait_for_compile(args, engine, result, t0)  # the first stage
        optimizer = engine._optimizer
        if optimizer is not None and len(optimizer._settings.modes) > 1 and not _all_ready(engine):
            out = _timed_image(engine, params, torch, result)  # one image on the first stage
        _wait_for_final(args, engine, result, t0)
    deadline = time.time() + args.run_budget_s
    least = 2 if optimizing else 1  # steady images
    while len(result.images) < args.images or len(result.steady_images()) < least:
        out = _timed_image(engine, params, torch, result)
        if len(result.steady_images()) >= least and time.time() > deadline:
            break
        if len(result.images) >= args.images + 2:  # the last stage never came: stop anyway
            break
    _finish_memory(result, torch)
    _save_image(args, result.run, steps, out.image)
    if result.run in args.busy:
        result.busy_queue = busy_queue(engine, params, args.busy_jobs)
    check = args.check_steps.get(result.run)
    if check is not None and check != steps:
        extra = dataclasses.replace(params, steps=check)
        _save_image(args, result.run, check, engine.generate(extra, _no_step, _never).image)
    engine.close()


def _wait_for_compile(args: argparse.Namespace, engine: Any, result: RunResult, t0: float) -> None:
    """After the first (eager) image: wait until the compiled path can take over."""
    ready_at = time.time()
    compiled = wait_compiled(engine, args.compile_timeout_s)
    state = engine.optimization()
    result.optimization = {k: str(v) for k, v in dataclasses.asdict(state).items()}
    result.compile_cache = state.cache
    result.compile_mode = state.detail
    if compiled:
        result.compiled_ready_s = time.time() - t0
        result.compile_wall_s = time.time() - ready_at + (result.first_image_s or 0)


def _timed_image(engine: Any, params: Any, torch: Any, result: RunResult) -> Any:
    """One image through the engine, timed; returns the pipeline's result."""
    torch.cuda.reset_peak_memory_stats()
    begin = time.perf_counter()
    out = engine.generate(params, lambda _s, _t: None, lambda: False)
    end = time.perf_counter()
    t = out.timings
    optimizer = engine._optimizer
    result.images.append(
        ImageTiming(
            wall_s=end - begin,
            text_encode_s=t.text_encode_s,
            denoise_s=t.denoise_s,
            decode_s=t.decode_s,
            steps=params.steps,
            peak_allocated_bytes=torch.cuda.max_memory_allocated(),
            compiled_mode=(optimizer.installed_mode or "") if optimizer is not None else "",
        )
    )
    result.image_checksum = _checksum(out.image)
    return out


def _all_ready(engine: Any) -> bool:
    optimizer = engine._optimizer
    stages = optimizer.stages() if optimizer is not None else []
    return len(stages) == len(optimizer._settings.modes) and all(s["ready"] for s in stages)


def _wait_for_final(args: argparse.Namespace, engine: Any, result: RunResult, t0: float) -> None:
    """Wait (up to ``--final-timeout-s``) for every compile stage; record each stage's times."""
    optimizer = engine._optimizer
    if optimizer is None:
        return
    result.final_mode = optimizer._settings.modes[-1]
    restart = result.run.endswith(RESTART)
    optimizer.wait(args.restart_final_timeout_s if restart else args.final_timeout_s)
    stages = optimizer.stages()
    for stage in stages:
        ready_at = stage.pop("ready_at")
        stage["ready_after_start_s"] = None if ready_at is None else ready_at - t0
    result.compile_stages = stages
    state = engine.optimization()
    result.optimization = {k: str(v) for k, v in dataclasses.asdict(state).items()}
    final = [s for s in stages if s["mode"] == result.final_mode and s["ready"]]
    if final:
        result.final_ready_s = final[-1]["ready_after_start_s"]
    else:  # not done in time: the steady images are the first stage's
        result.final_mode = optimizer.installed_mode or ""


def _no_step(_step: int, _total: int) -> None:
    return None


def _never() -> bool:
    return False


def _save_image(args: argparse.Namespace, run: str, steps: int, image: Any) -> None:
    image.save(args.result.parent / f"image-{run}-{steps}steps.png")


def pixel_diffs(work: Path) -> list[dict[str, Any]]:
    """Max abs pixel difference between every two runs' images of the same step count."""
    import numpy as np
    from PIL import Image

    found: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(work.glob("image-*steps.png")):
        run, steps = path.stem.removeprefix("image-").rsplit("-", 1)
        found.setdefault(steps, []).append((run, path))
    diffs = []
    for steps, images in found.items():
        for i, (run_a, path_a) in enumerate(images):
            for run_b, path_b in images[i + 1 :]:
                a = np.asarray(Image.open(path_a), dtype=np.int16)
                b = np.asarray(Image.open(path_b), dtype=np.int16)
                diff = np.abs(a - b)
                mse = float((diff.astype(np.float64) ** 2).mean())
                psnr = 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
                diffs.append(
                    {
                        "a": run_a,
                        "b": run_b,
                        "steps": int(steps.removesuffix("steps")),
                        "max_abs": int(diff.max()),
                        "pixels_differing": int((diff.max(axis=-1) > 0).sum()),
                        "psnr_db": round(float(psnr), 2),
                    }
                )
    return diffs


def child_main(args: argparse.Namespace) -> int:
    t0 = float(os.environ.get("BENCH_T0", time.time()))
    import logging

    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)8.0f ms %(name)s %(message)s")
    result = RunResult(run=args.child, size=args.size)
    try:
        if args.child == "baseline":
            child_baseline(args, t0, result)
        else:
            child_engine(args, t0, result)
    except Exception as exc:  # reported in the JSON (with what was measured before)
        import traceback

        traceback.print_exc()
        result.ok, result.error = False, f"{type(exc).__name__}: {str(exc)[:2000]}"
        result.peak_host_rss_bytes = _peak_rss()
    args.result.write_text(json.dumps(result.summary(), indent=2))
    # A compile thread still running at interpreter exit can crash the shutdown (SIGSEGV seen
    # on the H200); the result is written, so leave at once.
    logging.shutdown()
    os._exit(0 if result.ok else 1)


# ---- the parent: fixture, floor, one fresh process per run, table ------------------------------


def run_child(run: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run in a fresh process; its JSON and log stay in ``args.work``."""
    result_path = args.work / f"run-{run}.json"
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bench.gpu",
        "--child",
        run,
        "--result",
        str(result_path),
        "--models-dir",
        str(args.models_dir),
        "--size",
        str(args.size),
        "--steps",
        str(args.steps),
        "--images",
        str(args.images),
        "--run-budget-s",
        str(args.run_budget_s),
        "--steps-for",
        ",".join(f"{k}={v}" for k, v in args.steps_for.items()),
        "--cap-for",
        ",".join(f"{k}={v}" for k, v in args.cap_for.items()),
        "--check-steps",
        ",".join(f"{k}={v}" for k, v in args.check_steps.items()),
        "--work",
        str(args.work),
        "--busy",
        ",".join(args.busy),
        "--busy-jobs",
        str(args.busy_jobs),
        "--compile-timeout-s",
        str(args.compile_timeout_s),
        "--final-timeout-s",
        str(args.final_timeout_s),
        "--restart-final-timeout-s",
        str(args.restart_final_timeout_s),
    ]
    env = {**os.environ, "BENCH_T0": repr(time.time()), "PYTHONUNBUFFERED": "1"}
    with (args.work / f"run-{run}.log").open("w") as log, DeviceMemoryPoller() as poller:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result_path.exists():
        data: dict[str, Any] = json.loads(result_path.read_text())
    else:
        data = {"run": run, "ok": False, "error": f"child exited {proc.returncode}, no result"}
    data["device_used_peak_mib"] = poller.peak_mib or None
    data["device_used_idle_mib"] = poller.idle_mib
    data["exit_code"] = proc.returncode
    return data


# ---- time to interactive: `majicbot serve` against the local Bot API fake ----------------------


def _tti_config(args: argparse.Namespace, profile: str, api: Any, data_dir: Path) -> Path:
    q = json.dumps  # a JSON string is a valid TOML basic string
    text = f"""
[engine]
models_dir = {q(str(args.models_dir.resolve()))}
profile = {q(profile)}
devices = ["cuda:0"]

[storage]
data_dir = {q(str(data_dir))}

[telegram]
enabled = true
token = {q(api.token)}
base_url = {q(api.base_url)}
base_file_url = {q(api.base_file_url)}
admins = ["{TTI_ADMIN_ID}"]

[service]
status_port = 0
"""
    path = Path(args.work) / f"tti-{profile}.toml"
    path.write_text(text)
    return path


TTI_ADMIN_ID = 1


async def _tti_once(args: argparse.Namespace, profile: str) -> dict[str, Any]:
    """Spawn ``majicbot serve``; /status goes in at its first getUpdates; time its answer."""
    import asyncio
    import shutil

    from tests.fakes.telegram_server import FakeTelegram, TgUser

    admin = TgUser(TTI_ADMIN_ID, "Ada", "ada", "en")
    data_dir = args.work / f"tti-data-{profile}"
    shutil.rmtree(data_dir, ignore_errors=True)
    async with FakeTelegram() as api:
        config = _tti_config(args, profile, api, data_dir)
        log = (args.work / f"tti-{profile}.log").open("w")
        # Queued before the start, like a user who sends /status while the bot is down: the
        # first getUpdates delivers it.
        api.user_sends("/status", user=admin)
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots.cli", "--config", str(config), "serve",
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            first = await api.wait_for("getMe", ok=None, timeout_s=args.tti_timeout_s)
            reply = await api.wait_for(
                "sendMessage", lambda c: c.chat_id == admin.id, timeout_s=args.tti_timeout_s
            )
            return {
                "tti_s": reply.at - start,
                "first_api_call_s": first.at - start,
                "status_text": (reply.text or "")[:600],
            }
        except TimeoutError:
            return {"tti_s": None, "note": f"no /status answer in {args.tti_timeout_s} s"}
        finally:
            await _stop(proc)
            log.close()


async def _stop(proc: Any) -> None:
    import asyncio

    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def measure_tti(args: argparse.Namespace) -> dict[str, Any]:
    """Time to interactive for each profile in ``args.tti_profiles``."""
    import asyncio

    results: dict[str, Any] = {}
    for profile in args.tti_profiles:
        try:
            results[profile] = asyncio.run(_tti_once(args, profile))
        except Exception as exc:  # reported; the other measurements stand
            results[profile] = {"tti_s": None, "note": f"{type(exc).__name__}: {exc}"}
        print(f"tti {profile}: {results[profile]}", flush=True)
    return results


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def table(results: dict[str, Any]) -> str:
    """A short fixed-width table of the runs, baseline first, with ratios to the baseline."""
    runs = results["runs"]
    base = runs.get("baseline", {})
    base_steady = base.get("steady_s_per_image")
    rows = [
        f"{'run':<10} {'profile':<9} {'ready s':>8} {'load s':>7} {'first s':>8} "
        f"{'steady s':>9} {'s/step':>7} {'x base':>7} {'enc/den/dec s':>16} {'alloc GB':>9} "
        f"{'dev GB':>7} {'RSS GB':>7} {'steps':>5}"
    ]
    for name, r in runs.items():
        if not r.get("ok"):
            rows.append(f"{name:<10} FAILED: {r.get('error')}")
            continue
        steady = r.get("steady_s_per_image")
        ratio = steady / base_steady if steady and base_steady else None
        split = "/".join(
            _fmt(r.get(f"steady_{p}"), digits=2) for p in ("text_encode_s", "denoise_s", "decode_s")
        )
        dev = r.get("device_used_peak_mib")
        rows.append(
            f"{name:<10} {r.get('profile', '')[:9]:<9} {_fmt(r.get('time_to_ready_s')):>8} "
            f"{_fmt(r.get('load_s')):>7} {_fmt(r.get('first_image_s')):>8} "
            f"{_fmt(steady, digits=2):>9} {_fmt(r.get('steady_s_per_step'), digits=3):>7} "
            f"{_fmt(ratio, digits=2):>7} {split:>16} "
            f"{_fmt((r.get('peak_allocated_bytes') or 0) / 1e9):>9} "
            f"{_fmt(dev * 1.048576 / 1000 if dev else None):>7} "
            f"{_fmt((r.get('peak_host_rss_bytes') or 0) / 1e9):>7} {r.get('steps', 0):>5}"
        )
    rows += _compile_rows(runs)
    rows += _before_after(runs)
    for d in results.get("pixel_diffs", []):
        rows.append(
            f"pixels {d['a']} vs {d['b']} ({d['steps']} steps): max abs diff {d['max_abs']}, "
            f"{d['pixels_differing']} pixels differ, PSNR {d.get('psnr_db')} dB"
        )
    floor = results.get("raw_read", {})
    rows.append(
        f"raw read of {floor.get('bytes', 0) / 1e9:.1f} GB: warm {_fmt(floor.get('warm_s'), ' s')}"
        f", cold {_fmt(floor.get('cold_s'), ' s')}"
    )
    for name, t in results.get("tti", {}).items():
        tti = _fmt(t.get("tti_s"), " s", 2)
        rows.append(f"time to interactive ({name}): {tti} {t.get('note', '')}")
    return "\n".join(rows)


def _compile_rows(runs: dict[str, Any]) -> list[str]:
    """Per compiled run: when the compiled path took over, and the busy-queue gap."""
    rows = []
    for name, r in runs.items():
        if r.get("compile"):
            rows.append(
                f"{name}: compiled path ready {_fmt(r.get('compiled_ready_s'))} s after start "
                f"(compile {_fmt(r.get('compile_wall_s'))} s after ready, cache "
                f"{r.get('compile_cache') or '?'}); first image "
                f"{_fmt(r.get('first_image_s'), digits=2)} s eager while compiling; "
                f"sdpa {r.get('sdpa_backend')}; "
                f"{r.get('optimization', {}).get('detail', '')}"
            )
            stages = [
                f"{s['mode']} ready {_fmt(s.get('ready_after_start_s'))} s after start "
                f"(compiled in {_fmt(s.get('seconds'))} s)"
                for s in r.get("compile_stages", [])
            ]
            by_mode = [
                f"{mode} {_fmt(m.get('s_per_image'), ' s', 2)} ({_fmt(m.get('s_per_step'), '', 3)}"
                f" s/step, {m.get('images')} images)"
                for mode, m in r.get("steady_by_mode", {}).items()
            ]
            stage_text = "; ".join(stages) or "—"
            rows.append(f"{name}: stages: {stage_text}; by mode: {', '.join(by_mode)}")
        busy = r.get("busy_queue")
        if busy:
            rows.append(
                f"{name}: busy queue {busy['jobs']} rerolls: job {busy['median_job_s']:.2f} s, "
                f"GPU idle between jobs median {busy['gap_median_ms']:.1f} ms / max "
                f"{busy['gap_max_ms']:.1f} ms ({100 * busy['idle_fraction_of_job']:.2f} % of a "
                f"job); prompt cache {busy['prompt_cache_hits']} hits"
            )
    return rows


def _before_after(runs: dict[str, Any]) -> list[str]:
    """after / before ratios for every ``<profile>-before`` run that has its ``<profile>`` run."""
    rows = []
    for name, before in runs.items():
        after = runs.get(name.removesuffix(BEFORE)) if name.endswith(BEFORE) else None
        if not after or not (after.get("ok") and before.get("ok")):
            continue
        parts = []
        for key, label in (
            ("steady_s_per_step", "s/step"),
            ("steady_s_per_image", "s/image"),
            ("steady_text_encode_s", "encode"),
            ("steady_decode_s", "decode"),
            ("time_to_ready_s", "ready"),
        ):
            a, b = after.get(key), before.get(key)
            same_steps = after.get("steps") == before.get("steps") or key in ("steady_s_per_step",)
            if a and b and (same_steps or key == "time_to_ready_s"):
                parts.append(f"{label} {b:.2f} -> {a:.2f} ({b / a:.1f}x)")
        rows.append(f"{name.removesuffix(BEFORE)} before -> after: " + "; ".join(parts))
    return rows


def parent_main(args: argparse.Namespace) -> int:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "gpu": gpu_info(),
            "versions": versions(),
            "cpu_count": os.cpu_count(),
            "size": args.size,
            "steps": args.steps,
            "steps_for": args.steps_for,
            "cap_gib_for": args.cap_for,
            "check_steps": args.check_steps,
            "images_per_run": args.images,
            "prompt": PROMPT,
            "seed": SEED,
            "page_cache": "warm (runs read files that the raw read just cached)",
        },
        "runs": {},
    }
    start = time.perf_counter()
    rw.write_fixture(args.models_dir, log=lambda line: print(line, flush=True))
    if args.tokenizers_from:
        rw.copy_tokenizers(args.tokenizers_from, args.models_dir)
    results["fixture_s"] = time.perf_counter() - start
    results["raw_read"] = raw_read(args.models_dir, cold=args.cold)
    print(f"raw read: {results['raw_read']}", flush=True)
    for run in args.runs:
        print(f"--- {run}", flush=True)
        results["runs"][run] = run_child(run, args)
        _save(results, out)
    results["pixel_diffs"] = pixel_diffs(args.work)
    _save(results, out)
    if args.tti_profiles:
        results["tti"] = measure_tti(args)
        _save(results, out)
    _collect_logs(args.work, out)
    print(table(results))
    return 0


def _collect_logs(work: Path, out: Path, tail_chars: int = 20000) -> None:
    """One file of every run's log tail ($OUT brings back only a few files)."""
    parts = []
    for log in sorted(work.glob("*.log")):
        text = log.read_text(errors="replace")
        parts.append(f"===== {log.name}\n{text[-tail_chars:]}")
    (out / "bench-logs.txt").write_text("\n".join(parts))


def _save(results: dict[str, Any], out: Path) -> Path:
    gpu = results["meta"]["gpu"].get("name", "nogpu").replace(" ", "-")
    path = out / f"gpu-{gpu}-{results['meta']['date'][:10]}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def _steps_for(text: str) -> dict[str, int]:
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {name: int(steps) for name, steps in pairs}


def _cap_for(text: str) -> dict[str, float]:
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {name: float(gib) for name, gib in pairs}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path(".bench/models"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".bench/out")))
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated, in order")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument(
        "--steps-for", type=_steps_for, default={}, help="per-run steps, e.g. lowvram=4"
    )
    parser.add_argument(
        "--cap-for",
        type=_cap_for,
        default={},
        help="simulate a smaller card per run (GiB, set_per_process_memory_fraction), e.g. auto=12",
    )
    parser.add_argument(
        "--check-steps",
        type=_steps_for,
        default={},
        help="one more image at this many steps per run, to compare pixels, e.g. lowvram=2",
    )
    parser.add_argument("--images", type=int, default=4, help="first + steady images per run")
    parser.add_argument(
        "--run-budget-s", type=float, default=120, help="stop steady images after this (min 2)"
    )
    parser.add_argument("--cold", action="store_true", help="drop the page cache before the read")
    parser.add_argument("--work", type=Path, default=Path(".bench/work"), help="per-run files")
    parser.add_argument(
        "--tti", default="", help="profiles to measure time to interactive for, e.g. auto,gpu"
    )
    parser.add_argument("--tti-timeout-s", type=float, default=60)
    parser.add_argument("--busy", default="", help="runs that also time 10 rerolls back to back")
    parser.add_argument("--busy-jobs", type=int, default=10)
    parser.add_argument(
        "--compile-timeout-s", type=float, default=300, help="wait this long for the compiled path"
    )
    parser.add_argument(
        "--final-timeout-s",
        type=float,
        default=300,
        help="then wait this long for the last compile stage (max-autotune)",
    )
    parser.add_argument(
        "--restart-final-timeout-s",
        type=float,
        default=120,
        help="the same for *-restart runs (their artefacts are warm)",
    )
    parser.add_argument("--tokenizers-from", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.runs = [r for r in args.runs.split(",") if r]
    args.tti_profiles = [p for p in args.tti.split(",") if p]
    args.busy = [r for r in args.busy.split(",") if r]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return child_main(args) if args.child else parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
