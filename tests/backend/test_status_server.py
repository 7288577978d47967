"""The status endpoint: the whole snapshot with the token, counts and states without it; foreign
``Host`` headers and tokenless non-loopback binds refused."""

from __future__ import annotations

from pathlib import Path

import aiohttp
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
from backend.errors import ConfigError
from backend.status_server import (
    NotRunning,
    StatusRefused,
    fetch_status,
    host_allowed,
    serve_status,
    summary,
)

TOKEN = "s3cret-status-token"

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
        EngineState(
            device="ray-2 (GPU 1)",
            error="model files missing: /home/ann/majicbot/models/flux/ae.safetensors (run "
            "`majicbot download`)",
            node="gpu-box-2 10.0.0.7",
            restarts=1,
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


async def test_status_round_trips_through_http_with_the_token() -> None:
    asked: list[Requester] = []

    async def snapshot(requester: Requester) -> StatusSnapshot:
        asked.append(requester)
        return SNAPSHOT

    async with serve_status("127.0.0.1", 0, snapshot, TOKEN) as port:
        assert await fetch_status("127.0.0.1", port, token=TOKEN) == SNAPSHOT
        assert await fetch_status("localhost", port, token=TOKEN) == SNAPSHOT
    assert asked == [CLI_REQUESTER, CLI_REQUESTER]


async def test_without_the_token_only_counts_and_states_are_shown() -> None:
    async def snapshot(_: Requester) -> StatusSnapshot:
        return SNAPSHOT

    async with serve_status("127.0.0.1", 0, snapshot, TOKEN) as port:
        shown = await fetch_status("127.0.0.1", port)
        with pytest.raises(StatusRefused, match="HTTP 401"):
            await fetch_status("127.0.0.1", port, token="wrong-token")
    async with serve_status("127.0.0.1", 0, snapshot) as port:  # no token configured
        assert await fetch_status("127.0.0.1", port) == shown
    assert shown == summary(SNAPSHOT)
    (running,) = shown.running
    assert running == RunningJob("", "cuda:0", 3, 28, Requester(Platform.DISCORD, ""))
    assert shown.engines[1].error == "model files missing: <path> (run `majicbot download`)"
    assert (shown.engines[1].node, shown.engines[1].restarts) == ("<host>", 1)
    assert (shown.queue_length, shown.done_last_hour, shown.engines[0]) == (
        2,
        5,
        SNAPSHOT.engines[0],
    )


async def test_a_foreign_host_header_is_refused() -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not read /status."""

    async def snapshot(_: Requester) -> StatusSnapshot:
        return SNAPSHOT

    async with (
        serve_status("127.0.0.1", 0, snapshot, TOKEN) as port,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{port}/status"
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
            async with session.get(url, headers={"Host": host}) as response:
                assert response.status == 421, host
                assert "running" not in await response.text()
        async with session.get(url, headers={"Host": f"localhost:{port}"}) as response:
            assert response.status == 200
    assert [host_allowed(h, "127.0.0.1") for h in ("[::1]:80", "LOCALHOST", "", "a:b:c")] == [
        True,
        True,
        False,
        False,
    ]


async def test_a_non_loopback_bind_needs_a_token_and_every_request_carries_it() -> None:
    async def snapshot(_: Requester) -> StatusSnapshot:
        return SNAPSHOT

    with pytest.raises(ConfigError, match="MAJICBOT_STATUS_TOKEN"):
        async with serve_status("0.0.0.0", 0, snapshot):
            pytest.fail("bound without a token")
    async with serve_status("0.0.0.0", 0, snapshot, TOKEN) as port:
        with pytest.raises(StatusRefused, match="HTTP 401"):
            await fetch_status("0.0.0.0", port)
        assert await fetch_status("0.0.0.0", port, token=TOKEN) == SNAPSHOT


async def test_fetch_without_a_server_raises_not_running(tmp_path: Path) -> None:
    async def snapshot(_: Requester) -> StatusSnapshot:
        return SNAPSHOT

    async with serve_status("127.0.0.1", 0, snapshot) as port:
        pass  # closed again: nothing listens on that port now
    with pytest.raises(NotRunning, match=f"127.0.0.1:{port}"):
        await fetch_status("127.0.0.1", port)
