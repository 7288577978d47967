"""The loopback status endpoint round-trips the snapshot exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.domain import (
    CLI_REQUESTER,
    ComponentState,
    EngineState,
    LoadState,
    Platform,
    Requester,
    RunningJob,
    StatusSnapshot,
)
from backend.status_server import NotRunning, fetch_status, serve_status

SNAPSHOT = StatusSnapshot(
    engines=(
        EngineState(
            device="cuda:0",
            device_name="NVIDIA H100 80GB HBM3",
            profile="balanced",
            profile_reason="12.0 GiB free: gpu-fp8 needs 25.2 GiB",
            components=(
                ComponentState("clip", LoadState.READY, 246, 246, 0.4, "cpu", "bfloat16"),
                ComponentState(
                    "dit", LoadState.LOADING, 5_000, 11_900, 2.5, "cpu", "float8_e4m3fn"
                ),
            ),
            vram_used_bytes=3 << 30,
            vram_total_bytes=80 << 30,
        ),
    ),
    queue_length=2,
    running=(RunningJob("j1", "cuda:0", 3, 28, Requester(Platform.DISCORD, "7", "ann")),),
    done_last_hour=5,
    failed_last_hour=1,
    mean_s_per_image_last_hour=6.5,
    uptime_s=120.0,
    process_rss_bytes=1 << 30,
    accepting=True,
    versions=(("python", "3.11.7"), ("majicbot", "0.1.0")),
)


async def test_status_round_trips_through_http() -> None:
    asked: list[Requester] = []

    async def snapshot(requester: Requester) -> StatusSnapshot:
        asked.append(requester)
        return SNAPSHOT

    async with serve_status("127.0.0.1", 0, snapshot) as port:
        assert await fetch_status("127.0.0.1", port) == SNAPSHOT
    assert asked == [CLI_REQUESTER]


async def test_fetch_without_a_server_raises_not_running(tmp_path: Path) -> None:
    async def snapshot(_: Requester) -> StatusSnapshot:
        return SNAPSHOT

    async with serve_status("127.0.0.1", 0, snapshot) as port:
        pass  # closed again: nothing listens on that port now
    with pytest.raises(NotRunning, match=f"127.0.0.1:{port}"):
        await fetch_status("127.0.0.1", port)
