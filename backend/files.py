"""Private files: what majicbot writes about its users is readable by its own account only.

The data folder and every folder under it are 0700; the database, its WAL and shared-memory files
and the result images are 0600, whatever the umask. Deleting images happens in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) 0700; an existing one loses group/other access."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        with contextlib.suppress(OSError):  # a read-only mount: whoever opens it next says so
            path.chmod(mode & DIR_MODE)
    return path


def private_file(path: Path, *, create: bool) -> None:
    """Make ``path`` 0600, creating it empty first when ``create`` (a missing one is skipped).

    A file that cannot be created or changed (read-only) is left for its opener to refuse.
    """
    with contextlib.suppress(OSError):
        if create:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
        path.chmod(FILE_MODE)


def open_private(path: Path) -> int:
    """A new file descriptor for writing ``path`` (which must not exist), mode 0600."""
    return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)


def unlink_all_sync(paths: Iterable[Path]) -> None:
    """Delete each file; one already gone is fine."""
    for path in paths:
        path.unlink(missing_ok=True)


async def unlink_all(paths: Iterable[Path]) -> None:
    """``unlink_all_sync`` in a thread (file I/O stays off the event loop)."""
    await asyncio.to_thread(unlink_all_sync, list(paths))
