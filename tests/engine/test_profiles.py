"""Placement recipes and the auto choice: pure functions of measured numbers, no GPU needed."""

from __future__ import annotations

import pytest

from backend.engine.files import Component
from backend.engine.profiles import (
    GIB,
    MPX,
    Memory,
    Needs,
    Place,
    Placement,
    activation_reserve_bytes,
    choose_profile,
    needs,
    recipe,
)
from backend.errors import ProfileDoesNotFit

# FLUX.1-dev parameter counts (FLUX.md).
FLUX = {
    Component.DIT: 11_900_000_000,
    Component.T5: 4_760_000_000,
    Component.CLIP: 123_000_000,
    Component.VAE: 84_000_000,
}
BF16, FP8 = "bfloat16", "float8_e4m3fn"
GPU = "cuda:0"


def gib(n: float) -> int:
    return int(n * GIB)


def card(free_gib: float, total_gib: float = 80.0, host_gib: float = 120.0) -> Memory:
    return Memory(vram_free=gib(free_gib), vram_total=gib(total_gib), host_available=gib(host_gib))


def places(p: Placement) -> tuple[Place | None, ...]:
    return (p.offload, p.onload, p.preparing, p.computation)


def test_gpu_keeps_everything_resident_in_bf16() -> None:
    profile = recipe("gpu", GPU)
    unmanaged = (None, None, None, Place(GPU, BF16))
    assert [(c, places(p)) for c, p in profile.placements] == [
        (c, unmanaged) for c in (Component.CLIP, Component.T5, Component.VAE, Component.DIT)
    ]
    assert profile.vram_limit == "none"


def test_gpu_fp8_stores_the_dit_in_fp8_on_the_gpu_and_computes_in_bf16() -> None:
    profile = recipe("gpu-fp8", GPU)
    fp8 = Place(GPU, FP8)
    assert places(profile.placement(Component.DIT)) == (fp8, fp8, fp8, Place(GPU, BF16))
    for component in (Component.CLIP, Component.T5, Component.VAE):
        assert places(profile.placement(component)) == (None, None, None, Place(GPU, BF16))


def test_balanced_rests_in_cpu_ram_and_keeps_used_layers_on_the_gpu() -> None:
    profile = recipe("balanced", GPU)
    cpu_fp8, cpu_bf16 = Place("cpu", FP8), Place("cpu", BF16)
    dit = profile.placement(Component.DIT)
    assert places(dit) == (cpu_fp8, cpu_fp8, Place(GPU, FP8), Place(GPU, BF16))
    for component in (Component.CLIP, Component.T5, Component.VAE):
        assert places(profile.placement(component)) == (
            cpu_bf16, cpu_bf16, Place(GPU, BF16), Place(GPU, BF16),
        )  # fmt: skip
    assert profile.vram_limit == "budget"


def test_lowvram_streams_every_layer_from_cpu_ram() -> None:
    profile = recipe("lowvram", GPU)
    cpu_fp8 = Place("cpu", FP8)
    assert places(profile.placement(Component.DIT)) == (cpu_fp8, cpu_fp8, cpu_fp8, Place(GPU, BF16))
    assert profile.placement(Component.T5).preparing == Place("cpu", BF16)
    assert profile.vram_limit == "zero"


def test_no_recipe_computes_in_fp8() -> None:
    for name in ("gpu", "gpu-fp8", "balanced", "lowvram", "cpu"):
        for _, placement in recipe(name, GPU).placements:
            assert placement.computation.dtype == BF16


def test_the_cpu_device_always_gets_the_cpu_recipe() -> None:
    for name in ("gpu", "balanced", "cpu"):
        profile = recipe(name, "cpu")
        assert profile.name == "cpu"
        assert {places(p) for _, p in profile.placements} == {
            (None, None, None, Place("cpu", BF16))
        }


def test_the_activation_reserve_grows_with_the_largest_image() -> None:
    # Fitted to the H100 runs: 2.75 (gpu) / 2.90 (gpu-fp8) GiB over the weights at 1024².
    assert activation_reserve_bytes(MPX) == pytest.approx(gib(3.0), abs=2)
    assert activation_reserve_bytes(2 * MPX) == pytest.approx(gib(5.4), abs=2)
    assert activation_reserve_bytes(256 * 256) == pytest.approx(gib(0.75), abs=2)


def test_needs_follow_the_resting_dtypes_and_the_largest_image() -> None:
    weights_bf16 = 2 * sum(FLUX.values())
    at_2mpx, at_1mpx = activation_reserve_bytes(2 * MPX), activation_reserve_bytes(MPX)
    assert needs(recipe("gpu", GPU), FLUX, 2 * MPX) == Needs(weights_bf16 + at_2mpx, gib(2))
    # The default is the config's default limits.max_pixels: 1 Mpx.
    assert needs(recipe("gpu", GPU), FLUX) == Needs(vram=weights_bf16 + at_1mpx, host=gib(2))
    encoders = 2 * (FLUX[Component.T5] + FLUX[Component.CLIP] + FLUX[Component.VAE])
    fp8_dit = FLUX[Component.DIT]
    assert needs(recipe("gpu-fp8", GPU), FLUX, MPX) == Needs(encoders + fp8_dit + at_1mpx, gib(2))
    assert needs(recipe("balanced", GPU), FLUX, MPX) == Needs(
        vram=fp8_dit // 2 + at_1mpx, host=encoders + fp8_dit + gib(2)
    )
    assert needs(recipe("lowvram", GPU), FLUX, 2 * MPX) == Needs(
        gib(1) + at_2mpx, encoders + fp8_dit + gib(2)
    )


@pytest.mark.parametrize(
    ("free_gib", "total_gib", "max_pixels", "expected"),
    [
        (79.0, 80.0, 2 * MPX, "gpu"),  # H100 80 GB
        (30.0, 32.0, 2 * MPX, "gpu-fp8"),  # gpu-fp8 needs 20.3 + 5.4 GiB + 2 GiB margin
        (23.0, 24.0, MPX, "balanced"),  # gpu-fp8 needs 23.3 GiB + 2 GiB margin
        (11.5, 12.0, MPX, "balanced"),  # balanced needs 5.5 + 3.0 GiB + 2 GiB margin
        (11.5, 12.0, 2 * MPX, "lowvram"),  # 5.5 + 5.4 + 2 > 11.5: keeping half the DiT won't fit
        (7.5, 8.0, MPX, "lowvram"),
    ],
)
def test_auto_picks_the_fastest_profile_that_fits(
    free_gib: float, total_gib: float, max_pixels: int, expected: str
) -> None:
    memory = card(free_gib, total_gib)
    choice = choose_profile("auto", GPU, memory, FLUX, margin_gb=2.0, max_pixels=max_pixels)
    assert choice.profile.name == expected
    assert choice.reason.startswith(f"auto chose {expected} needs ")
    assert f"({free_gib:.1f} GiB free)" in choice.reason


def test_balanced_vram_limit_leaves_margin_and_activation_room() -> None:
    choice = choose_profile("auto", GPU, card(11.5, 12.0), FLUX, margin_gb=2.0, max_pixels=MPX)
    # used by others 0.5 GiB + (11.5 free - 2 margin - 3 activations at 1 Mpx)
    assert choice.vram_limit_gb == pytest.approx(7.0)
    # An 80 GB card capped at 12 GiB for this process (set_per_process_memory_fraction): diffsynth
    # compares device-wide used memory, so the limit starts from what the driver says is used.
    capped = Memory(gib(11.5), gib(80), gib(120), vram_device_used=gib(1.0))
    assert choose_profile("auto", GPU, capped, FLUX, 2.0, MPX).vram_limit_gb == pytest.approx(7.5)
    # A larger image limit leaves fewer layers on the GPU: used 2 + (30 - 2 - 5.4 at 2 Mpx).
    forced = choose_profile("balanced", GPU, card(30.0, 32.0), FLUX, 2.0, 2 * MPX)
    assert forced.vram_limit_gb == pytest.approx(24.6)
    lowvram = choose_profile("lowvram", GPU, card(11.5, 12.0), FLUX, margin_gb=2.0)
    assert lowvram.vram_limit_gb == 0.0
    assert choose_profile("gpu", GPU, card(79.0), FLUX, margin_gb=2.0).vram_limit_gb is None


def test_a_larger_margin_moves_auto_down() -> None:
    assert choose_profile("auto", GPU, card(30.0, 32.0), FLUX, 2.0).profile.name == "gpu-fp8"
    assert choose_profile("auto", GPU, card(30.0, 32.0), FLUX, 8.0).profile.name == "balanced"


def test_a_forced_profile_that_does_not_fit_names_the_memory_and_the_alternative() -> None:
    with pytest.raises(ProfileDoesNotFit) as caught:
        choose_profile("gpu", GPU, card(11.5, 12.0), FLUX, margin_gb=2.0, max_pixels=MPX)
    error = caught.value
    assert str(error) == (
        "no placement fits on cuda:0: gpu needs 34.4 GiB VRAM + 2.0 GiB margin (11.5 GiB free) "
        "and 2.0 GiB host RAM (120.0 GiB available). "
        'set engine.profile = "balanced" (or "auto")'
    )
    assert dict(error.params) == {
        "profile": "gpu",
        "needed_vram_gib": 36.4,
        "needed_host_gib": 2.0,
        "instead": "balanced",
    }


def test_nothing_fits_on_a_tiny_card_or_without_host_ram() -> None:
    with pytest.raises(ProfileDoesNotFit, match=r"lowvram needs 4\.0 GiB VRAM"):
        choose_profile("auto", GPU, card(4.0, 4.0), FLUX, margin_gb=2.0)
    # An 8 GB card cannot promise 2 Mpx images with a 2 GiB margin (1 + 5.4 + 2), but the
    # default 1 Mpx limit fits (1 + 3.0 + 2).
    with pytest.raises(ProfileDoesNotFit, match=r"lowvram needs 6\.4 GiB VRAM"):
        choose_profile("auto", GPU, card(7.5, 8.0), FLUX, margin_gb=2.0, max_pixels=2 * MPX)
    assert choose_profile("auto", GPU, card(7.5, 8.0), FLUX, 2.0).profile.name == "lowvram"
    # 12 GB card but only 16 GiB of host RAM: balanced and lowvram need ~22 GiB there.
    with pytest.raises(ProfileDoesNotFit, match="free GPU memory or host RAM"):
        choose_profile("auto", GPU, card(11.5, 12.0, host_gib=16.0), FLUX, margin_gb=2.0)


def test_cpu_device_uses_the_cpu_profile_when_host_ram_allows() -> None:
    choice = choose_profile("gpu", "cpu", card(0, 0, host_gib=64.0), FLUX, margin_gb=2.0)
    assert choice.profile.name == "cpu"
    assert choice.reason.endswith("(engine.profile = gpu applies to GPUs only)")
    with pytest.raises(ProfileDoesNotFit, match="the CPU device cannot hold the model"):
        choose_profile("auto", "cpu", card(0, 0, host_gib=16.0), FLUX, margin_gb=2.0)
