"""One process per data directory, and a data directory that can actually hold the data.

``hold_instance`` runs before anything touches the store: it checks that ``storage.data_dir`` is
(or can be made) a writable folder, that its image folder takes a file, then takes an exclusive
``fcntl.flock`` on ``<data_dir>/majicbot.lock`` and writes who holds it (pid, start time,
command). The kernel releases the lock when the process dies, however it dies (kill -9
included), so a stale file never blocks a restart. A second ``serve`` (or ``majicbot imagine``)
on the same data gets ``InstanceLocked`` naming the holder, and never opens the store behind the
running instance's back. Every refusal is a ``StartupError`` sentence naming the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from backend.errors import InstanceLocked, StartupError

LOCK_NAME = "majicbot.lock"


@contextlib.contextmanager
def hold_instance(data_dir: Path, outputs_dir: Path) -> Iterator[None]:
    """Check the folders, then hold the data directory's lock for the block."""
    _ensure_folder(data_dir, "storage.data_dir")
    fd = _open_lock(data_dir / LOCK_NAME)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise InstanceLocked(
                f"another majicbot is already running on {data_dir} ({holder}); stop it first, "
                f"or give this one its own storage.data_dir (`majicbot status` asks the running "
                f"one)"
            ) from None
        _write_holder(fd)
        _ensure_folder(outputs_dir, "the image folder")
        _probe_write(outputs_dir)
        yield
    finally:
        os.close(fd)  # releases the lock


def _ensure_folder(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise StartupError(
            f"{what} {path} is a file, not a folder: point storage.data_dir at a folder "
            f"(it is created if missing)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create {what} {path}: {exc.strerror}; create it, writable by this user, "
            f"or point storage.data_dir elsewhere"
        ) from None


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _not_writable(path.parent, exc) from None


def _probe_write(folder: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        raise _not_writable(folder, exc) from None


def _not_writable(folder: Path, exc: OSError) -> StartupError:
    read_only = exc.errno == errno.EROFS
    why = "is on a read-only file system" if read_only else f"is not writable ({exc.strerror})"
    return StartupError(
        f"{folder} {why}: majicbot keeps its job database and images in storage.data_dir; "
        f"make it writable by this user (or remount it read-write), or point storage.data_dir "
        f"at a writable folder"
    )


def _write_holder(fd: int) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    command = " ".join(["majicbot", *sys.argv[1:]])[:200]
    text = f"pid {os.getpid()}, started {started}, `{command}`\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("utf-8", "replace"), 0)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"
