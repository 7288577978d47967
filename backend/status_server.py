"""Loopback HTTP endpoint that `majicbot status` reads: ``GET /status`` → the status snapshot.

Whoever can reach the loopback address owns the machine: the snapshot is asked for as
``CLI_REQUESTER``, an admin (``Service.status`` refuses everyone else).
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import ClientConnectionError, ClientSession, ClientTimeout, web

from backend.domain import CLI_REQUESTER, Requester, StatusSnapshot
from backend.errors import MajicbotError, StartupError
from backend.serialization import from_jsonable, to_jsonable

SnapshotSource = Callable[[Requester], Awaitable[StatusSnapshot]]  # ``Service.status``


class NotRunning(MajicbotError):
    """No majicbot instance answers on the status address."""


@asynccontextmanager
async def serve_status(host: str, port: int, snapshot: SnapshotSource) -> AsyncIterator[int]:
    """Serve ``/status`` on ``host:port`` while the block runs; yields the bound port."""

    async def handle(_: web.Request) -> web.Response:
        return web.json_response(to_jsonable(await snapshot(CLI_REQUESTER)))

    app = web.Application()
    app.router.add_get("/status", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise _bind_error(host, port, exc) from None
    try:
        server = site._server  # aiohttp keeps the asyncio server here; needed for port 0
        sockets = getattr(server, "sockets", None) or ()
        yield sockets[0].getsockname()[1] if sockets else port
    finally:
        await runner.cleanup()


def _bind_error(host: str, port: int, exc: OSError) -> StartupError:
    if isinstance(exc, socket.gaierror):
        return StartupError(
            f"service.status_host = {host!r} cannot be resolved ({exc.strerror}): use an address "
            f"such as 127.0.0.1"
        )
    if exc.errno == errno.EADDRINUSE:
        return StartupError(
            f"the status endpoint cannot listen on {host}:{port}: the port is in use (another "
            f"majicbot or another program): set service.status_port to a free port, or 0 for any"
        )
    return StartupError(
        f"the status endpoint cannot listen on {host}:{port} ({exc.strerror}): check "
        f"service.status_host and service.status_port"
    )


async def fetch_status(host: str, port: int, timeout_s: float = 5.0) -> StatusSnapshot:
    """Ask a running instance for its snapshot; raises ``NotRunning`` if none answers."""
    url = f"http://{host}:{port}/status"
    try:
        async with (
            ClientSession(timeout=ClientTimeout(total=timeout_s)) as session,
            session.get(url) as response,
        ):
            response.raise_for_status()
            data = json.loads(await response.text())
    except (ClientConnectionError, TimeoutError) as exc:
        raise NotRunning(f"no majicbot instance answers on {host}:{port} ({exc})") from None
    return from_jsonable(StatusSnapshot, data)
