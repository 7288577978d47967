"""Fast streaming of CPU-resting weights to the GPU: a per-instance fix of diffsynth's VRAM layers.

``balanced`` and ``lowvram`` keep weights in CPU RAM and let diffsynth 2.1.12's layer wrappers
(``diffsynth.core.vram.layers``) move them. As shipped, those wrappers are slow in four places:

1. ``AutoWrappedLinear.cast_to`` builds the bf16 computation weight with
   ``empty_like(w, dtype=bf16, device=cuda).copy_(w)`` from a CPU fp8 tensor: a cross-device copy
   with a dtype change converts on the CPU first (single-threaded fp8 → bf16, twice the bytes) and
   then copies from pageable memory. ``lowvram`` does this for every layer at every step.
2. ``AutoWrappedModule.cast_to`` deep-copies the module, tensors included, on the CPU and then
   moves the copy.
3. ``offload()`` copies every prepared layer back GPU → CPU into pageable memory (12 GB for the
   DiT before each VAE decode), although inference never changes a weight.
4. ``forward`` asks the driver for free memory (``cudaMemGetInfo``) on every call while a layer is
   not yet prepared, even with ``vram_limit = 0`` where the answer is always "no".

``apply`` fixes this on the wrappers of one loaded model, instance by instance:

- each CPU-resting tensor is copied once into page-locked memory (``PinnedArena``: a few large
  pinned buffers, so the host allocator's power-of-two rounding does not inflate 22 GB of weights);
- a computation copy is a same-dtype ``non_blocking`` host → device copy from that pinned memory,
  then the dtype cast on the GPU (same values: every fp8 e4m3 value is exact in bf16);
- ``preparing()`` moves the pinned tensor the same way and keeps it, so ``offload()`` just puts the
  pinned tensor back (no device → host copy; weights are read-only during inference);
- ``check_free_vram()`` goes through a ``VramGate`` shared by the engine: never asked with a limit
  of 0, and once over a positive limit it stays "no" until some layer is offloaded.

Why instances and not classes: diffsynth's classes stay untouched (other pipelines in the process,
the CPU path and ``isinstance`` checks see the library as shipped); only the wrappers that the
engine hands over get the four methods replaced in their ``__dict__``. Wrappers this fix does not
understand (disk offload, quantized layers, non-recursive wrappers, a rest place other than the
CPU, an onload place different from the rest place) keep diffsynth's behaviour.

The engine applies it only when a component rests in CPU RAM and computes on a CUDA device
(``wants_pinned_streaming``); on the CPU device nothing changes. ``apply`` itself is device-neutral
(the unit tests run it on the CPU with an unpinned arena).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from diffsynth.core.vram.layers import (
    AutoTorchModule,
    AutoWrappedLinear,
    AutoWrappedModule,
    AutoWrappedNonRecurseModule,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 30  # pinned buffers of 1 GiB: a power of two, so the host allocator wastes none
ALIGN_BYTES = 512
PATCHED_FLAG = "_majicbot_pinned_streaming"


def wants_pinned_streaming(rest_device: str, computation_device: str) -> bool:
    """Whether the engine applies the fix: weights rest in CPU RAM and run on a CUDA device."""
    return rest_device == "cpu" and computation_device.startswith("cuda")


def pinned_allocator(nbytes: int) -> torch.Tensor:
    """A page-locked host buffer of ``nbytes`` bytes (needs CUDA)."""
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)


# ---- pinned storage --------------------------------------------------------------------------


@dataclass
class _Chunk:
    buffer: torch.Tensor
    used: int = 0


class PinnedArena:
    """Packs tensors into a few large (pinned) byte buffers, first fit, ``ALIGN_BYTES`` aligned.

    ``allocate(nbytes)`` returns a 1-D uint8 tensor: ``pinned_allocator`` on a GPU machine, plain
    ``torch.empty`` in unit tests. A tensor larger than a chunk gets a buffer of its own.
    """

    def __init__(
        self, allocate: Callable[[int], torch.Tensor], chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        self._allocate = allocate
        self._chunk_bytes = chunk_bytes
        self._chunks: list[_Chunk] = []
        self.bytes_allocated = 0
        self.bytes_stored = 0

    def store(self, tensor: torch.Tensor) -> torch.Tensor:
        """A copy of ``tensor`` (same dtype, shape, values; contiguous) inside the arena."""
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes == 0:
            return tensor
        buffer, offset = self._place(nbytes)
        view = buffer[offset : offset + nbytes].view(tensor.dtype).view(tensor.shape)
        view.copy_(tensor)
        self.bytes_stored += nbytes
        return view

    def _place(self, nbytes: int) -> tuple[torch.Tensor, int]:
        size = -(-nbytes // ALIGN_BYTES) * ALIGN_BYTES
        if size > self._chunk_bytes:
            return self._new_chunk(size, size).buffer, 0
        chunk = next((c for c in self._chunks if c.used + size <= self._chunk_bytes), None)
        if chunk is None:
            chunk = self._new_chunk(self._chunk_bytes, 0)
            self._chunks.append(chunk)
        offset = chunk.used
        chunk.used += size
        return chunk.buffer, offset

    def _new_chunk(self, nbytes: int, used: int) -> _Chunk:
        self.bytes_allocated += nbytes
        return _Chunk(self._allocate(nbytes), used)


# ---- the memory query gate -------------------------------------------------------------------


def cuda_used_gib(device: str) -> float:
    """Device-wide used memory in GiB, what diffsynth compares with ``vram_limit``."""
    free, total = torch.cuda.mem_get_info(device)
    return float((total - free) / 1024**3)


class VramGate:
    """``check_free_vram`` for every fixed layer of one engine, with fewer driver queries.

    diffsynth keeps a layer on the GPU (``preparing``) while device-wide used memory is under
    ``vram_limit`` GiB. A limit of 0 can never be met, so it is answered without a query. Once a
    query finds the limit reached, the answer stays "no" until a layer is offloaded (memory is
    given back only then; until that point at most activations come and go). Placement only:
    a layer that is not kept is streamed, which computes the same values.
    """

    def __init__(self, used_gib: Callable[[str], float]) -> None:
        self._used_gib = used_gib
        self._over = False
        self.queries = 0

    def below(self, limit_gib: float, device: str) -> bool:
        if limit_gib <= 0 or self._over:
            return False
        self.queries += 1
        below = self._used_gib(device) < limit_gib
        self._over = not below
        return below

    def reopen(self) -> None:
        """Memory was given back (a layer left the GPU): ask the driver again next time."""
        self._over = False


# ---- per-instance patches --------------------------------------------------------------------


@dataclass
class _Slot:
    """One tensor of a wrapper (a parameter or buffer of it or of its inner module)."""

    owner: torch.nn.Module
    name: str
    is_param: bool
    pinned: torch.Tensor

    def current(self) -> torch.Tensor:
        tensors = self.owner._parameters if self.is_param else self.owner._buffers
        tensor = tensors[self.name]
        assert tensor is not None
        return tensor

    def set(self, tensor: torch.Tensor) -> None:
        if self.is_param:
            param = self.owner._parameters[self.name]
            assert param is not None
            param.data = tensor
        else:
            self.owner._buffers[self.name] = tensor


@dataclass
class Applied:
    """What ``apply`` did to one model."""

    wrappers: int = 0
    skipped: int = 0
    tensors: int = 0
    bytes_pinned: int = 0
    seconds: float = 0.0
    skipped_kinds: set[str] = field(default_factory=set)


def _same_place(device_a: object, device_b: object) -> bool:
    return bool(torch.device(str(device_a)) == torch.device(str(device_b)))


def eligible(wrapper: Any) -> bool:
    """Whether ``apply`` can take over this wrapper (else diffsynth's code stays in charge)."""
    if not isinstance(wrapper, AutoWrappedLinear | AutoWrappedModule):
        return False
    if isinstance(wrapper, AutoWrappedNonRecurseModule) or getattr(wrapper, "disk_offload", True):
        return False
    if "disk" in (wrapper.offload_device, wrapper.onload_device, wrapper.preparing_device):
        return False
    return (
        wrapper.state == 0
        and _same_place(wrapper.offload_device, "cpu")
        and _same_place(wrapper.onload_device, wrapper.offload_device)
        and wrapper.onload_dtype == wrapper.offload_dtype
    )


def _owned_tensors(wrapper: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, str, bool]]:
    """(owner module, name, is parameter) for every tensor the wrapper moves, nested wrappers
    excluded (they move their own)."""
    stack = [wrapper]
    while stack:
        module = stack.pop()
        for name, param in module._parameters.items():
            if param is not None:
                yield module, name, True
        for name, buffer in module._buffers.items():
            if buffer is not None:
                yield module, name, False
        stack.extend(
            c for c in module._modules.values() if not isinstance(c, AutoTorchModule | None)
        )


def _to_place(tensor: torch.Tensor, device: object, dtype: torch.dtype) -> torch.Tensor:
    """Copy to ``device`` in the stored dtype (async from pinned memory), then cast there.

    Casts floating-point tensors only, as ``Module.to(dtype)`` does.
    """
    moved = tensor.to(torch.device(str(device)), non_blocking=True)
    return moved.to(dtype) if moved.is_floating_point() else moved


def _linear_cast_to(tensor: torch.Tensor, dtype: torch.dtype, device: object) -> torch.Tensor:
    return _to_place(tensor, device, dtype)


def _module_cast_to(module: torch.nn.Module, dtype: torch.dtype, device: object) -> torch.nn.Module:
    """A computation copy of ``module``: its structure deep-copied, its tensors moved (not copied
    on the CPU first)."""
    memo: dict[int, object] = {}
    for param in module.parameters():
        moved = _to_place(param.detach(), device, dtype)
        memo[id(param)] = torch.nn.Parameter(moved, requires_grad=param.requires_grad)
    for buffer in module.buffers():
        memo[id(buffer)] = _to_place(buffer, device, dtype)
    return copy.deepcopy(module, memo)


def _patch(wrapper: Any, slots: list[_Slot], gate: VramGate) -> None:
    # diffsynth calls these through ``self.<name>``: an entry in the instance's __dict__ wins over
    # the class's method, so only this instance changes.
    attrs = wrapper.__dict__

    def preparing() -> None:
        if wrapper.state != 2:
            for slot in slots:
                slot.set(_to_place(slot.pinned, wrapper.preparing_device, wrapper.preparing_dtype))
            wrapper.state = 2

    def offload() -> None:
        if wrapper.state != 0:
            prepared = wrapper.state == 2
            for slot in slots:
                slot.set(slot.pinned)
            wrapper.state = 0
            if prepared:
                gate.reopen()

    def check_free_vram() -> bool:
        return gate.below(float(wrapper.vram_limit), str(wrapper.computation_device))

    attrs["preparing"] = preparing
    attrs["offload"] = offload
    attrs["check_free_vram"] = check_free_vram
    is_linear = isinstance(wrapper, AutoWrappedLinear)
    attrs["cast_to"] = _linear_cast_to if is_linear else _module_cast_to
    attrs[PATCHED_FLAG] = True


def apply(model: torch.nn.Module, arena: PinnedArena, gate: VramGate) -> Applied:
    """Pin the CPU-resting tensors of ``model``'s diffsynth wrappers into ``arena`` and patch those
    wrappers (see the module docstring). Idempotent; returns counts for the log."""
    started = time.perf_counter()
    done = Applied()
    pinned: dict[tuple[int, str, bool], torch.Tensor] = {}  # shared modules (T5's embedding)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, AutoTorchModule) or module.__dict__.get(PATCHED_FLAG):
                continue
            if not eligible(module):
                done.skipped += 1
                done.skipped_kinds.add(type(module).__name__)
                continue
            slots = []
            for owner, name, is_param in _owned_tensors(module):
                key = (id(owner), name, is_param)
                slot = _Slot(owner, name, is_param, pinned.get(key, torch.empty(0)))
                if key not in pinned:
                    pinned[key] = slot.pinned = arena.store(slot.current().detach())
                    slot.set(slot.pinned)
                    done.tensors += 1
                    done.bytes_pinned += slot.pinned.numel() * slot.pinned.element_size()
                slots.append(slot)
            _patch(module, slots, gate)
            done.wrappers += 1
    done.seconds = time.perf_counter() - started
    return done
