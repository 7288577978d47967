"""A small local Discord (REST + gateway websocket) for one real-transport discord.py test.

Just enough for a bot to log in, connect, receive ``INTERACTION_CREATE`` and answer it through
the interaction callback and webhook endpoints. Point discord.py at it with :func:`pointed_at`.
Every REST call is recorded in ``calls`` (JSON body, or ``payload_json`` plus file names for
multipart requests). JSON responses carry exactly ``Content-Type: application/json``: discord.py
misreads anything else.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import discord
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

APP_ID = 700000000000000001
BOT_USER = {"id": str(APP_ID), "username": "majicbot", "discriminator": "0", "avatar": None,
            "global_name": None, "bot": True, "flags": 0}  # fmt: skip
TIMESTAMP = "2026-01-01T00:00:00+00:00"


@dataclass
class Call:
    method: str
    path: str
    body: Any
    files: list[str] = field(default_factory=list)
    file_sizes: list[int] = field(default_factory=list)


class FakeDiscord:
    """The server; ``calls`` and ``changed`` let a test wait for what the bot did."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.changed = asyncio.Condition()
        self._ids = itertools.count(800000000000000000)
        self._sockets: list[web.WebSocketResponse] = []
        self.identified = asyncio.Event()
        self.port = 0

    def snowflake(self) -> str:
        return str(next(self._ids))

    # ---- recording -------------------------------------------------------------------------

    async def _record(self, call: Call) -> None:
        async with self.changed:
            self.calls.append(call)
            self.changed.notify_all()

    async def wait_for_call(self, method: str, path_part: str, *, with_file: bool = False) -> Call:
        """Wait for a call of ``method`` whose path contains ``path_part`` (and uploads a file)."""

        def found() -> Call | None:
            for call in self.calls:
                if (
                    call.method == method
                    and path_part in call.path
                    and (call.files or not with_file)
                ):
                    return call
            return None

        async with self.changed:
            await self.changed.wait_for(lambda: found() is not None)
        call = found()
        assert call is not None
        return call

    # ---- HTTP ---------------------------------------------------------------------------------

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(
            body=json.dumps(data).encode(), status=status,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip

    async def _body(self, request: web.Request) -> tuple[Any, list[str], list[int]]:
        if not request.content_type.startswith("multipart/"):
            return (await request.json() if request.can_read_body else None), [], []
        body: Any = None
        names: list[str] = []
        sizes: list[int] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):  # pragma: no cover - nested multipart
                continue
            data = await part.read()
            if part.name == "payload_json":
                body = json.loads(data)
            else:
                names.append(part.filename or "")
                sizes.append(len(data))
        return body, names, sizes

    async def _handle(self, request: web.Request) -> web.Response:
        body, files, sizes = await self._body(request)
        path = request.path.removeprefix("/api/v10")
        await self._record(Call(request.method, path, body, files, sizes))
        return self._json(self._answer(request.method, path, body))

    def _answer(self, method: str, path: str, body: Any) -> Any:
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return BOT_USER
        if path == "/oauth2/applications/@me":
            return {"id": str(APP_ID), "name": "majicbot", "description": "", "icon": None,
                    "bot_public": True, "bot_require_code_grant": False, "owner": BOT_USER,
                    "team": None, "verify_key": "0" * 64, "flags": 0}  # fmt: skip
        if method == "PUT" and parts[-1] == "commands":
            return [{**c, "id": self.snowflake(), "application_id": str(APP_ID), "version": "1"}
                    for c in body]  # fmt: skip
        if parts[0] == "interactions":
            return {"interaction": {"id": parts[1], "type": 2,
                                    "response_message_id": self.snowflake(),
                                    "response_message_loading": True}}  # fmt: skip
        return self._message(body or {})

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.snowflake(), "channel_id": "1", "author": BOT_USER,
            "content": body.get("content") or "", "timestamp": TIMESTAMP,
            "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
            "mention_roles": [], "attachments": [], "embeds": body.get("embeds") or [],
            "pinned": False, "type": 0, "flags": 0, "components": body.get("components") or [],
            "webhook_id": str(APP_ID), "application_id": str(APP_ID),
        }  # fmt: skip

    # ---- gateway -----------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"op": 10, "d": {"heartbeat_interval": 45000}})
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                break
            await self._on_gateway_message(socket, json.loads(message.data))
        return socket

    async def _on_gateway_message(self, socket: web.WebSocketResponse, data: Any) -> None:
        if data["op"] == 1:
            await socket.send_json({"op": 11})
        elif data["op"] == 2:
            ready = {"v": 10, "user": BOT_USER, "guilds": [], "session_id": "s1",
                     "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                     "application": {"id": str(APP_ID), "flags": 0}}  # fmt: skip
            await socket.send_json({"op": 0, "t": "READY", "s": 1, "d": ready})
            self.identified.set()

    async def dispatch(self, event: str, payload: dict[str, Any]) -> None:
        """Send one gateway event to every connected bot."""
        for socket in self._sockets:
            await socket.send_json({"op": 0, "t": event, "s": 2, "d": payload})

    # ---- lifecycle ---------------------------------------------------------------------------

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeDiscord]:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield self
        finally:
            for socket in self._sockets:
                await socket.close()
            await runner.cleanup()


@contextmanager
def pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """discord.py's REST base and gateway URL pointed at ``fake`` for the duration."""
    route_base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = f"http://127.0.0.1:{fake.port}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        f"ws://127.0.0.1:{fake.port}/gateway"
    )
    try:
        yield
    finally:
        discord.http.Route.BASE = route_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


def slash_interaction(
    name: str, options: list[dict[str, Any]], *, guild_id: str, channel_id: str,
    locale: str = "en-US", attachment_size_limit: int = 10 * 1024 * 1024,
) -> dict[str, Any]:  # fmt: skip
    """An ``INTERACTION_CREATE`` payload for a slash command by an ordinary member."""
    interaction_id = "900000000000000001"
    user = {"id": "600000000000000001", "username": "alice", "discriminator": "0",
            "avatar": None, "global_name": "Alice"}  # fmt: skip
    return {
        "id": interaction_id, "application_id": str(APP_ID), "type": 2,
        "token": f"token-{interaction_id}", "version": 1,
        "data": {"id": "1", "name": name, "type": 1, "options": options},
        "guild_id": guild_id, "channel_id": channel_id,
        "channel": {"id": channel_id, "type": 0, "guild_id": guild_id, "name": "art",
                    "position": 0, "permission_overwrites": [], "nsfw": False,
                    "parent_id": None},
        "member": {"user": user, "roles": [], "joined_at": TIMESTAMP, "deaf": False,
                   "mute": False, "flags": 0, "permissions": "2048"},
        "locale": locale, "guild_locale": "en-US", "app_permissions": "2048",
        "entitlements": [], "authorizing_integration_owners": {}, "context": 0,
        "attachment_size_limit": attachment_size_limit,
    }  # fmt: skip
