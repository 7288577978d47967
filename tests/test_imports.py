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


# The backend modules adapters may import: the facade and the shared types, nothing behind them.
ADAPTER_MAY_IMPORT = {"backend.service", "backend.domain", "backend.errors", "backend.config"}
ADAPTERS = ["bots/telegram", "bots/discord", "bots/follow", "bots/parsing.py", "bots/render.py"]


def test_adapters_reach_the_backend_through_its_facade_only() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [p for a in ADAPTERS for p in sorted((root / a).rglob("*.py")) or [root / a]]
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("backend.") and name not in ADAPTER_MAY_IMPORT:
                    found.append(f"{path.relative_to(root)}: {name}")
    assert len(files) > 20
    assert found == []
