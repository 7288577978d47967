"""One call of the FLUX pipeline: per-step progress, cancellation, stage timings, errors mapped
to the service's (``GenerationCancelled``, ``OutOfMemory``, ``EngineError``); and the warm-up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from backend.domain import GenerationParams, Timings
from backend.engine.protocol import CancelCheck, GenerationResult, StepCallback
from backend.engine.torch_device import TorchDevice
from backend.errors import EngineError, GenerationCancelled, OutOfMemory

log = logging.getLogger(__name__)

WARMUP_STEPS = 1
WARMUP_SIDE_GPU = 256
WARMUP_SIDE_CPU = 64

Generate = Callable[[GenerationParams, StepCallback, CancelCheck], GenerationResult]


def warm_up(generate: Generate, device: str) -> None:
    """One small, one-step image, so that the first job does not pay for the first kernels."""
    side = WARMUP_SIDE_CPU if device == "cpu" else WARMUP_SIDE_GPU
    params = GenerationParams("warm-up", 0, WARMUP_STEPS, side, side, 3.5)
    started = time.perf_counter()
    generate(params, lambda step, total: None, lambda: False)
    log.info("engine %s: warm-up took %.1f s", device, time.perf_counter() - started)


def run_pipeline(
    pipe: Any,
    device: TorchDevice,
    params: GenerationParams,
    on_step: StepCallback,
    cancelled: CancelCheck,
    t5_max_tokens: int,
) -> tuple[Any, StageClock, bool]:
    """(image, the call's stage clock, whether T5 cut the prompt). Raises GenerationCancelled,
    OutOfMemory (after freeing the cache) or EngineError."""
    clock = StageClock(device.synchronize)
    progress = step_progress(clock, on_step, cancelled, device.step_marker)
    truncated = t5_token_count(pipe, params.prompt) > t5_max_tokens
    try:
        image = pipe(
            prompt=params.prompt,
            seed=params.seed,
            num_inference_steps=params.steps,
            height=params.height,
            width=params.width,
            embedded_guidance=params.guidance,
            t5_sequence_length=t5_max_tokens,
            rand_device="cpu",
            progress_bar_cmd=progress,
        )
    except device.torch.OutOfMemoryError as exc:
        device.free_cache()
        raise OutOfMemory(
            f"CUDA out of memory on {device.device} at {params.width}x{params.height}: {exc}",
            width=params.width,
            height=params.height,
        ) from None
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(f"generation failed on {device.device}: {exc!r}") from exc
    return image, clock, truncated


def t5_token_count(pipe: Any, prompt: str) -> int:
    """Tokens T5 would see, end-of-sequence included (the pipeline cuts at t5_max_tokens)."""
    return len(pipe.tokenizer_2(prompt, truncation=False).input_ids)


class StageClock:
    """Splits one pipeline call into text encoding, denoising and decoding.

    The pipeline runs its units (text encoders, noise, ids) and then calls ``progress_bar_cmd``
    on the timesteps: that call ends "text encode" (it includes moving the DiT into place, which
    the pipeline does just before); the end of the step iterator ends "denoise"; the rest until
    the image is returned is "decode". On CUDA each boundary synchronises so the times are real.
    """

    def __init__(self, synchronize: Callable[[], None]) -> None:
        self._synchronize = synchronize
        self._start = time.perf_counter()
        self._denoise_start: float | None = None
        self._denoise_end: float | None = None

    def denoise_started(self) -> None:
        self._synchronize()
        self._denoise_start = time.perf_counter()

    def denoise_finished(self) -> None:
        self._synchronize()
        self._denoise_end = time.perf_counter()

    def timings(self) -> Timings:
        self._synchronize()
        end = time.perf_counter()
        denoise_start = self._denoise_start or end
        denoise_end = self._denoise_end or end
        return Timings(
            text_encode_s=denoise_start - self._start,
            denoise_s=denoise_end - denoise_start,
            decode_s=end - denoise_end,
        )


def step_progress(
    clock: StageClock,
    on_step: StepCallback,
    cancelled: CancelCheck,
    marker: Callable[[], Callable[[], None]],
) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """A ``progress_bar_cmd``: reports each finished step, raises when the job is cancelled.

    No host sync per step: after step N has been queued, the loop waits only for step N-1 and
    reports it, so the GPU always has the next step in its queue (a sync per step would leave it
    idle while Python prepares each step). A cancel therefore lands after one more step.
    """

    def wrap(timesteps: Iterable[Any]) -> Iterator[Any]:
        items = list(timesteps)
        total = len(items)
        clock.denoise_started()
        pending: Callable[[], None] | None = None
        for index, timestep in enumerate(items):
            if cancelled():
                raise GenerationCancelled(f"cancelled before step {index + 1} of {total}")
            yield timestep
            queued = marker()
            if pending is not None:
                pending()
                on_step(index, total)
            pending = queued
        if pending is not None:
            pending()
            on_step(total, total)
        clock.denoise_finished()

    return wrap
