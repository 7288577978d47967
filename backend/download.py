"""``majicbot download [--check]``: fetch exactly the files the configured model needs; verify.

Fetching uses ModelScope's ``snapshot_download`` with allow patterns into the ModelScope layout
under ``engine.models_dir`` (ModelScope shows progress and resumes partial files). Checking reads
each safetensors header (presence, size against the header, header sanity) and then asks diffsynth
whether it recognises each file (its md5 over keys and shapes against ``MODEL_CONFIGS``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from backend.config import Config
from backend.engine.files import FileProblem, ModelFiles, check_files, model_files, shown_path

# (repository id, local folder, allow patterns) → files on disk; tests pass a plain function.
Fetch = Callable[[str, Path, tuple[str, ...]], None]


def run_download(
    config: Config, *, check_only: bool, out: TextIO, fetch: Fetch | None = None
) -> int:
    """Download (unless ``check_only``) then verify; exit code 0 when every file is usable."""
    files = model_files(config)
    if not check_only:
        try:
            _download(files, out, fetch or modelscope_fetch)
            download_classifier(config, out, fetch or modelscope_fetch)  # issue 16
        except Exception as exc:  # network, disk, auth: report it, never a traceback
            out.write(f"download failed: {exc}\n")
            return 1
        files = model_files(config)
    status = _check(files, out)
    return max(status, check_classifier_files(config, out))  # issue 16


def modelscope_fetch(repo: str, folder: Path, patterns: tuple[str, ...]) -> None:
    """ModelScope's snapshot_download into ``folder`` (progress bars and resume are its own)."""
    from modelscope import snapshot_download

    snapshot_download(repo, local_dir=str(folder), allow_patterns=list(patterns))


def _download(files: ModelFiles, out: TextIO, fetch: Fetch) -> None:
    for repo, patterns in files.download_patterns().items():
        folder = files.models_dir / repo
        out.write(f"fetching {repo} ({', '.join(patterns)}) into {folder}\n")
        out.flush()
        fetch(repo, folder, patterns)
    dit = next(c for c in files.components if c.component.value == "dit")
    if not dit.repo:
        out.write(f"engine.dit_path is set: {dit.expected[0]} is yours to provide\n")


def _check(files: ModelFiles, out: TextIO) -> int:
    from backend.engine.detect import recognise

    out.write(f"checking model files under {files.models_dir}\n")
    problems = check_files(files)
    problems += recognise(files, skip={p.path for p in problems})
    bad = {p.path: p for p in problems}
    for path in _all_paths(files):
        problem = bad.pop(path, None)
        out.write(_line(files, path, problem))
    for problem in bad.values():  # e.g. a shard named by the index but not on disk
        out.write(_line(files, problem.path, problem))
    if problems:
        out.write(f"{len(problems)} problem(s); fetch the files with `majicbot download`\n")
        return 1
    out.write("all model files present and recognised\n")
    return 0


# ---- the image safety classifier (issue 16; backend.content.classifier) -----------------------


def download_classifier(config: Config, out: TextIO, fetch: Fetch) -> None:
    """Fetch the safety classifier from ModelScope, when the check is on and no folder is set."""
    from backend.content.classifier import DOWNLOAD_PATTERNS, classifier_folder

    content = config.content
    if not content.image_check:
        return
    folder = classifier_folder(config)
    if content.classifier_path:
        out.write(f"content.classifier_path is set: {folder} is yours to provide\n")
        return
    out.write(f"fetching {content.classifier_model} (the image safety check) into {folder}\n")
    out.flush()
    fetch(content.classifier_model, folder, DOWNLOAD_PATTERNS)


def check_classifier_files(config: Config, out: TextIO) -> int:
    """Check the safety classifier's files (no torch); 0 when usable or the check is off."""
    from backend.content.classifier import check_classifier, classifier_folder

    if not config.content.image_check:
        return 0
    folder = classifier_folder(config)
    out.write(f"checking the image safety classifier in {folder}\n")
    problems = check_classifier(folder, config.content.flagged_labels)
    for problem in problems:
        out.write(f"  FAIL {problem.describe(folder)}\n")
    if problems:
        out.write("the image safety check cannot run; fetch it with `majicbot download`\n")
        return 1
    out.write("  ok   classifier files present\n")
    return 0


def _all_paths(files: ModelFiles) -> list[Path]:
    paths = [p for comp in files.components for p in comp.expected]
    return [*paths, files.tokenizer_1, files.tokenizer_2]


def _line(files: ModelFiles, path: Path, problem: FileProblem | None) -> str:
    shown = shown_path(path, files.models_dir)
    if problem is not None:
        return f"  FAIL {shown}: {problem.reason}\n"
    size = f"{path.stat().st_size / 1e6:,.1f} MB" if path.is_file() else "folder"
    return f"  ok   {shown} ({size})\n"
