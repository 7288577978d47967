"""The fault suite: a real ``majicbot serve`` (Telegram adapter against the fake Bot API, a fast
fake engine: ``tests.faults.serve_fake``) killed with SIGKILL at random points, a second
instance, a hung engine, and every start-up and configuration mistake that must be a sentence.

Seeded (``SEED``); the figures of a run are printed (``pytest -s``) and, with
``MAJICBOT_FAULT_REPORT=<path>``, written as JSON. RELIABILITY.md quotes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.store import Store
from bots.cli import EXIT_USAGE, main
from tests.fakes.telegram_server import FakeTelegram, TgUser
from tests.test_serve import Process

pytestmark = pytest.mark.slow

SEED = 20261130
KILL_CYCLES = 12
COMMANDS_PER_CYCLE = 2
REPO_ROOT = Path(__file__).resolve().parents[1]
MAJICBOT = str(Path(sys.executable).with_name("majicbot"))


def write_config(path: Path, data_dir: Path, api: FakeTelegram | None, **extra: str) -> Path:
    telegram = (
        f'[telegram]\nenabled = true\nbase_url = "{api.base_url}"\n'
        f'base_file_url = "{api.base_file_url}"\n'
        if api is not None
        else ""
    )
    limits = extra.pop("limits", "")
    path.write_text(
        f"""
[engine]
devices = ["cpu"]
[storage]
data_dir = "{data_dir}"
[limits]
default_side = 64
min_side = 64
max_side = 256
default_steps = 6
per_user_queue = 100
{limits}
{telegram}
[service]
status_port = {extra.pop("status_port", "0")}
stop_grace_s = 0
""",
        encoding="utf-8",
    )
    return path


async def start(config: Path, *args: str, token: str = "", **env: str) -> Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.faults.serve_fake", "--config", str(config), *args,
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TELEGRAM_BOT_TOKEN": token, **env},
    )  # fmt: skip
    return Process(proc)


async def finished(process: Process, timeout_s: float = 60.0) -> int:
    """Its exit status once it exits by itself (and its log read to the end)."""
    await asyncio.wait_for(process.proc.wait(), timeout_s)
    return await process.stop()


async def kill(process: Process) -> None:
    if process.proc.returncode is None:
        process.proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(process.proc.wait(), 30)
    process._reader.cancel()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """In-process ``main`` points the root logger at capsys's stream, closed after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


# ---- kill -9 cycles ------------------------------------------------------------------------------


async def test_kill_9_at_random_points_loses_nothing_and_doubles_at_most_one_per_kill(
    api: FakeTelegram, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "config.toml", data_dir, api)
    users: list[TgUser] = []
    points = ["start-up", "submit", "generation", "upload"] * (KILL_CYCLES // 4)
    rng.shuffle(points)  # each point as often, in a seeded order, at seeded moments
    for cycle, point in enumerate(points):
        serve = await start(config, "serve", token=api.token)
        try:
            if point == "start-up":
                await asyncio.sleep(rng.uniform(0.05, 1.0))
                continue
            await serve.wait_for_line("majicbot is up")
            for n in range(COMMANDS_PER_CYCLE):
                user = TgUser(1000 + len(users), f"u{cycle}-{n}")
                users.append(user)
                api.user_sends(f"/imagine a fox number {len(users)}", user=user)
            await _reach(point, serve, api, users[-1], rng)
        finally:
            await kill(serve)
    serve = await start(config, "serve", token=api.token)
    try:
        await serve.wait_for_line("majicbot is up")
        await api.wait_until(lambda: _all_settled(data_dir, len(users)) or None, timeout_s=60)
    finally:
        code = await serve.stop()
    assert code == 0, "".join(serve.lines)

    jobs = _jobs_by_user(data_dir)
    photos = {u.id: len(api.photos_sent_to(u.id)) for u in users}
    told = {u.id: _told(api, u.id) for u in users}
    kills = len(points)
    figures: dict[str, Any] = {
        "seed": SEED,
        "kill_cycles": kills,
        "kill_points": {p: points.count(p) for p in sorted(set(points))},
        "commands_acknowledged": sum(1 for u in users if api.sent_to(u.id)),
        "commands": len(users),
        "jobs_stored": len(jobs),
        "delivered_image": sum(1 for n in photos.values() if n),
        "failed_with_notice": sum(1 for u in users if not photos[u.id] and told[u.id]),
        "lost": sum(1 for u in users if not photos[u.id] and not told[u.id]),
        "duplicate_photos": sum(n - 1 for n in photos.values() if n > 1),
    }
    _report("kill_cycles", figures)
    assert figures["lost"] == 0, (photos, jobs)
    assert figures["jobs_stored"] == len(users)  # a re-delivered update is never a second job
    assert figures["duplicate_photos"] <= kills
    for user in users:  # each duplicate is an upload a kill interrupted, resent once at most
        assert photos[user.id] <= jobs[str(user.id)][1], (user, photos, jobs)
    _assert_store_sound(data_dir)


async def _reach(
    point: str, serve: Process, api: FakeTelegram, last: TgUser, rng: random.Random
) -> None:
    """Wait for the kill point of this cycle (the caller kills)."""
    if point == "submit":
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # handling, storing, the status message
    elif point == "generation":
        await serve.wait_for_line(" started on ")
    else:  # upload: the photo reaches Telegram, its answer never reaches the bot
        api.delay("sendPhoto", 30.0, times=None, where=lambda c: c.chat_id == last.id)
        try:
            await api.wait_for("sendPhoto", lambda c: c.chat_id == last.id, timeout_s=30)
        finally:
            api.clear_failures()


def _jobs_by_user(data_dir: Path) -> dict[str, tuple[str, int]]:
    """user id → (status, uploads begun)."""
    with sqlite3.connect(data_dir / "majicbot.sqlite3") as db:
        rows = db.execute("SELECT user_id, status, delivery_starts FROM jobs").fetchall()
    return {user: (status, starts) for user, status, starts in rows}


def _all_settled(data_dir: Path, expected: int) -> bool:
    with sqlite3.connect(data_dir / "majicbot.sqlite3") as db:
        (done,) = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE delivered_at IS NOT NULL AND status NOT IN "
            "('queued', 'running')"
        ).fetchone()
    return int(done) == expected


def _told(api: FakeTelegram, chat_id: int) -> bool:
    """A failure notice, or the hint that /history has the image (an upload left uncertain)."""
    texts = [c.text or "" for c in api.calls if c.chat_id == chat_id and c.ok]
    return any("/history" in t or "the image failed" in t for t in texts)


def _assert_store_sound(data_dir: Path) -> None:
    with sqlite3.connect(data_dir / "majicbot.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        paths = {Path(r[0]) for r in db.execute("SELECT result_path FROM jobs") if r[0]}
        unfinished = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') "
            "OR delivered_at IS NULL"
        ).fetchone()[0]
    files = {p for p in (data_dir / "outputs").rglob("*") if p.is_file()}
    assert files == paths  # no orphan PNG, no temporary file left, none missing
    assert unfinished == 0


def _report(name: str, figures: dict[str, Any]) -> None:
    print(f"\nfault suite, {name}: {json.dumps(figures)}")
    target = os.environ.get("MAJICBOT_FAULT_REPORT")
    if target:
        path = Path(target)
        report = json.loads(path.read_text()) if path.exists() else {}
        report[name] = figures
        path.write_text(json.dumps(report, indent=2))


# ---- one instance per data directory ----------------------------------------------------------


async def test_a_second_serve_and_imagine_beside_it_are_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "config.toml", data_dir, None)
    first = await start(config, "serve", "--backend-only")
    try:
        await first.wait_for_line("majicbot is up")
        second = await start(config, "serve", "--backend-only")
        imagine = await start(config, "imagine", "a fox")
        codes = [await finished(second), await finished(imagine)]
        alive = first.proc.returncode is None
    finally:
        assert await first.stop() == 0
    assert codes == [EXIT_USAGE, EXIT_USAGE]
    assert alive
    for refused in (second, imagine):
        text = "".join(refused.lines)
        assert "another majicbot is already running" in text
        assert f"pid {first.proc.pid}" in text
        assert "Traceback" not in text


# ---- the stall watchdog --------------------------------------------------------------------------


async def test_a_hung_engine_exits_non_zero_and_the_job_runs_after_the_restart(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "config.toml", data_dir, None, limits="stall_timeout_s = 0.5")
    env = {"MAJICBOT_FAKE_HANG_ONCE": str(tmp_path / "hung-once")}
    cli = await start(config, "imagine", "a fox", **env)
    code = await finished(cli)
    assert code == 1, "".join(cli.lines)
    assert "the engine is stuck" in "".join(cli.lines)
    async with Store.open(data_dir / "majicbot.sqlite3") as store:
        (job,) = await store.history()
    assert (job.status.value, job.attempts) == ("queued", 1)

    serve = await start(config, "serve", "--backend-only", **env)  # the supervisor's restart
    try:
        await serve.wait_for_line(f"job {job.id} succeeded")
    finally:
        assert await serve.stop() == 0


async def test_serve_exits_non_zero_when_its_engine_hangs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "config.toml", data_dir, None, limits="stall_timeout_s = 0.5")
    async with Store.open(data_dir / "majicbot.sqlite3") as store:
        from tests.backend.test_sigkill_restart import queued_job

        await store.insert_job(queued_job("hangs0001", 6, "a"))
    env = {"MAJICBOT_FAKE_HANG_ONCE": str(tmp_path / "hung-once")}
    serve = await start(config, "serve", "--backend-only", **env)
    code = await finished(serve)
    log = "".join(serve.lines)
    assert code == 1, log
    assert "is stuck" in log and "exiting for a restart" in log


# ---- start-up and configuration mistakes: a sentence and exit status 2 ------------------------


BAD_CONFIGS = {
    "nan margin": "[engine]\nvram_margin_gb = nan\n",
    "nan grace": "[service]\nstop_grace_s = nan\n",
    "no devices": "[engine]\ndevices = []\n",
    "no aspect ratios": "[limits]\naspect_ratios = []\n",
    "ratio too wide": '[limits]\nmax_side = 256\ndefault_side = 64\naspect_ratios = ["9999:1"]\n',
    "default side over max": "[limits]\ndefault_side = 2048\nmax_side = 1024\n",
    "max pixels under min side": "[limits]\nmax_pixels = 60000\n",
    "username as admin": '[telegram]\nadmins = ["@ada"]\n',
    "open status host": '[service]\nstatus_host = "0.0.0.0"\n',
}


@pytest.mark.parametrize("text", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_configs_exit_2_with_a_sentence(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    assert main(["--config", str(config), "serve", "--backend-only"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("majicbot: configuration error: ") and "Traceback" not in err


def test_data_dir_that_is_a_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.write_text("")
    config = write_config(tmp_path / "config.toml", data, None)
    assert main(["--config", str(config), "serve", "--backend-only"]) == EXIT_USAGE
    assert f"{data} is a file, not a folder" in capsys.readouterr().err


def test_status_port_in_use_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "c.toml", tmp_path / "data", None, status_port=str(port))
        assert main(["--config", str(config), "serve", "--backend-only"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}: the port is in use" in err and "Traceback" not in err


def test_unresolvable_status_host_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAJICBOT_STATUS_TOKEN", "t0ken")
    config = write_config(tmp_path / "c.toml", tmp_path / "data", None)
    text = config.read_text().replace(
        "[service]", '[service]\nstatus_host = "no-such-host.invalid"'
    )
    config.write_text(text)
    assert main(["--config", str(config), "serve", "--backend-only"]) == EXIT_USAGE
    assert "service.status_host = 'no-such-host.invalid' cannot be resolved" in (
        capsys.readouterr().err
    )


def _read_only_mount_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _read_only_mount_works(), reason="needs unshare -rm (a read-only mount)")
@pytest.mark.parametrize("with_database", [False, True], ids=["empty", "existing database"])
async def test_read_only_data_dir_exits_2_at_start(tmp_path: Path, with_database: bool) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if with_database:
        async with Store.open(data_dir / "majicbot.sqlite3"):
            pass
    config = write_config(tmp_path / "config.toml", data_dir, None)
    mount_ro = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    proc = await asyncio.create_subprocess_exec(
        "unshare", "-rm", "sh", "-c", mount_ro, "sh", str(data_dir),
        sys.executable, "-m", "tests.faults.serve_fake", "--config", str(config),
        "serve", "--backend-only",
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == EXIT_USAGE, text
    assert f"{data_dir} is on a read-only file system" in text and "Traceback" not in text
