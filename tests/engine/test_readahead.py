"""The read-ahead counts every byte of a component's files, in order, and stops when asked."""

from __future__ import annotations

import threading
from pathlib import Path

from backend.engine.readahead import ReadAhead


def test_counts_every_byte_of_every_file_monotonically(tmp_path: Path) -> None:
    sizes = [3 * 1000 + 7, 0, 5 * 1000]
    paths = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"shard-{index}.safetensors"
        path.write_bytes(bytes(index + 1 for _ in range(size)))
        paths.append(path)
    seen: list[int] = []
    done = threading.Event()

    def on_bytes(count: int) -> None:
        seen.append(count)
        if count == sum(sizes):
            done.set()

    with ReadAhead(paths, on_bytes, interval_s=0.0, chunk_bytes=1000):
        assert done.wait(10)
    assert seen == sorted(seen)
    assert seen[-1] == sum(sizes)
    assert len(seen) > len(sizes)  # reported along the way, not only at the end


def test_missing_file_is_skipped_and_exit_stops_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.safetensors"
    big.write_bytes(b"\0" * (4 << 20))
    seen: list[int] = []
    with ReadAhead([tmp_path / "absent.safetensors", big], seen.append, chunk_bytes=1 << 20):
        pass
    assert all(count <= 4 << 20 for count in seen)
