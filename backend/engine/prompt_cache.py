"""Reuse text embeddings across jobs of the same prompt (Reroll, Variations, a busy queue).

diffsynth encodes the prompt in ``FluxImageUnit_PromptEmbedder.process(pipe, prompt,
t5_sequence_length, positive)`` → ``{"prompt_emb", "pooled_prompt_emb", "text_ids"}`` (T5 and CLIP
outputs, ~4 MB at 512 tokens, on the pipeline's device). ``install`` wraps that method of the
pipeline's unit with a bounded LRU keyed by (prompt, sequence length, positive); the pipeline never
writes to those tensors, so one copy serves every job that asks for the same prompt.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

UNIT_NAME = "FluxImageUnit_PromptEmbedder"

Key = tuple[str, int, bool]


class PromptCache:
    """A bounded LRU of encoder outputs; ``max_entries = 0`` caches nothing."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Key, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return dict(found)

    def put(self, key: Key, value: dict[str, Any]) -> None:
        if self.max_entries <= 0 or not value:
            return
        with self._lock:
            self._entries[key] = dict(value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def wrap(self, process: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        """``process(pipe, prompt, t5_sequence_length, positive)`` with the cache in front."""

        def cached(
            pipe: Any, prompt: str, t5_sequence_length: int, positive: bool = True
        ) -> dict[str, Any]:
            key = (prompt, int(t5_sequence_length), bool(positive))
            found = self.get(key)
            if found is not None:
                return found
            value = process(pipe, prompt=prompt, t5_sequence_length=t5_sequence_length,
                            positive=positive)  # fmt: skip
            self.put(key, value)
            return value

        return cached


def install(pipe: Any, cache: PromptCache) -> bool:
    """Put ``cache`` in front of the pipeline's prompt-embedding unit; False if it has none."""
    for unit in getattr(pipe, "units", ()):
        if type(unit).__name__ == UNIT_NAME:
            unit.process = cache.wrap(unit.process)
            return True
    return False
