"""Plain DiT blocks for compilation, and fp8 compute (fp8 weights *and* fp8 matmuls).

Imported lazily (it imports torch). diffsynth wraps every Linear and RMSNorm of a DiT that rests
in fp8 (profile ``gpu-fp8``) in a VRAM-management module that casts the weight to bf16 on each
call (a deep copy for RMSNorm). ``plain_blocks`` replaces those wrappers inside the repeated
blocks (``dit.blocks``, ``dit.single_blocks``) by plain modules that ``torch.compile`` traces
without graph breaks:

- ``fp8_compute=False``: ``CastLinear`` — the weight stays fp8 and is cast to bf16 per call, which
  is exactly what the wrapper computed (same bytes out);
- ``fp8_compute=True``: ``Fp8Linear`` — the fp8 weight goes straight into ``torch._scaled_mm``
  with the activations quantized to fp8 per token on the fly (dynamic scaling), i.e. the
  matmuls run on the fp8 tensor cores.

The weights are used as stored (majicflus_v1 ships fp8; a bf16 file is cast by diffsynth's loader
as for ``gpu-fp8``), with a weight scale of 1: the only new error is the activation rounding,
which ``bench/compile_probe.py`` and ``tests/gpu/test_speed_gpu.py`` measure and bound.

Why not torchao (diffsynth's ``QuantizeConfig("torchao_fp8_w8a8")``): its weights are tensor
subclasses, and compiling the DiT through them took over 255 s cold and 103 s with a warm Inductor
cache on an H200 (FLUX.md), far from a ≤ 60 s restart; plain fp8 tensors compile like bf16 ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448
# torch._scaled_mm needs K and N divisible by 16; rows (M) are padded up to this many.
MIN_ROWS = 16
# Row-wise (per token / per output channel) scales need Hopper; Ada (8.9) gets one scale per
# tensor.
ROWWISE_CAPABILITY = (9, 0)
FP8_COMPUTE_CAPABILITY = (8, 9)


def fp8_compute_refusal(device: str, capability: tuple[int, int] | None) -> str | None:
    """None when fp8 matmuls can run on ``device``; otherwise the sentence that says why not."""
    if not device.startswith("cuda") or capability is None:
        return (
            f"engine.fp8_compute needs a CUDA card of compute capability 8.9 or newer; "
            f"{device} runs the lossless bf16 path"
        )
    if capability < FP8_COMPUTE_CAPABILITY:
        major, minor = capability
        return (
            f"engine.fp8_compute needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
            f"{device} has {major}.{minor}, so it runs the lossless bf16 path"
        )
    return None


class CastLinear(torch.nn.Module):  # type: ignore[misc]  # torch is not followed by mypy
    """A Linear whose weight rests in fp8 and is cast to the activation dtype on every call."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features = int(weight.shape[1])
        self.out_features = int(weight.shape[0])
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return torch.nn.functional.linear(x, self.weight.to(x.dtype), bias)


class Fp8Linear(torch.nn.Module):  # type: ignore[misc]
    """``x @ W.T + b`` on the fp8 tensor cores.

    ``W`` is float8_e4m3fn (out, in) with one float32 scale per output channel; ``x`` is scaled
    per token (row) so that its largest magnitude maps to 448, rounded to e4m3, and the product
    is accumulated in fp32 and written in ``x``'s dtype with both scales and the bias applied by
    ``torch._scaled_mm``. ``rowwise=False`` uses one scale for the whole of ``x`` (pre-Hopper).
    """

    weight: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, *,
        rowwise: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.in_features = int(weight.shape[1])
        self.out_features = int(weight.shape[0])
        self.rowwise = rowwise
        self.register_buffer("weight", weight.contiguous())
        scale = weight_scale.float().reshape(1, -1) if rowwise else weight_scale.float().max()
        self.register_buffer("weight_scale", scale.contiguous())
        self.register_buffer("bias", None if bias is None else bias.to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        count = rows.shape[0]
        if count < MIN_ROWS:
            rows = torch.nn.functional.pad(rows, (0, 0, 0, MIN_ROWS - count))
        quantized, scale = self._quantize(rows)
        out = torch._scaled_mm(
            quantized,
            self.weight.t(),
            scale_a=scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=x.dtype,
        )
        return out[:count].reshape(*shape[:-1], self.out_features)

    def _quantize(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wide = rows.float()
        amax = wide.abs().amax(dim=-1, keepdim=True) if self.rowwise else wide.abs().amax()
        scale = torch.clamp(amax, min=1e-12) / E4M3_MAX
        quantized = torch.clamp(wide / scale, -E4M3_MAX, E4M3_MAX).to(E4M3)
        return quantized, scale


@dataclass(frozen=True)
class Converted:
    """What ``plain_blocks`` did: layers replaced, and bytes of weights they hold."""

    linears: int
    norms: int
    weight_bytes: int


def plain_blocks(dit: torch.nn.Module, *, fp8_compute: bool, rowwise: bool = True) -> Converted:
    """Replace diffsynth's VRAM wrappers inside the repeated blocks by plain modules (in place).

    Only wrappers whose weights already sit on their computation device are touched (profile
    ``gpu-fp8``); a DiT loaded without wrappers (``gpu``) is left as it is. Returns counts.
    """
    linears = norms = weight_bytes = 0
    for block in _repeated_blocks(dit):
        for name, module in list(block.named_modules()):
            replacement = _plain(module, fp8_compute, rowwise)
            if replacement is None:
                continue
            _set_submodule(block, name, replacement)
            if isinstance(replacement, CastLinear | Fp8Linear | torch.nn.Linear):
                linears += 1
                weight_bytes += replacement.weight.numel() * replacement.weight.element_size()
            else:
                norms += 1
    return Converted(linears, norms, weight_bytes)


def _repeated_blocks(dit: torch.nn.Module) -> list[torch.nn.Module]:
    names = getattr(dit, "_repeated_blocks", ())
    return [m for m in dit.modules() if type(m).__name__ in names]


def _plain(module: Any, fp8_compute: bool, rowwise: bool) -> torch.nn.Module | None:
    kind = type(module).__name__
    if kind == "AutoWrappedLinear":
        weight, bias = module.weight.detach(), _detached(module.bias)
        if weight.dtype != E4M3:
            return _bf16_linear(weight, bias)
        if fp8_compute:
            scale = torch.ones(weight.shape[0], device=weight.device, dtype=torch.float32)
            return Fp8Linear(weight, scale, bias, rowwise=rowwise)
        return CastLinear(weight, bias)
    if kind == "AutoWrappedModule":
        inner: torch.nn.Module = module.module
        return inner.to(dtype=torch.bfloat16)
    return None


def _detached(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach()


def _bf16_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.nn.Module:
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = torch.nn.Parameter(weight.to(torch.bfloat16), requires_grad=False)
    if bias is not None:
        linear.bias = torch.nn.Parameter(bias.to(torch.bfloat16), requires_grad=False)
    return linear


def _set_submodule(root: torch.nn.Module, dotted: str, module: torch.nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float32."""
    diff = torch.linalg.vector_norm((a.float() - b.float()).flatten())
    return float(diff / torch.linalg.vector_norm(b.float().flatten()))
