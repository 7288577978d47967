"""Importing the packages is cheap: no torch, no diffsynth, no side effects."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "backend",
    "backend.config",
    "backend.domain",
    "backend.service",
    "backend.engine.factory",
    "backend.status_server",
    "bots",
    "bots.app",
    "bots.cli",
]


def test_importing_backend_and_bots_does_not_import_torch() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'diffsynth', 'torchvision', 'transformers')"
        " if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
