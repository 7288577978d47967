"""Compute-path probe on one GPU: which fp8 / compile / attention variant to keep, measured.

    python -m bench.compile_probe [--out DIR] [--budget-s 500]

Builds the full-size FLUX DiT (19 double + 38 single blocks, hidden 3072) in memory with random
weights N(0, 0.02) rounded to fp8-representable values (as majicflus_v1 stores them), no fixture
files, and times ONE denoising step (``model_fn_flux_image`` at 1024², 512 text tokens) for:

- bf16 eager with the default SDPA order and with cuDNN attention first (plus a microbench of
  the attention call alone: flash / cuDNN / efficient);
- bf16 compiled by the product's ``BlockOptimizer`` (background thread, run-only swap);
- fp8 compute (``backend.engine.fp8.Fp8Linear``) eager and compiled; relative L2 error of the
  step output against bf16; host enqueue time per step (is the step launch-bound? — the case for
  CUDA graphs);
- in fresh processes: a restart with the Inductor cache directory warm, a restart with only the
  saved ``torch.compiler.save_cache_artifacts`` file, ``max-autotune-no-cudagraphs``, and torchao's
  fp8 w8a8 (diffsynth ``QuantizeConfig``) eager and compiled, each under a time limit;
- the VAE decode at 1024² in the default and the channels-last memory format.

Writes ``probe.json`` under ``--out`` and prints a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZE = 1024
TEXT = 512


def build_dit(torch: Any, seed: int = 0) -> Any:
    """The full-size FluxDiT on cuda:0 in bf16, weights N(0, 0.02) rounded through e4m3."""
    from diffsynth.models.flux_dit import FluxDiT

    torch.manual_seed(seed)
    with torch.device("cuda:0"):
        dit = FluxDiT().to(torch.bfloat16)
    with torch.no_grad():
        for module in dit.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.02)
                module.weight.copy_(module.weight.to(torch.float8_e4m3fn).to(torch.bfloat16))
                if module.bias is not None:
                    module.bias.normal_(0, 0.02)
    return dit.eval().requires_grad_(False)


def to_fp8(torch: Any, dit: Any) -> int:
    """Every Linear of the repeated blocks becomes an ``Fp8Linear`` (weights as stored)."""
    from backend.engine.fp8 import E4M3, Fp8Linear

    count = 0
    for block in [*dit.blocks, *dit.single_blocks]:
        for name, module in list(block.named_modules()):
            if type(module) is torch.nn.Linear:
                weight = module.weight.detach().to(E4M3)
                scale = torch.ones(weight.shape[0], device=weight.device)
                parent, _, child = name.rpartition(".")
                owner = block.get_submodule(parent) if parent else block
                setattr(owner, child, Fp8Linear(weight, scale, module.bias))
                count += 1
    torch.cuda.empty_cache()
    return count


def step_inputs(torch: Any, dit: Any) -> dict[str, Any]:
    gen = torch.Generator("cuda:0").manual_seed(1)

    def randn(*shape: int) -> Any:
        return torch.randn(*shape, device="cuda:0", generator=gen).to(torch.bfloat16)

    latents = randn(1, 16, SIZE // 8, SIZE // 8)
    return {
        "latents": latents,
        "timestep": torch.tensor([500.0], device="cuda:0", dtype=torch.bfloat16),
        "prompt_emb": randn(1, TEXT, 4096),
        "pooled_prompt_emb": randn(1, 768),
        "guidance": torch.tensor([3.5], device="cuda:0", dtype=torch.bfloat16),
        "text_ids": torch.zeros(1, TEXT, 3, device="cuda:0", dtype=torch.bfloat16),
        "image_ids": dit.prepare_image_ids(latents),
    }


def dit_step(torch: Any, dit: Any, inputs: dict[str, Any]) -> Any:
    from diffsynth.pipelines.flux_image import model_fn_flux_image

    with torch.no_grad():
        return model_fn_flux_image(dit=dit, **inputs)


def time_step(torch: Any, fn: Any, repeat: int = 5) -> dict[str, float]:
    """Median GPU ms of ``fn`` (events), and host ms until ``fn`` returned (enqueue time)."""
    fn()
    torch.cuda.synchronize()
    gpu, host = [], []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        begin = time.perf_counter()
        start.record()
        fn()
        host.append((time.perf_counter() - begin) * 1e3)
        end.record()
        torch.cuda.synchronize()
        gpu.append(start.elapsed_time(end))
    return {"gpu_ms": statistics.median(gpu), "host_enqueue_ms": statistics.median(host)}


def rel_l2(torch: Any, a: Any, b: Any) -> float:
    from backend.engine.fp8 import relative_l2

    return relative_l2(a, b)


def cudnn_first(torch: Any) -> None:
    from backend.engine.optimize import prefer_cudnn_attention

    prefer_cudnn_attention(torch)


def default_order(torch: Any, saved: list[int]) -> None:
    torch._C._set_sdp_priority_order(saved)


def attention_microbench(torch: Any) -> dict[str, float]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(1, 24, TEXT + 4096, 128, device="cuda:0", dtype=torch.bfloat16)
               for _ in range(3))  # fmt: skip
    out: dict[str, float] = {}
    for name, backend in (
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("cudnn", SDPBackend.CUDNN_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION),
    ):
        try:
            with sdpa_kernel([backend]):
                t = time_step(
                    torch, lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), 10
                )
            out[name] = t["gpu_ms"]
        except Exception as exc:  # a backend that cannot run this shape
            out[name + "_error"] = repr(exc)[:200]  # type: ignore[assignment]
    return out


def compile_blocks(torch: Any, dit: Any, mode: str, label: str) -> dict[str, Any]:
    """The product's BlockOptimizer (background thread), then the run-only swap."""
    from backend.engine.optimize import BlockOptimizer, CompileSettings

    settings = CompileSettings("cuda:0", ((SIZE, SIZE),), TEXT, label, modes=(mode,))
    counters = torch._dynamo.utils.counters
    graphs_before = counters["stats"]["unique_graphs"]
    started = time.perf_counter()
    optimizer = BlockOptimizer(torch, dit, settings, lambda _state: None)
    optimizer.start()
    optimizer.wait()
    state = optimizer.state()
    seconds = time.perf_counter() - started
    optimizer.install_if_ready()
    return {
        "optimizer": optimizer,
        "compile_s": seconds,
        "phase": str(state.phase),
        "detail": state.detail,
        "unique_graphs": counters["stats"]["unique_graphs"] - graphs_before,
    }


def vae_channels_last(torch: Any) -> dict[str, float]:
    from diffsynth.models.flux_vae import FluxVAEDecoder

    with torch.device("cuda:0"):
        vae = FluxVAEDecoder().to(torch.bfloat16).eval().requires_grad_(False)
    latents = torch.randn(1, 16, SIZE // 8, SIZE // 8, device="cuda:0", dtype=torch.bfloat16)
    with torch.no_grad():
        base = time_step(torch, lambda: vae(latents), 3)["gpu_ms"]
        reference = vae(latents)
        vae = vae.to(memory_format=torch.channels_last)
        cl_latents = latents.contiguous(memory_format=torch.channels_last)
        last = time_step(torch, lambda: vae(cl_latents), 3)["gpu_ms"]
        err = rel_l2(torch, vae(cl_latents), reference)
    vae = None
    torch.cuda.empty_cache()
    return {"default_ms": base, "channels_last_ms": last, "rel_l2": err}


# ---- main process --------------------------------------------------------------------------


def main_probe(args: argparse.Namespace, res: dict[str, Any]) -> None:
    import torch

    deadline = time.time() + args.budget_s
    res.update({
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0)),
    })  # fmt: skip
    saved_order = list(torch._C._get_sdp_priority_order())
    res["attention_ms"] = attention_microbench(torch)
    print("attention", res["attention_ms"], flush=True)
    res["vae_decode"] = vae_channels_last(torch)
    print("vae", res["vae_decode"], flush=True)
    started = time.perf_counter()
    dit = build_dit(torch)
    res["build_s"] = time.perf_counter() - started
    inputs = step_inputs(torch, dit)
    ref = dit_step(torch, dit, inputs)
    res["bf16_eager"] = time_step(torch, lambda: dit_step(torch, dit, inputs))
    cudnn_first(torch)
    res["bf16_eager_cudnn"] = time_step(torch, lambda: dit_step(torch, dit, inputs))
    res["bf16_eager_cudnn"]["rel_l2_vs_flash"] = rel_l2(torch, dit_step(torch, dit, inputs), ref)
    best_cudnn = res["bf16_eager_cudnn"]["gpu_ms"] < res["bf16_eager"]["gpu_ms"]
    res["attention_choice"] = "cudnn" if best_cudnn else "default"
    if not best_cudnn:
        default_order(torch, saved_order)
    print("bf16 eager", res["bf16_eager"], res["bf16_eager_cudnn"], flush=True)
    compiled = compile_blocks(torch, dit, "default", "probe bf16")
    res["bf16_compiled"] = {k: v for k, v in compiled.items() if k != "optimizer"}
    res["bf16_compiled"].update(time_step(torch, lambda: dit_step(torch, dit, inputs)))
    res["bf16_compiled"]["rel_l2_vs_eager"] = rel_l2(torch, dit_step(torch, dit, inputs), ref)
    compiled["optimizer"].close()
    print("bf16 compiled", res["bf16_compiled"], flush=True)
    res["fp8_linears"] = to_fp8(torch, dit)
    res["fp8_eager"] = time_step(torch, lambda: dit_step(torch, dit, inputs))
    res["fp8_eager"]["rel_l2_vs_bf16"] = rel_l2(torch, dit_step(torch, dit, inputs), ref)
    print("fp8 eager", res["fp8_eager"], flush=True)
    compiled = compile_blocks(torch, dit, "default", "probe fp8")
    res["fp8_compiled"] = {k: v for k, v in compiled.items() if k != "optimizer"}
    res["fp8_compiled"].update(time_step(torch, lambda: dit_step(torch, dit, inputs)))
    res["fp8_compiled"]["rel_l2_vs_bf16"] = rel_l2(torch, dit_step(torch, dit, inputs), ref)
    res["fp8_compiled"]["peak_allocated_gb"] = torch.cuda.max_memory_allocated() / 1e9
    print("fp8 compiled", res["fp8_compiled"], flush=True)
    saved = torch.compiler.save_cache_artifacts()
    artifacts = Path(args.work) / "probe-megacache.bin"
    if saved is not None:
        artifacts.write_bytes(saved[0])
        res["megacache_mb"] = len(saved[0]) / 1e6
    dit = ref = None
    torch.cuda.empty_cache()
    res["subprocesses"] = {}
    for name, extra_env, timeout in _subprocess_plan(args, artifacts):
        left = deadline - time.time()
        if left < 45:
            res["subprocesses"][name] = {"skipped": f"{left:.0f} s left of the budget"}
            continue
        res["subprocesses"][name] = _run_sub(name, extra_env, min(timeout, left - 10), args)
        print(name, res["subprocesses"][name], flush=True)
        Path(args.out, "probe.json").write_text(json.dumps(res, indent=2, default=str))


def _subprocess_plan(
    args: argparse.Namespace, artifacts: Path
) -> list[tuple[str, dict[str, str], float]]:
    fresh = str(Path(args.work) / "inductor-fresh")
    return [
        ("fp8_restart_inductor_dir_warm", {}, 150),
        ("fp8_restart_megacache_only", {"TORCHINDUCTOR_CACHE_DIR": fresh,
                                        "PROBE_ARTIFACTS": str(artifacts)}, 150),
        ("fp8_max_autotune_no_cudagraphs", {"TORCHINDUCTOR_CACHE_DIR": fresh + "-mat"}, 200),
        ("torchao_fp8_w8a8", {}, 200),
    ]  # fmt: skip


def _run_sub(
    name: str, extra_env: dict[str, str], timeout: float, args: argparse.Namespace
) -> dict[str, Any]:
    out = Path(args.work) / f"sub-{name}.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "bench.compile_probe", "--sub", name, "--sub-out", str(out)]
    started = time.perf_counter()
    log = (Path(args.work) / f"sub-{name}.log").open("w")
    try:
        proc = subprocess.run(cmd, env=env, timeout=timeout, stdout=log, stderr=subprocess.STDOUT)
        code: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        code = f"timeout after {timeout:.0f} s"
    finally:
        log.close()
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    result.update(exit=code, wall_s=time.perf_counter() - started)
    return result


# ---- subprocesses ------------------------------------------------------------------------------


def sub_main(name: str, out: Path) -> None:
    t0 = time.perf_counter()
    import diffsynth  # noqa: F401
    import torch

    res: dict[str, Any] = {"import_s": time.perf_counter() - t0}

    def save() -> None:
        out.write_text(json.dumps(res, indent=2, default=str))

    cudnn_first(torch)
    artifacts = os.environ.get("PROBE_ARTIFACTS")
    if artifacts:
        started = time.perf_counter()
        torch.compiler.load_cache_artifacts(Path(artifacts).read_bytes())
        res["load_artifacts_s"] = time.perf_counter() - started
    dit = build_dit(torch)
    inputs = step_inputs(torch, dit)
    if name == "torchao_fp8_w8a8":
        _torchao(torch, dit, inputs, res, save)
        save()
        return
    ref = dit_step(torch, dit, inputs)
    to_fp8(torch, dit)
    mode = "max-autotune-no-cudagraphs" if "max_autotune" in name else "default"
    save()
    compiled = compile_blocks(torch, dit, mode, "probe fp8")
    res.update({k: v for k, v in compiled.items() if k != "optimizer"})
    res["ready_to_compiled_s"] = time.perf_counter() - t0
    res.update(time_step(torch, lambda: dit_step(torch, dit, inputs)))
    res["rel_l2_vs_bf16"] = rel_l2(torch, dit_step(torch, dit, inputs), ref)
    save()


def _torchao(torch: Any, dit: Any, inputs: dict[str, Any], res: dict[str, Any], save: Any) -> None:
    from diffsynth.core import QuantizeConfig

    ref = dit_step(torch, dit, inputs)
    config = QuantizeConfig(method="torchao_fp8_w8a8")
    for block in [*dit.blocks, *dit.single_blocks]:
        config.quantize_model(block, compute_device="cuda:0")
    res["eager"] = time_step(torch, lambda: dit_step(torch, dit, inputs))
    res["eager"]["rel_l2_vs_bf16"] = rel_l2(torch, dit_step(torch, dit, inputs), ref)
    print("torchao eager", res["eager"], flush=True)
    save()
    compiled = compile_blocks(torch, dit, "default", "probe torchao")
    res["compiled"] = {k: v for k, v in compiled.items() if k != "optimizer"}
    res["compiled"].update(time_step(torch, lambda: dit_step(torch, dit, inputs)))
    res["compiled"]["rel_l2_vs_bf16"] = rel_l2(torch, dit_step(torch, dit, inputs), ref)


# ---- table ---------------------------------------------------------------------------------------


def table(res: dict[str, Any]) -> str:
    rows = [
        f"{res.get('gpu')} torch {res.get('torch')} cuda {res.get('cuda')} cudnn {res.get('cudnn')}"
    ]
    rows.append(f"attention 1x24x4608x128 ms: {res.get('attention_ms')}")
    rows.append(f"vae decode 1024: {res.get('vae_decode')}")
    for key in ("bf16_eager", "bf16_eager_cudnn", "bf16_compiled", "fp8_eager", "fp8_compiled"):
        rows.append(f"{key:<22} {json.dumps(res.get(key), default=str)}")
    for key, value in res.get("subprocesses", {}).items():
        rows.append(f"{key:<32} {json.dumps(value, default=str)[:600]}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compile_probe")
    parser.add_argument("--out", default=os.environ.get("OUT", ".bench/out"))
    parser.add_argument("--work", default=".bench/probe")
    parser.add_argument("--budget-s", type=float, default=500)
    parser.add_argument("--sub", default=None)
    parser.add_argument("--sub-out", type=Path, default=None)
    args = parser.parse_args()
    if args.sub:
        assert args.sub_out is not None
        sub_main(args.sub, args.sub_out)
        return 0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(args.work).resolve() / "inductor"))
    res: dict[str, Any] = {}
    try:
        main_probe(args, res)
    finally:
        Path(args.out, "probe.json").write_text(json.dumps(res, indent=2, default=str))
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
