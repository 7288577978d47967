"""The pinned-streaming fix of diffsynth's VRAM layers, on the CPU.

There is no CUDA here, so the arena is unpinned (``torch.empty``) and every place is the CPU; what
is checked is the logic the GPU relies on: same outputs as diffsynth's own wrappers through
onload / forward / offload cycles, offload puts back the very pinned tensors (no copy), preparing
moves and casts, shared modules are pinned once, the memory gate queries the driver only when it
must, and the engine applies the fix only for CPU-resting components computed on CUDA. The GPU
run (bench/gpu.py, tests/gpu) measures the speed and compares images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from diffsynth.core.vram.layers import (
    AutoTorchModule,
    AutoWrappedLinear,
    AutoWrappedModule,
    enable_vram_management,
)

from backend.engine import streaming
from backend.engine.streaming import PinnedArena, VramGate, apply, eligible
from tests.engine.conftest import LoadedEngine

FP8, BF16 = torch.float8_e4m3fn, torch.bfloat16


class Block(torch.nn.Module):  # type: ignore[misc]  # torch is not followed by mypy
    """Like T5's feed-forward: wrapped whole by an ``AutoWrappedModule``."""

    def __init__(self) -> None:
        super().__init__()
        self.wi = torch.nn.Linear(32, 64)
        self.wo = torch.nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> Any:
        return self.wo(torch.nn.functional.gelu(self.wi(x)))


class Toy(torch.nn.Module):  # type: ignore[misc]
    """Linear, norm, a whole-block wrapper and an embedding shared by two wrappers (as T5's)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = torch.nn.Embedding(50, 32)
        self.encoder = torch.nn.Module()
        self.encoder.embed = self.shared
        self.norm = torch.nn.LayerNorm(32)
        self.block = Block()
        self.out = torch.nn.Linear(32, 16)

    def forward(self, ids: torch.Tensor) -> Any:
        embed: Any = self.encoder.embed
        x = self.norm(embed(ids))
        return self.out(x + self.block(x))


MODULE_MAP = {
    torch.nn.Linear: AutoWrappedLinear,
    torch.nn.Embedding: AutoWrappedModule,
    torch.nn.LayerNorm: AutoWrappedModule,
    Block: AutoWrappedModule,
}
IDS = torch.tensor([[1, 7, 49, 3]])


def toy(preparing_dtype: torch.dtype, vram_limit: float | None) -> Any:
    torch.manual_seed(0)
    model = Toy().to(FP8)  # weights rest in fp8, as the DiT's do
    config = {
        "offload_dtype": FP8,
        "offload_device": "cpu",
        "onload_dtype": FP8,
        "onload_device": "cpu",
        "preparing_dtype": preparing_dtype,
        "preparing_device": "cpu",
        "computation_dtype": BF16,
        "computation_device": "cpu",
    }
    return enable_vram_management(model, MODULE_MAP, vram_config=config, vram_limit=vram_limit)


def wrappers(model: torch.nn.Module) -> list[Any]:
    return [m for m in model.modules() if isinstance(m, AutoTorchModule)]


def cycle(model: torch.nn.Module, images: int = 3) -> list[torch.Tensor]:
    """What the pipeline does per image: onload, run twice, offload (``load_models_to_device``)."""
    outputs = []
    with torch.no_grad():
        for _ in range(images):
            for wrapper in wrappers(model):
                wrapper.onload()
            outputs += [model(IDS), model(IDS)]
            for wrapper in wrappers(model):
                wrapper.offload()
    return outputs


def unpinned_arena(chunk_bytes: int = 1 << 20) -> PinnedArena:
    return PinnedArena(lambda n: torch.empty(n, dtype=torch.uint8), chunk_bytes)


def no_query(device: str) -> float:
    raise AssertionError(f"the driver was asked about {device}")


def tensors_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.state_dict(keep_vars=True))


@pytest.mark.parametrize(
    ("preparing_dtype", "limit", "used_gib"),
    [
        (FP8, 0.0, no_query),  # lowvram: every layer streamed, the driver never asked
        (BF16, 8.0, lambda _d: 1.0),  # balanced: layers kept (here: cast to bf16) under the limit
        (BF16, 8.0, lambda _d: 9.0),  # balanced over its limit: streamed
    ],
)
def test_outputs_are_bit_identical_to_diffsynths(
    preparing_dtype: torch.dtype, limit: float, used_gib: Callable[[str], float]
) -> None:
    reference = cycle(toy(preparing_dtype, vram_limit=None))
    model = toy(preparing_dtype, vram_limit=limit)
    done = apply(model, unpinned_arena(), VramGate(used_gib))
    assert (done.wrappers, done.skipped) == (5, 0)  # a linear, 2 embeddings, a norm, a block
    outputs = cycle(model)
    assert all(torch.equal(a, b) for a, b in zip(reference, outputs, strict=True))
    assert all(o.dtype == BF16 for o in outputs)


def test_offload_puts_the_pinned_tensors_back_without_copying() -> None:
    model = toy(BF16, vram_limit=None)
    apply(model, unpinned_arena(), VramGate(no_query))
    pinned = {k: (t.data_ptr(), t.dtype) for k, t in tensors_of(model).items()}
    with torch.no_grad():
        for wrapper in wrappers(model):
            wrapper.onload()
        model(IDS)  # every layer used is prepared: moved and cast to bf16
    assert {t.dtype for t in tensors_of(model).values()} == {BF16}
    assert [w.state for w in wrappers(model)] == [1, 2, 2, 2, 2]  # `shared` itself is not called
    for wrapper in wrappers(model):
        wrapper.offload()
    assert {k: (t.data_ptr(), t.dtype) for k, t in tensors_of(model).items()} == pinned
    assert all(w.state == 0 for w in wrappers(model))


def test_weights_move_into_the_arena_once_and_shared_modules_once() -> None:
    model = toy(FP8, vram_limit=0.0)
    before = {k: t.detach().clone() for k, t in tensors_of(model).items()}
    arena = unpinned_arena()
    done = apply(model, arena, VramGate(no_query))
    after = tensors_of(model)
    assert all(torch.equal(before[k].float(), after[k].float()) for k in before)
    shared = after["shared.module.weight"]
    assert shared.data_ptr() == after["encoder.embed.module.weight"].data_ptr()
    unique = {id(p) for p in model.parameters()}
    assert done.tensors == len(unique) == 9  # the shared embedding counted once
    assert done.bytes_pinned == arena.bytes_stored == sum(p.numel() for p in model.parameters())
    again = apply(model, arena, VramGate(no_query))  # idempotent
    assert (again.wrappers, again.tensors, arena.bytes_stored) == (0, 0, done.bytes_pinned)


def test_wrappers_it_does_not_understand_keep_diffsynths_code() -> None:
    gpu_rest = AutoWrappedLinear(
        torch.nn.Linear(4, 4),
        offload_dtype=FP8,
        offload_device="cuda:0",
        onload_dtype=FP8,
        onload_device="cuda:0",
        computation_dtype=BF16,
        computation_device="cuda:0",
    )
    assert not eligible(gpu_rest)
    model = toy(FP8, vram_limit=0.0)
    model.out.onload_dtype = BF16  # onload differs from the rest place
    done = apply(model, unpinned_arena(), VramGate(no_query))
    assert (done.wrappers, done.skipped, done.skipped_kinds) == (4, 1, {"AutoWrappedLinear"})
    assert "cast_to" not in vars(model.out) and "cast_to" in vars(model.block)
    assert not eligible(torch.nn.Linear(2, 2))


def test_the_gate_asks_the_driver_only_while_under_a_positive_limit() -> None:
    used = [1.0]
    gate = VramGate(lambda _device: used[0])
    assert not gate.below(0.0, "cuda:0") and gate.queries == 0
    assert gate.below(4.0, "cuda:0") and gate.queries == 1
    used[0] = 5.0
    assert not gate.below(4.0, "cuda:0") and gate.queries == 2
    used[0] = 1.0  # activations freed: still "no" until a layer is offloaded
    assert not gate.below(4.0, "cuda:0") and gate.queries == 2
    gate.reopen()
    assert gate.below(4.0, "cuda:0") and gate.queries == 3


def test_layers_over_the_limit_stream_until_a_prepared_layer_is_offloaded() -> None:
    used = [1.0]
    gate = VramGate(lambda _device: used[0])
    model = toy(BF16, vram_limit=8.0)
    apply(model, unpinned_arena(), gate)

    def image() -> list[int]:
        with torch.no_grad():
            for wrapper in wrappers(model):
                wrapper.onload()
            model(IDS)
            states = [w.state for w in wrappers(model)]
            for wrapper in wrappers(model):
                wrapper.offload()
        return states

    assert image() == [1, 2, 2, 2, 2] and gate.queries == 4  # each layer used asked once, kept
    used[0] = 9.0  # offloading prepared layers reopened the gate: the first layer asks
    assert image() == [1, 1, 1, 1, 1] and gate.queries == 5  # the rest stream without asking
    used[0] = 1.0  # nothing prepared was offloaded: still closed
    assert image() == [1, 1, 1, 1, 1] and gate.queries == 5


def test_the_arena_packs_first_fit_and_keeps_values() -> None:
    allocated: list[int] = []

    def allocate(n: int) -> torch.Tensor:
        allocated.append(n)
        return torch.empty(n, dtype=torch.uint8)

    arena = PinnedArena(allocate, chunk_bytes=4096)
    torch.manual_seed(1)
    tensors = [
        torch.randn(10, 30, dtype=BF16),  # 600 B
        torch.randn(3100).to(FP8),  # 3584 B aligned: the first chunk cannot take it after 1024
        torch.randn(5, dtype=torch.float32),  # fits back in the first chunk
        torch.randn(3000, dtype=BF16),  # 6000 B > chunk: a buffer of its own
        torch.empty(0, 4),
        torch.arange(6, dtype=torch.int64).reshape(2, 3),
    ]
    stored = [arena.store(t) for t in tensors]
    for original, copy in zip(tensors, stored, strict=True):
        assert (copy.dtype, copy.shape) == (original.dtype, original.shape)
        assert torch.equal(copy.float(), original.float())
    assert allocated == [4096, 4096, 6144]
    assert stored[2].data_ptr() - stored[0].data_ptr() == 1024  # after 600 B, 512-aligned
    assert stored[5].data_ptr() - stored[0].data_ptr() == 1536
    assert arena.bytes_stored == 600 + 3100 + 20 + 6000 + 48
    assert stored[4] is tensors[4]


def test_the_engine_pins_only_cpu_resting_components_that_compute_on_cuda(
    loaded_engine: LoadedEngine,
) -> None:
    assert streaming.wants_pinned_streaming("cpu", "cuda:0")
    assert not streaming.wants_pinned_streaming("cpu", "cpu")
    assert not streaming.wants_pinned_streaming("cuda:0", "cuda:0")
    pipe = loaded_engine.engine._pipe
    assert not any(streaming.PATCHED_FLAG in vars(m) for m in pipe.modules())
