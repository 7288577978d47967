"""Build the pipeline and load one component into it, the way ``from_pretrained`` would.

Each component is found by diffsynth's key hash (``backend.engine.detect``) and loaded with
``ModelPool.load_model_file`` and a ``vram_config`` from its ``Placement``, while a read-ahead
thread reports progress; a component that rests in CPU RAM gets pinned weight streaming
(``backend.engine.streaming``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from backend.domain import LoadState
from backend.engine.files import Component, ModelFiles
from backend.engine.profiles import Choice, Placement
from backend.engine.protocol import LoadReport
from backend.engine.readahead import ReadAhead
from backend.engine.state_board import StateBoard
from backend.engine.torch_device import TorchDevice
from backend.errors import EngineError, ProfileDoesNotFit

log = logging.getLogger(__name__)

# diffsynth's model names -> the FluxImagePipeline attribute each one fills.
PIPE_ATTRIBUTES = {
    "flux_text_encoder_clip": "text_encoder_1",
    "flux_text_encoder_t5": "text_encoder_2",
    "flux_vae_encoder": "vae_encoder",
    "flux_vae_decoder": "vae_decoder",
    "flux_dit": "dit",
}


def new_pipeline(device: TorchDevice, files: ModelFiles) -> Any:
    """An empty ``FluxImagePipeline`` in bf16 with both tokenizers loaded."""
    import transformers
    from diffsynth.pipelines.flux_image import FluxImagePipeline

    # The classes FluxImagePipeline.from_pretrained uses (T5TokenizerFast is a lazy alias).
    t5_tokenizer: Any = transformers.T5TokenizerFast
    clip_tokenizer: Any = transformers.CLIPTokenizer
    pipe = FluxImagePipeline(device=device.device, torch_dtype=device.torch.bfloat16)
    pipe.tokenizer_1 = clip_tokenizer.from_pretrained(str(files.tokenizer_1))
    pipe.tokenizer_2 = t5_tokenizer.from_pretrained(str(files.tokenizer_2))
    return pipe


class ComponentLoader:
    """Loads components into a pipeline with the chosen profile's placements, reporting each
    one's progress on the board. Keeps the pinned arena of CPU-resting weights while it lives."""

    def __init__(
        self,
        device: TorchDevice,
        files: ModelFiles,
        choice: Choice,
        board: StateBoard,
        *,
        pinned_streaming: bool,
    ) -> None:
        self._device = device
        self._files = files
        self._choice = choice
        self._board = board
        self._pinned_streaming = pinned_streaming
        self._streaming: Any = None  # (PinnedArena, VramGate) once a component needs them

    def load(self, report: LoadReport, pipe: Any, component: Component) -> None:
        """Load ``component`` into ``pipe``; raises ProfileDoesNotFit (out of memory) or
        EngineError after marking the component FAILED."""
        from diffsynth.models.model_loader import ModelPool

        from backend.engine.detect import diffsynth_path, model_entries

        board, files = self._board, self._files.of(component)
        placement = self._choice.profile.placement(component)
        rest = placement.rest
        board.set_component(
            report, component, state=LoadState.LOADING, device=rest.device, dtype=rest.dtype
        )
        started = time.perf_counter()
        pool, path = ModelPool(), diffsynth_path(files)
        vram_config = self._vram_config(placement)
        limit = self._choice.vram_limit_gb if placement.managed else None

        def read(count: int) -> None:  # read-ahead thread
            elapsed = time.perf_counter() - started
            board.set_component(
                report, component, bytes_read=min(count, files.bytes_total), seconds=elapsed
            )

        try:
            with ReadAhead(files.paths, read):
                for name, entry in model_entries(files).items():
                    model = pool.load_model_file(entry, path, vram_config, vram_limit=limit)
                    self._stream_pinned(component, placement, model)
                    setattr(pipe, PIPE_ATTRIBUTES[name], model)
        except Exception as exc:
            seconds = time.perf_counter() - started
            board.set_component(
                report, component, state=LoadState.FAILED, seconds=seconds, error=str(exc)
            )
            raise self._load_error(component, exc) from exc
        seconds = time.perf_counter() - started
        board.set_component(
            report, component, state=LoadState.READY, bytes_read=files.bytes_total, seconds=seconds
        )
        board.refresh_vram(self._device, report)
        log.info(
            "engine %s: %s ready in %.1f s on %s", self._device.device, component, seconds, rest
        )

    def _stream_pinned(self, component: Component, placement: Placement, model: Any) -> None:
        """Pin a CPU-resting component and patch its layer wrappers (``backend.engine.streaming``);
        nothing happens on the CPU device or for components resident on the GPU."""
        from backend.engine import streaming

        rest, device = placement.rest.device, placement.computation.device
        if not (placement.managed and self._pinned_streaming):
            return
        if not streaming.wants_pinned_streaming(rest, device):
            return
        if self._streaming is None:
            arena = streaming.PinnedArena(streaming.pinned_allocator)
            self._streaming = (arena, streaming.VramGate(streaming.cuda_used_gib))
        arena, gate = self._streaming
        done = streaming.apply(model, arena, gate)
        log.info(
            "engine %s: %s pinned %.2f GB in %d tensors of %d layers in %.1f s (%d layers left "
            "to diffsynth: %s)",
            self._device.device, component, done.bytes_pinned / 1e9, done.tensors, done.wrappers,
            done.seconds, done.skipped, ", ".join(sorted(done.skipped_kinds)) or "none",
        )  # fmt: skip

    def _vram_config(self, placement: Placement) -> dict[str, Any]:
        def dtype(name: str | None) -> Any:
            return None if name is None else getattr(self._device.torch, name)

        config: dict[str, Any] = {}
        for state in ("offload", "onload", "preparing", "computation"):
            place = getattr(placement, state)
            config[f"{state}_device"] = None if place is None else place.device
            config[f"{state}_dtype"] = dtype(None if place is None else place.dtype)
        return config

    def _load_error(self, component: Component, exc: BaseException) -> EngineError:
        profile = self._choice.profile.name
        if isinstance(exc, self._device.torch.OutOfMemoryError):
            self._device.free_cache()
            return ProfileDoesNotFit(
                f"out of memory while loading the {component.value} with profile {profile} on "
                f"{self._device.device}; choose a smaller engine.profile (balanced or lowvram)",
                profile=profile,
            )
        return EngineError(f"loading the {component.value} failed: {exc}")
