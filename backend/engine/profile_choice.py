"""Choose the profile for one device from what was measured there, and fp8 compute with it.

``backend.engine.profiles`` decides from numbers; this module gathers them (free VRAM, host RAM,
parameter counts, whether the card can run fp8 matmuls) and words the reason /status shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backend.config import EngineSettings
from backend.engine.files import ModelFiles, component_parameters
from backend.engine.profiles import Choice, choose_profile
from backend.engine.torch_device import TorchDevice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileDecision:
    choice: Choice
    fp8_compute: bool  # the DiT's matmuls run in fp8 (engine.fp8_compute, gpu-fp8, a capable card)
    reason: str  # the profile's reason plus what became of engine.fp8_compute


def decide_profile(
    settings: EngineSettings, device: TorchDevice, files: ModelFiles
) -> ProfileDecision:
    """Measure, choose (raises ProfileDoesNotFit) and log the choice."""
    memory = device.memory()
    params = component_parameters(files)
    engine = settings.engine
    refusal = fp8_refusal(device) if engine.fp8_compute else None
    fp8_wanted = engine.fp8_compute and refusal is None
    choice = choose_profile(
        engine.profile, device.device, memory, params, engine.vram_margin_gb,
        settings.max_pixels, fp8_first=fp8_wanted,
    )  # fmt: skip
    fp8_compute = fp8_wanted and choice.profile.name == "gpu-fp8"
    reason = choice.reason + fp8_note(engine.fp8_compute, fp8_compute, refusal)
    log.info("engine %s: profile %s — %s", device.device, choice.profile.name, reason)
    return ProfileDecision(choice, fp8_compute, reason)


def fp8_refusal(device: TorchDevice) -> str | None:
    """None when the device can run fp8 matmuls; otherwise the sentence that says why not."""
    from backend.engine.fp8 import fp8_compute_refusal

    capability = device.capability() if device.device.startswith("cuda") else None
    return fp8_compute_refusal(device.device, capability)


def fp8_note(wanted: bool, active: bool, refusal: str | None) -> str:
    """The sentence /status adds to the profile reason about engine.fp8_compute."""
    if not wanted:
        return ""
    if refusal is not None:
        return f"; {refusal}"
    if active:
        return "; fp8 compute on (fp8 weights and fp8 matmuls in the DiT)"
    return "; engine.fp8_compute applies to gpu-fp8 only, this profile computes in bf16"
