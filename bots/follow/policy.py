"""The one delivery policy: what a failed send means, and what to do about it.

Each adapter classifies its platform's errors into a :class:`Failure`; the follower acts on it:

- ``TRANSIENT`` (timeouts before the request was sent, network errors, 429, 5xx): try again,
  a bounded number of times, with exponential backoff and jitter; then leave the result
  undelivered for the retry loop, which has its own bound.
- ``GONE`` (the status message or interaction token is gone: Discord 401 50027 / 404 10015, a
  deleted Telegram message): post the result anew in the chat, at once.
- ``UNREACHABLE`` (blocked, kicked, missing permission): stop; the result stays in /history.
- ``UNCERTAIN`` (an upload whose answer timed out: the platform may well have it): never sent
  blindly again — that is how one slow answer became four photos. The user is told, best effort,
  that /history sends it again. At most once here, by choice: a duplicate photo in a group is
  worse than a missing one the user can fetch.
- ``REJECTED`` (the platform refused the content itself, a 400): retrying cannot help; logged
  as a bug, the result stays in /history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Failure(StrEnum):
    """What a failed send means for the follower."""

    TRANSIENT = "transient"  # try again later
    GONE = "gone"  # the in-place surface is gone: post anew
    UNREACHABLE = "unreachable"  # the user or chat cannot be reached: stop
    UNCERTAIN = "uncertain"  # it may have arrived: do not send again
    REJECTED = "rejected"  # the platform refused it: a bug, do not retry


class SurfaceGone(Exception):
    """Raised by a surface that knows without asking that its in-place target is gone."""


class DeliveryFailed(Exception):
    """Transient failures outlasted the attempts of one delivery; the retry loop takes over."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**attempt))``."""

    base_s: float = 1.0
    cap_s: float = 30.0

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**attempt)
        return (rng or random).uniform(ceiling / 2, ceiling)
