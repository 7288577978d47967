"""Process facts for the status snapshot: resident memory and library versions.

Never imports torch or diffsynth: their versions are reported only if something else already
imported them (the engine loader does, in its thread).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import sys


def process_rss_bytes() -> int:
    """Resident set size now (``/proc/self/statm``), else the peak (``getrusage``)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            resident_pages = int(fh.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def versions() -> tuple[tuple[str, str], ...]:
    """(name, version) of python, majicbot, and torch/diffsynth when already imported."""
    found = [("python", platform.python_version()), ("majicbot", _dist_version("majicbot"))]
    for module in ("torch", "diffsynth"):
        if module in sys.modules:
            found.append((module, _dist_version(module)))
    return tuple(found)


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
