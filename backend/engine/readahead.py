"""Read a component's files sequentially beside diffsynth's loader, counting the bytes.

diffsynth reads safetensors through mmap, which reports no progress: a 12 GB DiT on a cold disk
would sit at 0 % for half a minute. A side thread that reads the same files front to back gives
``/status`` an honest bytes-read figure and turns the loader's page faults into one sequential
stream (the pages it reads stay in the page cache for the loader). From a warm page cache it
costs one memory copy per byte on a spare core, off the loader's path.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

CHUNK_BYTES = 16 << 20
REPORT_INTERVAL_S = 0.25


class ReadAhead:
    """Context manager: reads ``paths`` in a daemon thread, calling ``on_bytes(total_so_far)``
    at most every ``interval_s`` (and once at the end); stops early when the block exits."""

    def __init__(
        self,
        paths: Sequence[Path],
        on_bytes: Callable[[int], None],
        *,
        interval_s: float = REPORT_INTERVAL_S,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._paths = tuple(paths)
        self._on_bytes = on_bytes
        self._interval_s = interval_s
        self._chunk_bytes = chunk_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="majicbot-readahead", daemon=True)
        self.bytes_read = 0

    def __enter__(self) -> ReadAhead:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        buffer = bytearray(self._chunk_bytes)
        last_report = time.monotonic()
        for path in self._paths:
            try:
                last_report = self._read_file(path, buffer, last_report)
            except OSError:
                continue  # the loader reports unreadable files itself
            if self._stop.is_set():
                return
        self._on_bytes(self.bytes_read)

    def _read_file(self, path: Path, buffer: bytearray, last_report: float) -> float:
        fd = os.open(path, os.O_RDONLY)
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while not self._stop.is_set():
                count = os.readv(fd, [buffer])
                if count == 0:
                    break
                self.bytes_read += count
                now = time.monotonic()
                if now - last_report >= self._interval_s:
                    self._on_bytes(self.bytes_read)
                    last_report = now
        finally:
            os.close(fd)
        return last_report
