"""HTTP endpoint that `majicbot status` reads: ``GET /status`` → the status snapshot.

Who may read what:
- **Bind**: loopback (``127.0.0.1``, ``::1``, ``localhost``) by default. Any other address is
  refused at start (``ConfigError``: ``majicbot serve`` exits 2) unless ``service.status_token``
  (env ``MAJICBOT_STATUS_TOKEN``) is set; then every request must carry
  ``Authorization: Bearer <token>``.
- **Host header** (loopback binds): only the loopback names, with any port, are answered;
  anything else gets 421, so a web page cannot read the endpoint by pointing its own domain name
  at 127.0.0.1 (DNS rebinding). On a non-loopback bind the token is the guard (a browser page
  cannot send it), so any Host is answered once the token is right.
- **Detail**: without the token the snapshot shows counts and states only — running jobs without
  job or user ids and names, engine errors without file paths. The token (when configured and
  sent) gives the whole snapshot, as ``Service.status`` returns it to an admin (``CLI_REQUESTER``).
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

from aiohttp import ClientConnectionError, ClientSession, ClientTimeout, web

from backend.domain import CLI_REQUESTER, EngineState, Requester, RunningJob, StatusSnapshot
from backend.errors import ConfigError, MajicbotError, StartupError
from backend.serialization import from_jsonable, to_jsonable

SnapshotSource = Callable[[Requester], Awaitable[StatusSnapshot]]  # ``Service.status``

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][^\s/\\:'\"(),]+){2,}[/\\]?")
HIDDEN_PATH = "<path>"


class NotRunning(MajicbotError):
    """No majicbot instance answers on the status address."""


class StatusRefused(MajicbotError):
    """The instance answered but refused the request (token missing or wrong, foreign host)."""


def is_loopback(host: str) -> bool:
    """``host`` (a name or an address) stays on this machine."""
    if host.strip("[]").lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse a non-loopback bind without a token (``ConfigError`` names the keys)."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"service.status_host = {host!r} is reachable from other machines: set a bearer "
            "token in the environment variable MAJICBOT_STATUS_TOKEN (service.status_token), "
            'or bind to "127.0.0.1"'
        )


def host_allowed(header: str | None, bind_host: str) -> bool:
    """The ``Host`` header names a loopback name or the bind address (any port)."""
    if not header:
        return False
    name = header.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in LOOPBACK_NAMES or name == bind_host.strip("[]").lower()


def bearer(header: str | None) -> str:
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def summary(snapshot: StatusSnapshot) -> StatusSnapshot:
    """The snapshot without who (ids, names) and without file paths: counts and states."""
    return replace(
        snapshot,
        engines=tuple(_engine_summary(engine) for engine in snapshot.engines),
        running=tuple(_running_summary(job) for job in snapshot.running),
    )


HIDDEN_NODE = "<host>"


def _engine_summary(engine: EngineState) -> EngineState:
    components = tuple(
        replace(c, error=_hide_paths(c.error) if c.error else c.error) for c in engine.components
    )
    error = _hide_paths(engine.error) if engine.error else engine.error
    reason = _hide_paths(engine.profile_reason)
    node = HIDDEN_NODE if engine.node else ""  # a Ray actor's host name and address
    return replace(engine, components=components, error=error, profile_reason=reason, node=node)


def _running_summary(job: RunningJob) -> RunningJob:
    return replace(job, job_id="", requester=Requester(job.requester.platform, user_id=""))


def _hide_paths(text: str) -> str:
    return _PATH.sub(HIDDEN_PATH, text)


def status_app(host: str, token: str, snapshot: SnapshotSource) -> web.Application:
    """The aiohttp application: Host check, token check, then the (summarised) snapshot."""
    needs_token = not is_loopback(host)

    async def handle(request: web.Request) -> web.Response:
        if not needs_token and not host_allowed(request.headers.get("Host"), host):
            return web.json_response({"error": "unknown host"}, status=421)
        sent = bearer(request.headers.get("Authorization"))
        authorised = bool(token) and hmac.compare_digest(sent.encode(), token.encode())
        if (needs_token or sent) and not authorised:
            return web.json_response(
                {"error": "a valid bearer token is needed"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        full = await snapshot(CLI_REQUESTER)
        return web.json_response(to_jsonable(full if authorised else summary(full)))

    app = web.Application()
    app.router.add_get("/status", handle)
    return app


@asynccontextmanager
async def serve_status(
    host: str, port: int, snapshot: SnapshotSource, token: str = ""
) -> AsyncIterator[int]:
    """Serve ``/status`` on ``host:port`` while the block runs; yields the bound port.

    Raises ``ConfigError`` before binding when ``host`` is not loopback and ``token`` is empty.
    """
    check_bind(host, token)
    runner = web.AppRunner(status_app(host, token, snapshot), access_log=None)
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


async def fetch_status(
    host: str, port: int, timeout_s: float = 5.0, token: str = ""
) -> StatusSnapshot:
    """Ask a running instance for its snapshot (the whole one with ``token``).

    Raises ``NotRunning`` if none answers, ``StatusRefused`` if it refuses.
    """
    url = f"http://{_url_host(host)}:{port}/status"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            ClientSession(timeout=ClientTimeout(total=timeout_s)) as session,
            session.get(url, headers=headers) as response,
        ):
            body = await response.text()
    except (ClientConnectionError, TimeoutError) as exc:
        raise NotRunning(f"no majicbot instance answers on {host}:{port} ({exc})") from None
    if response.status != 200:
        raise StatusRefused(f"{host}:{port} refused the request (HTTP {response.status}): {body}")
    return from_jsonable(StatusSnapshot, json.loads(body))


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # a wildcard bind is reached through loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
