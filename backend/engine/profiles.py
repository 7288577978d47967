"""Placement profiles: named recipes for where each component's weights live, and ``auto``.

diffsynth gives every model four (device, dtype) places (see FLUX.md):

    offload     where weights rest between uses (files load straight there)
    onload      where they go when the pipeline selects the model
    preparing   where a layer moves, and stays, on first use while VRAM is under ``vram_limit``
    computation where the layer runs (always bf16 here: fp8 *computation* crashes FLUX's RMSNorm)

VRAM management is on only when ``offload`` is set; otherwise the model loads whole onto its
computation place. The recipes (``D`` = the GPU):

    profile   CLIP / T5 / VAE                          DiT                               vram_limit
    gpu       resident on D, bf16                      resident on D, bf16               -
    gpu-fp8   resident on D, bf16                      rests on D in fp8, runs in bf16   -
    balanced  rest in CPU RAM bf16, layers kept on D   rests in CPU RAM fp8, layers kept  budget
    lowvram   rest in CPU RAM bf16, streamed to D      rests in CPU RAM fp8, streamed     0
    cpu       resident on the CPU, bf16                resident on the CPU, bf16         -

``choose_profile`` is a pure function of measured numbers (free VRAM, host RAM, parameter counts),
so the auto choice is unit-tested without a GPU. Memory figures follow the H100 measurements in
FLUX.md and BENCHMARKS.md: weights at their resting dtype plus an activation reserve that grows
with the largest image the config allows (``limits.max_pixels``; ``activation_reserve_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.engine.files import Component
from backend.errors import ProfileDoesNotFit

GIB = 1024**3
BF16, FP8 = "bfloat16", "float8_e4m3fn"
ITEMSIZE = {BF16: 2, FP8: 1, "float32": 4, "float16": 2}
AUTO_ORDER = ("gpu", "gpu-fp8", "balanced", "lowvram")  # fastest first
# With engine.fp8_compute, gpu-fp8 runs fp8 matmuls and is the fastest (and smaller) resident one.
AUTO_ORDER_FP8 = ("gpu-fp8", "gpu", "balanced", "lowvram")
GPU_PROFILES = AUTO_ORDER
CPU_PROFILE = "cpu"
# Activations, attention buffers and the VAE decode grow with the pixel count; the base covers what
# does not (cuBLAS workspace, text-encoder activations, fp8 -> bf16 layer copies, weights that the
# parameter count misses). Fitted to the H100 runs (BENCHMARKS.md), peak allocated minus declared
# weights: 2.75 GiB (gpu) and 2.90 GiB (gpu-fp8) at 1024², 0.52 / 0.66 GiB at the 256² warm-up,
# i.e. ~2.4 GiB per Mpx over ~0.5 GiB. 3.0 GiB at 1 Mpx, 5.4 GiB at the default 2 Mpx.
ACTIVATION_BASE_BYTES = int(0.6 * GIB)
ACTIVATION_PER_MPX_BYTES = int(2.4 * GIB)
MPX = 1024 * 1024
DEFAULT_MAX_PIXELS = MPX  # config.limits.max_pixels' default
# balanced wants at least this share of the fp8 DiT to stay on the GPU; below it, stream (lowvram).
BALANCED_MIN_DIT_SHARE = 0.5
# lowvram streams layers: a few in flight plus activations.
LOWVRAM_STREAM_BYTES = 1 * GIB
# Host RAM kept for the process itself, Python and the page cache of the file being read.
HOST_SLACK_BYTES = 2 * GIB


@dataclass(frozen=True)
class Place:
    """A (device, dtype) pair; ``device`` is "cpu" or "cuda:N"."""

    device: str
    dtype: str


@dataclass(frozen=True)
class Placement:
    """Where one component lives in diffsynth's four states. ``offload=None``: no VRAM management,
    the model loads whole onto ``computation``."""

    computation: Place
    offload: Place | None = None
    onload: Place | None = None
    preparing: Place | None = None

    @property
    def rest(self) -> Place:
        """Where the weights rest (what ``/status`` shows)."""
        return self.offload or self.computation

    @property
    def managed(self) -> bool:
        return self.offload is not None


@dataclass(frozen=True)
class Profile:
    """A named recipe: one placement per component, and whether layers may stay on the GPU."""

    name: str
    placements: tuple[tuple[Component, Placement], ...]
    vram_limit: str  # "none" (unmanaged), "budget" (keep layers until the budget), "zero" (stream)

    def placement(self, component: Component) -> Placement:
        return dict(self.placements)[component]


def _resident(device: str, dtype: str = BF16) -> Placement:
    """Whole model on ``device``; stored in ``dtype`` (managed only when that is not bf16)."""
    if dtype == BF16:
        return Placement(computation=Place(device, BF16))
    stored = Place(device, dtype)
    return Placement(Place(device, BF16), offload=stored, onload=stored, preparing=stored)


def _in_cpu_ram(device: str, dtype: str, keep_on_gpu: bool) -> Placement:
    cpu = Place("cpu", dtype)
    return Placement(
        computation=Place(device, BF16),
        offload=cpu,
        onload=cpu,
        preparing=Place(device, dtype) if keep_on_gpu else cpu,
    )


def _encoders_and_dit(
    encoders: Placement, vae: Placement, dit: Placement
) -> tuple[tuple[Component, Placement], ...]:
    return (
        (Component.CLIP, encoders),
        (Component.T5, encoders),
        (Component.VAE, vae),
        (Component.DIT, dit),
    )


def recipe(name: str, device: str) -> Profile:
    """The named profile's placements on ``device`` ("cuda:N"; "cpu" always gets the cpu recipe)."""
    if device == "cpu" or name == CPU_PROFILE:
        cpu = _resident("cpu")
        return Profile(CPU_PROFILE, _encoders_and_dit(cpu, cpu, cpu), "none")
    if name == "gpu":
        gpu = _resident(device)
        return Profile(name, _encoders_and_dit(gpu, gpu, gpu), "none")
    if name == "gpu-fp8":
        gpu = _resident(device)
        return Profile(name, _encoders_and_dit(gpu, gpu, _resident(device, FP8)), "none")
    if name in ("balanced", "lowvram"):
        keep = name == "balanced"
        encoders = _in_cpu_ram(device, BF16, keep)
        dit = _in_cpu_ram(device, FP8, keep)
        return Profile(
            name, _encoders_and_dit(encoders, encoders, dit), "budget" if keep else "zero"
        )
    raise ValueError(f"unknown profile {name!r}")


# ---- memory needs and the auto choice ---------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """What was measured on this machine for one device, in bytes."""

    vram_free: int  # what this process may still use (a per-process fraction caps it); CPU: 0
    vram_total: int
    host_available: int
    # Device-wide used VRAM as the driver reports it (what diffsynth compares with vram_limit);
    # None: vram_total - vram_free.
    vram_device_used: int | None = None


@dataclass(frozen=True)
class Needs:
    """What a profile needs, in bytes."""

    vram: int
    host: int


@dataclass(frozen=True)
class Choice:
    """The chosen profile, why, and the ``vram_limit`` (GiB) to pass to diffsynth."""

    profile: Profile
    reason: str
    vram_limit_gb: float | None
    needs: Needs


def _bytes(params: dict[Component, int], component: Component, dtype: str) -> int:
    return params.get(component, 0) * ITEMSIZE[dtype]


def activation_reserve_bytes(max_pixels: int) -> int:
    """VRAM kept free for activations and the VAE decode of an image of ``max_pixels`` pixels."""
    return ACTIVATION_BASE_BYTES + ACTIVATION_PER_MPX_BYTES * max_pixels // MPX


def needs(
    profile: Profile, params: dict[Component, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> Needs:
    """Peak VRAM and host RAM a profile needs for models of these parameter counts, for images
    of up to ``max_pixels`` pixels."""
    vram = host = 0
    for component, placement in profile.placements:
        rest = _bytes(params, component, placement.rest.dtype)
        if placement.rest.device == "cpu":
            host += rest
        else:
            vram += rest
    if profile.vram_limit == "budget":
        vram += int(BALANCED_MIN_DIT_SHARE * _bytes(params, Component.DIT, FP8))
    elif profile.vram_limit == "zero":
        vram += LOWVRAM_STREAM_BYTES
    if profile.name != CPU_PROFILE:
        vram += activation_reserve_bytes(max_pixels)
    return Needs(vram=vram, host=host + HOST_SLACK_BYTES)


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _fits(need: Needs, memory: Memory, margin: int, on_gpu: bool) -> bool:
    vram_ok = not on_gpu or need.vram + margin <= memory.vram_free
    return vram_ok and need.host <= memory.host_available


def _vram_limit_gb(profile: Profile, memory: Memory, margin: int, max_pixels: int) -> float | None:
    """diffsynth compares device-wide used VRAM with this limit before keeping a layer."""
    if profile.vram_limit == "zero":
        return 0.0
    if profile.vram_limit == "budget":
        used_now = memory.vram_device_used
        if used_now is None:
            used_now = memory.vram_total - memory.vram_free
        keep = memory.vram_free - margin - activation_reserve_bytes(max_pixels)
        return max(used_now + keep, 0) / GIB
    return None


def _describe(name: str, need: Needs, memory: Memory, margin: int, on_gpu: bool) -> str:
    host = f"{_gib(need.host)} host RAM ({_gib(memory.host_available)} available)"
    if not on_gpu:
        return f"{name} needs {host}"
    vram = f"{_gib(need.vram)} VRAM + {_gib(margin)} margin ({_gib(memory.vram_free)} free)"
    return f"{name} needs {vram} and {host}"


def choose_profile(
    requested: str,
    device: str,
    memory: Memory,
    params: dict[Component, int],
    margin_gb: float,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fp8_first: bool = False,
) -> Choice:
    """Pick the profile for ``device``: the requested one if it fits, or with ``auto`` the fastest
    that fits, for images of up to ``max_pixels`` pixels (``fp8_first``: fp8 compute is on, so
    gpu-fp8 comes before gpu). Raises ProfileDoesNotFit naming the memory needed and the profile
    to use instead."""
    margin = int(margin_gb * GIB)
    on_gpu = device != "cpu"
    if not on_gpu:
        return _choose_cpu(requested, memory, params)
    order = AUTO_ORDER_FP8 if fp8_first else AUTO_ORDER
    candidates = order if requested == "auto" else (requested,)
    for name in candidates:
        profile = recipe(name, device)
        need = needs(profile, params, max_pixels)
        if _fits(need, memory, margin, on_gpu):
            limit = _vram_limit_gb(profile, memory, margin, max_pixels)
            why = _describe(name, need, memory, margin, on_gpu)
            reason = (
                f"auto chose {why}" if requested == "auto" else f"engine.profile = {name}: {why}"
            )
            return Choice(profile, reason, limit, need)
    raise _does_not_fit(requested, device, memory, params, margin, max_pixels)


def _choose_cpu(requested: str, memory: Memory, params: dict[Component, int]) -> Choice:
    profile = recipe(CPU_PROFILE, "cpu")
    need = needs(profile, params)
    why = _describe(CPU_PROFILE, need, memory, 0, on_gpu=False)
    if need.host > memory.host_available:
        raise ProfileDoesNotFit(
            f"the CPU device cannot hold the model: {why}; use a GPU or free host RAM",
            profile=CPU_PROFILE,
            needed_gib=round(need.host / GIB, 1),
        )
    note = "" if requested == "auto" else f" (engine.profile = {requested} applies to GPUs only)"
    return Choice(
        profile, f"device is the CPU: everything resident in bf16; {why}{note}", None, need
    )


def _does_not_fit(
    requested: str,
    device: str,
    memory: Memory,
    params: dict[Component, int],
    margin: int,
    max_pixels: int,
) -> ProfileDoesNotFit:
    tried = AUTO_ORDER if requested == "auto" else (requested,)

    def need_of(name: str) -> Needs:
        return needs(recipe(name, device), params, max_pixels)

    details = "; ".join(_describe(n, need_of(n), memory, margin, True) for n in tried)
    instead = next(
        (n for n in AUTO_ORDER if n not in tried and _fits(need_of(n), memory, margin, True)),
        None,
    )
    advice = (
        f'set engine.profile = "{instead}" (or "auto")'
        if instead
        else "free GPU memory or host RAM, lower engine.vram_margin_gb, or use a larger GPU"
    )
    name = requested if requested != "auto" else AUTO_ORDER[-1]
    need = need_of(name)
    return ProfileDoesNotFit(
        f"no placement fits on {device}: {details}. {advice}",
        profile=name,
        needed_vram_gib=round((need.vram + margin) / GIB, 1),
        needed_host_gib=round(need.host / GIB, 1),
        instead=instead or "",
    )
