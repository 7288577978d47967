"""Honest wait estimates, from what the running engines measured.

Each worker keeps a ``JobTimer``: the medians of its last ``WINDOW`` jobs' text-encode seconds,
denoising seconds per step and decode seconds (``GenerationResult.timings``), so one slow job
(a first call that compiles, a page-in) moves no estimate by much, and the per-job overhead
(encode + decode, up to tens of seconds on a small card) is counted whatever the step count.

A waiting job at ``position`` with ``own_steps`` finishes, on ``W`` ready workers, after

    (what is left of the running jobs + (position − 1) × mean job time of the queue) / W
    + its own job time

where a job's time is ``encode + steps × s_per_step + decode`` and the queue's mean job uses its
mean steps per job (O(1) per estimate). When a running job ends and the next one starts, the
first term trades "almost nothing left" plus one position for "a whole job left": the estimate
drops by about the decode time, not by a job, so it decreases smoothly as the queue moves.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from backend.domain import Timings

WINDOW = 9  # jobs per median


class JobTimer:
    """Medians of one worker's recent jobs: encode s, denoise s per step, decode s."""

    def __init__(self) -> None:
        self._encode_s: deque[float] = deque(maxlen=WINDOW)
        self._step_s: deque[float] = deque(maxlen=WINDOW)
        self._decode_s: deque[float] = deque(maxlen=WINDOW)
        self._rates: Rates | None = None  # computed once per record: estimates read it often

    def record(self, timings: Timings, steps: int) -> None:
        """Add one finished job's timings."""
        self._encode_s.append(timings.text_encode_s)
        self._step_s.append(timings.denoise_s / max(1, steps))
        self._decode_s.append(timings.decode_s)
        self._rates = Rates(
            encode_s=statistics.median(self._encode_s),
            s_per_step=statistics.median(self._step_s),
            decode_s=statistics.median(self._decode_s),
        )

    def rates(self) -> Rates | None:
        """The current medians, or None before the first finished job."""
        return self._rates


@dataclass(frozen=True)
class Rates:
    """Measured costs of one job: per-job overhead (encode, decode) and seconds per step."""

    encode_s: float
    s_per_step: float
    decode_s: float

    def job_s(self, steps: float) -> float:
        """Seconds a whole job of ``steps`` takes."""
        return self.encode_s + steps * self.s_per_step + self.decode_s

    def remaining_s(self, steps: int, done: int) -> float:
        """Seconds left of a running job with ``done`` of ``steps`` denoising steps done."""
        encode = self.encode_s if done == 0 else 0.0
        return encode + (steps - done) * self.s_per_step + self.decode_s


def mean_rates(rates: Sequence[Rates]) -> Rates | None:
    """The mean of several workers' rates (None if none has measured anything)."""
    if len(rates) <= 1:
        return rates[0] if rates else None
    return Rates(
        encode_s=statistics.fmean(r.encode_s for r in rates),
        s_per_step=statistics.fmean(r.s_per_step for r in rates),
        decode_s=statistics.fmean(r.decode_s for r in rates),
    )


def running_remaining_s(
    rates: Rates | None, steps: int, done: int, started_at: float, now: float | None = None
) -> float | None:
    """Seconds left of a running job: from ``rates``, else from its own pace so far.

    Without rates the decode time is unknown: None once every step is done ("finishing…").
    """
    if rates is not None:
        return rates.remaining_s(steps, done)
    if done == 0 or done >= steps:
        return None
    elapsed = (time.time() if now is None else now) - started_at
    return (steps - done) * elapsed / done


def queue_eta_s(
    position: int,
    own_steps: int,
    mean_steps: float,
    running_left_s: float,
    workers: int,
    rates: Rates | None,
) -> float | None:
    """Seconds until the job at ``position`` finishes (see the module docstring)."""
    if rates is None or workers == 0:
        return None
    ahead = running_left_s + (position - 1) * rates.job_s(mean_steps)
    return ahead / workers + rates.job_s(own_steps)
