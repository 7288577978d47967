"""The engine's pre-load checks: every file present and whole, then recognised by diffsynth.

A problem marks the components it concerns FAILED (with the reason /status shows) and raises
``ModelFilesMissing`` naming the files and the command that fetches them.
"""

from __future__ import annotations

from typing import NoReturn

from backend.domain import LoadState
from backend.engine.files import FileProblem, ModelFiles, check_files, describe_problems
from backend.engine.protocol import LoadReport
from backend.engine.state_board import StateBoard
from backend.errors import ModelFilesMissing


def report_totals(board: StateBoard, report: LoadReport, files: ModelFiles) -> None:
    """Show each component's size before anything is read."""
    for comp in files.components:
        board.set_component(report, comp.component, bytes_total=comp.bytes_total)


def check_present(board: StateBoard, report: LoadReport, files: ModelFiles) -> None:
    """Every expected file exists and is whole (pure Python, milliseconds)."""
    problems = check_files(files)
    if problems:
        fail_missing(board, report, files, problems)


def check_recognised(board: StateBoard, report: LoadReport, files: ModelFiles) -> None:
    """diffsynth recognises every file by its key hash (imports diffsynth)."""
    from backend.engine.detect import recognise

    problems = recognise(files)
    if problems:
        fail_missing(board, report, files, problems)


def fail_missing(
    board: StateBoard, report: LoadReport, files: ModelFiles, problems: list[FileProblem]
) -> NoReturn:
    message = describe_problems(files, problems)
    for comp in files.components:
        reasons = [p.reason for p in problems if p.path in comp.expected]
        if reasons:
            error = "; ".join(dict.fromkeys(reasons))
            board.set_component(report, comp.component, state=LoadState.FAILED, error=error)
    shown = [p.describe(files.models_dir) for p in problems]
    raise ModelFilesMissing(message, files="\n".join(shown), command="majicbot download")
