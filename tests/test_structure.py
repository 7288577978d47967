"""Project structure rules that a review would otherwise have to remember (issue 10)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backend", "bots")
MAX_CLASS_LINES = 250


def class_sizes(root: Path = ROOT) -> dict[str, int]:
    """Lines of every class (decorators and docstring included) in ``PACKAGES``, by
    "path:line Name"; nested classes count on their own and inside their parent."""
    sizes: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    last = node.end_lineno or node.lineno
                    where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
                    sizes[where] = last - first + 1
    return sizes


def test_class_sizes_are_measured() -> None:
    sizes = class_sizes()
    assert any(where.endswith(" DiffsynthEngine") for where in sizes)
    assert all(lines > 0 for lines in sizes.values())


def test_no_class_over_250_lines() -> None:
    too_long = {where: n for where, n in class_sizes().items() if n > MAX_CLASS_LINES}
    assert not too_long, f"classes over {MAX_CLASS_LINES} lines (split them): {too_long}"
