"""A local Discord (REST + gateway websocket) for driving the real discord.py over real HTTP.

    fake = FakeDiscord(initial_response_s=0.5)          # a short 3 s window for the test
    async with fake.serving():
        with pointed_at(fake):                           # Route.BASE and DEFAULT_GATEWAY
            ...start the bot...
            await fake.identified.wait()
            interaction = await fake.interact(fake.slash("imagine", {"prompt": "a cat"}))
            edit = await fake.wait_for("PATCH", "/webhooks/*/messages/@original")

The bot logs in, connects, receives ``INTERACTION_CREATE`` and answers through the interaction
callback and webhook endpoints (``@original`` GET/PATCH/DELETE, follow-ups) and channel
messages (JSON or multipart with files). Every REST call is recorded in ``calls`` with its body,
attachments (names, sizes), answer and times. The fake **enforces** what Discord does:

- content ≤ 2000, embed description ≤ 4096 (and the other embed/component limits): 400 50035;
- the initial response within ``initial_response_s`` (3 s) of the interaction, else
  404 10062 "Unknown interaction"; a second initial response: 400 40060;
- webhook calls with an expired token (``expire_token``, or older than ``token_lifetime_s``):
  401 50027; on a deleted original (``delete_original``): 404 10015;
- channel posts where the bot lacks permissions (``forbid_channel``): 403 50013.

Faults: ``fail`` (any status/code), ``rate_limit`` (429 with ``retry_after``, which discord.py
waits out and retries), ``delay`` (answer late, or arrive late). JSON responses carry exactly
``Content-Type: application/json``: discord.py misreads anything else.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import discord
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes import discord_rules as rules
from tests.fakes.discord_rules import DiscordError

T = TypeVar("T")
APP_ID = 700000000000000001
BOT_USER = {"id": str(APP_ID), "username": "majicbot", "discriminator": "0", "avatar": None,
            "global_name": None, "bot": True, "flags": 0}  # fmt: skip
TIMESTAMP = "2026-01-01T00:00:00+00:00"
GUILD_ID, CHANNEL_ID = "500000000000000001", "500000000000000002"
ALICE_ID = "600000000000000001"
EPHEMERAL, LOADING = 1 << 6, 1 << 7
# Interaction callback types (Discord's numbers).
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE, AUTOCOMPLETE, MODAL = 1, 4, 5, 6, 7, 8, 9
_OPTION_TYPES: tuple[tuple[type, int], ...] = ((bool, 5), (int, 4), (float, 10), (str, 3))


@dataclass(frozen=True)
class Attachment:
    filename: str
    size: int
    content_type: str


@dataclass
class Call:
    """One REST request: body (JSON, or ``payload_json`` of a multipart), files, our answer.

    Times are on the fake's clock; ``answered_at`` is None until answered.
    """

    method: str
    path: str
    body: Any
    files: list[str] = field(default_factory=list)
    file_sizes: list[int] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0
    code: int | None = None  # Discord's JSON error code when refused
    answer: Any = None
    received_at: float = 0.0
    answered_at: float | None = None
    fault: str | None = None  # "fail", "rate_limit", "delay" when an injected fault applied

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> dict[str, Any]:
        """The message fields sent (a callback's ``data``; else the body itself)."""
        body = self.body if isinstance(self.body, dict) else {}
        if self.path.startswith("/interactions/"):
            data = body.get("data")
            return data if isinstance(data, dict) else {}
        return body

    @property
    def content(self) -> str | None:
        return self.message.get("content")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.message.get("embeds") or [])

    @property
    def allowed_mentions(self) -> dict[str, Any] | None:
        return self.message.get("allowed_mentions")

    @property
    def flags(self) -> int:
        return int(self.message.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def custom_ids(self) -> list[str]:
        rows = self.message.get("components") or []
        return [c.get("custom_id", "") for row in rows for c in row.get("components") or []]

    @property
    def attachments(self) -> list[tuple[str, int]]:
        """(filename, size in bytes) of every file uploaded with this call."""
        return list(zip(self.files, self.file_sizes, strict=True))


@dataclass
class Interaction:
    """What the fake knows of one interaction it dispatched."""

    id: str
    token: str
    payload: dict[str, Any]
    created_at: float
    callback_type: int | None = None  # None until acknowledged
    original: dict[str, Any] | None = None
    original_gone: DiscordError | None = None  # what @original answers once deleted
    token_expired: bool = False
    followups: list[dict[str, Any]] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.callback_type is not None

    @property
    def channel_id(self) -> str:
        return str(self.payload.get("channel_id") or CHANNEL_ID)


@dataclass
class _Fault:
    method: str
    path: str  # fnmatch pattern on the API path, e.g. "/webhooks/*/messages/@original"
    kind: str  # "fail", "rate_limit", "delay"
    times: int | None
    error: DiscordError | None = None
    retry_after_s: float = 0.0
    is_global: bool = False
    delay_s: float = 0.0
    late: str = "answer"

    def matches(self, method: str, path: str) -> bool:
        return self.method in (method, "*") and fnmatch.fnmatchcase(path, self.path)

    def use(self) -> bool:
        """Count one use; True when it is spent."""
        if self.times is None:
            return False
        self.times -= 1
        return self.times <= 0


class FakeDiscord:
    """The server; ``calls``, ``interactions`` and ``channel_messages`` show what the bot did.

    ``initial_response_s``: the window for an interaction's first response (Discord: 3 s);
    ``token_lifetime_s``: how long its webhook token works (Discord: 15 min); ``clock``: seconds
    for every record and window (default: the event loop's clock).
    """

    def __init__(
        self,
        *,
        initial_response_s: float = 3.0,
        token_lifetime_s: float = 15 * 60,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.initial_response_s = initial_response_s
        self.token_lifetime_s = token_lifetime_s
        self.calls: list[Call] = []
        self.interactions: dict[str, Interaction] = {}
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}  # channel -> id -> message
        self.changed = asyncio.Condition()
        self.identified = asyncio.Event()
        self.port = 0
        self._clock = clock
        self._ids = itertools.count(800000000000000000)
        self._seq = itertools.count(2)
        self._sockets: list[web.WebSocketResponse] = []
        self._faults: list[_Fault] = []
        self._forbidden: set[str] = set()

    def snowflake(self) -> str:
        return str(next(self._ids))

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # ---- fault injection ----------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        code: int = 0,
        message: str = "",
        *,
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` matching calls (``path``: fnmatch pattern) with an error."""
        error = DiscordError(status, code, message or f"{status}: injected by the test")
        self._faults.append(_Fault(method, path, "fail", times, error=error))

    def rate_limit(
        self,
        method: str,
        path: str,
        retry_after_s: float,
        *,
        times: int | None = 1,
        is_global: bool = False,
    ) -> None:
        """429 with ``retry_after`` (and the headers of a real one: discord.py waits, retries)."""
        self._faults.append(
            _Fault(
                method, path, "rate_limit", times, retry_after_s=retry_after_s, is_global=is_global
            )
        )

    def delay(
        self,
        method: str,
        path: str,
        seconds: float,
        *,
        times: int | None = 1,
        late: Literal["answer", "arrival"] = "answer",
    ) -> None:
        """Slow down matching calls: ``late="answer"`` does the work at once and answers
        ``seconds`` later; ``"arrival"`` waits first, as if the request reached Discord late
        (so the 3 s window is judged after the wait)."""
        self._faults.append(_Fault(method, path, "delay", times, delay_s=seconds, late=late))

    def clear_faults(self) -> None:
        self._faults.clear()

    def expire_token(self, interaction: Interaction | str) -> None:
        """Webhook calls with this interaction's token answer 401 50027 from now on."""
        self._interaction(interaction).token_expired = True

    def delete_original(self, interaction: Interaction | str, *, code: int = 10015) -> None:
        """Someone deleted the original response: ``@original`` answers 404 ``code``
        (10015 "Unknown Webhook" by default; 10008 "Unknown Message" on request)."""
        record = self._interaction(interaction)
        gone = rules.unknown_message() if code == 10008 else rules.unknown_webhook()
        record.original_gone = gone
        if record.original is not None:
            self.messages.get(record.channel_id, {}).pop(record.original["id"], None)

    def forbid_channel(self, channel_id: str | int) -> None:
        """The bot lost its permissions there: posts and edits answer 403 50013."""
        self._forbidden.add(str(channel_id))

    # ---- interactions to send -----------------------------------------------------------------

    def member(
        self, user_id: str = ALICE_ID, name: str = "alice", permissions: str = "2048"
    ) -> dict[str, Any]:
        user = {"id": user_id, "username": name, "discriminator": "0", "avatar": None,
                "global_name": name.title()}  # fmt: skip
        return {"user": user, "roles": [], "joined_at": TIMESTAMP, "deaf": False, "mute": False,
                "flags": 0, "permissions": permissions}  # fmt: skip

    def slash(
        self,
        name: str,
        options: Mapping[str, str | int | float | bool] | Sequence[dict[str, Any]] = (),
        *,
        guild_id: str = GUILD_ID,
        channel_id: str = CHANNEL_ID,
        member: dict[str, Any] | None = None,
        locale: str = "en-US",
        attachment_size_limit: int = 10 * 1024 * 1024,
    ) -> dict[str, Any]:
        """A slash command payload; a mapping's values get their option type (str 3, int 4,
        bool 5, float 10); a sequence is used as given (wrong types, missing values...)."""
        if isinstance(options, Mapping):
            options = [{"name": k, "type": _option_type(v), "value": v} for k, v in options.items()]
        data = {"id": "1", "name": name, "type": 1, "options": list(options)}
        return self._interaction_payload(
            2, data, guild_id, channel_id, member, locale, attachment_size_limit
        )

    def click(
        self,
        custom_id: str,
        *,
        message: dict[str, Any] | None = None,
        guild_id: str = GUILD_ID,
        channel_id: str = CHANNEL_ID,
        member: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        """A button click on ``message`` (default: the channel's newest message from the bot)."""
        if message is None:
            message = self.channel_messages(channel_id, ephemeral=True)[-1]
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction_payload(3, data, guild_id, channel_id, member, locale, None)
        payload["message"] = message
        return payload

    async def interact(self, payload: dict[str, Any]) -> Interaction:
        """Dispatch an ``INTERACTION_CREATE`` (its window starts now); its record."""
        await self.dispatch("INTERACTION_CREATE", payload)
        return self.interactions[str(payload["id"])]

    async def dispatch(self, event: str, payload: Any) -> None:
        """Send one gateway event (anything, malformed too) to every connected bot."""
        if event == "INTERACTION_CREATE" and isinstance(payload, dict):
            self._register(payload)
        for socket in self._sockets:
            await socket.send_json({"op": 0, "t": event, "s": next(self._seq), "d": payload})

    # ---- records ------------------------------------------------------------------------------

    def channel_messages(
        self, channel_id: str | int, *, ephemeral: bool = False
    ) -> list[dict[str, Any]]:
        """Messages in the channel now (deleted ones gone); ephemeral ones only on request."""
        found = self.messages.get(str(channel_id), {}).values()
        return [m for m in found if ephemeral or not int(m.get("flags") or 0) & EPHEMERAL]

    def calls_to(self, method: str, path: str = "*", *, ok: bool | None = None) -> list[Call]:
        """Calls of ``method`` (``"*"``: any) whose path matches the fnmatch ``path``."""
        return [
            c
            for c in self.calls
            if method in (c.method, "*")
            and fnmatch.fnmatchcase(c.path, path)
            and (ok is None or c.ok is ok)
        ]

    def rejected(self) -> list[Call]:
        """Calls refused by a rule (injected faults excluded)."""
        return [c for c in self.calls if not c.ok and c.fault is None]

    async def wait_for(
        self,
        method: str,
        path: str = "*",
        where: Callable[[Call], bool] = lambda call: True,
        *,
        ok: bool | None = True,
    ) -> Call:
        """The first call of ``method`` matching the fnmatch ``path``, ``where`` and ``ok``."""

        def found() -> Call | None:
            return next((c for c in self.calls_to(method, path, ok=ok) if where(c)), None)

        return await self.wait_until(found)

    async def wait_until(self, probe: Callable[[], T | None]) -> T:
        async with self.changed:
            while (found := probe()) is None:
                await self.changed.wait()
            return found

    async def wait_for_call(self, method: str, path_part: str, *, with_file: bool = False) -> Call:
        """Wait for a call of ``method`` whose path contains ``path_part`` (and uploads a file)."""
        return await self.wait_for(
            method, f"*{path_part}*", lambda c: bool(c.files) or not with_file, ok=None
        )

    # ---- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body, files, sizes = await _read_body(request)
        path = request.path.removeprefix("/api/v10")
        call = Call(request.method, path, body, files, sizes, dict(request.query))
        call.received_at = self.now()
        fault = self._take_fault(call.method, path)
        if fault is not None:
            call.fault = fault.kind
            if fault.kind == "delay" and fault.late == "arrival":
                await asyncio.sleep(fault.delay_s)
                call.received_at = self.now()
        headers = {"Content-Type": "application/json"}
        try:
            if fault is not None and fault.kind == "fail":
                assert fault.error is not None
                raise fault.error
            if fault is not None and fault.kind == "rate_limit":
                headers |= _rate_limit_headers(fault)
                raise DiscordError(429, 0, "You are being rate limited.")
            call.status, call.answer = 200, self._answer(call)
        except DiscordError as exc:
            call.status, call.code, call.answer = exc.status, exc.code, exc.body()
            if exc.status == 429 and fault is not None:
                call.answer |= {"retry_after": fault.retry_after_s, "global": fault.is_global}
        await self._record(call)
        if fault is not None and fault.kind == "delay" and fault.late == "answer":
            await asyncio.sleep(fault.delay_s)
        call.answered_at = self.now()
        await self._notify()
        if call.answer is None:
            return web.Response(status=204)
        return web.Response(
            body=json.dumps(call.answer).encode(), status=call.status, headers=headers
        )

    def _answer(self, call: Call) -> Any:
        """Route a call; None answers 204 No Content."""
        method, parts = call.method, call.path.strip("/").split("/")
        if call.path == "/users/@me":
            return BOT_USER
        if call.path == "/oauth2/applications/@me":
            return {"id": str(APP_ID), "name": "majicbot", "description": "", "icon": None,
                    "bot_public": True, "bot_require_code_grant": False, "owner": BOT_USER,
                    "team": None, "verify_key": "0" * 64, "flags": 0}  # fmt: skip
        if parts[0] == "applications" and parts[-1] == "commands":
            return self._commands(method, call.body)
        if parts[0] == "interactions" and len(parts) == 4 and method == "POST":
            return self._callback(parts[1], parts[2], call)
        if parts[0] == "webhooks" and len(parts) >= 3:
            return self._webhook(method, parts[2], parts[3:], call)
        if parts[0] == "channels" and len(parts) >= 3 and parts[2] == "messages":
            return self._channel(method, parts[1], parts[3:], call)
        raise DiscordError(404, 0, "404: Not Found")

    def _commands(self, method: str, body: Any) -> Any:
        if method == "PUT":
            return [{**c, "id": self.snowflake(), "application_id": str(APP_ID), "version": "1"}
                    for c in body]  # fmt: skip
        return []

    # ---- interaction callback -----------------------------------------------------------------

    def _callback(self, interaction_id: str, token: str, call: Call) -> Any:
        record = self.interactions.get(interaction_id)
        if record is None or record.token != token:
            raise rules.unknown_interaction()
        if call.received_at - record.created_at > self.initial_response_s:
            raise rules.unknown_interaction()
        if record.acknowledged:
            raise rules.already_acknowledged()
        kind = int(call.body.get("type", 0)) if isinstance(call.body, dict) else 0
        data = call.message
        if kind in (MESSAGE, UPDATE):
            rules.check_message(data, creating=kind == MESSAGE, has_files=bool(call.files))
        if kind not in (
            PONG,
            MESSAGE,
            DEFERRED_MESSAGE,
            DEFERRED_UPDATE,
            UPDATE,
            AUTOCOMPLETE,
            MODAL,
        ):
            raise rules.invalid_form_body("type", "BASE_TYPE_CHOICES", "Value must be one of …")
        record.callback_type = kind
        message = self._callback_message(record, kind, data, call)
        ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL)
        summary = {
            "id": record.id,
            "type": record.payload.get("type", 2),
            "response_message_id": message["id"] if message else None,
            "response_message_loading": kind == DEFERRED_MESSAGE,
            "response_message_ephemeral": ephemeral,
        }
        answer: dict[str, Any] = {"interaction": summary}
        if message is not None and kind in (MESSAGE, DEFERRED_MESSAGE, UPDATE):
            answer["resource"] = {"type": kind, "message": message}
        return answer

    def _callback_message(
        self, record: Interaction, kind: int, data: dict[str, Any], call: Call
    ) -> dict[str, Any] | None:
        if kind == MESSAGE:
            record.original = self._store(record.channel_id, data, call, interaction=record)
        elif kind == DEFERRED_MESSAGE:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            record.original = self._store(
                record.channel_id, {"flags": flags}, call, interaction=record
            )
        elif kind in (DEFERRED_UPDATE, UPDATE):
            source = record.payload.get("message") or {}
            stored = self.messages.get(record.channel_id, {}).get(str(source.get("id")))
            record.original = stored or self._store(record.channel_id, dict(source), None)
            if kind == UPDATE:
                self._edit(record.original, data, call)
        return record.original

    # ---- webhooks -----------------------------------------------------------------------------

    def _webhook(self, method: str, token: str, rest: list[str], call: Call) -> Any:
        record = next((i for i in self.interactions.values() if i.token == token), None)
        if record is None or not record.acknowledged:
            raise rules.unknown_webhook()
        if record.token_expired or call.received_at - record.created_at > self.token_lifetime_s:
            raise rules.invalid_webhook_token()
        if not rest:  # POST /webhooks/{app}/{token}: a follow-up
            if method != "POST":
                raise DiscordError(405, 0, "405: Method Not Allowed")
            return self._followup(record, call)
        if rest[0] != "messages" or len(rest) != 2:
            raise DiscordError(404, 0, "404: Not Found")
        if rest[1] == "@original":
            if record.original_gone is not None:
                raise record.original_gone
            message = record.original
        else:
            message = next((m for m in record.followups if m["id"] == rest[1]), None)
        if message is None:
            raise rules.unknown_message()
        return self._message_op(method, record.channel_id, message, call)

    def _followup(self, record: Interaction, call: Call) -> Any:
        data = call.message
        original = record.original
        if (
            original is not None
            and int(original.get("flags") or 0) & LOADING
            and record.original_gone is None
        ):
            # After a "thinking" defer the first follow-up replaces the loading message.
            rules.check_message(data, creating=True, has_files=bool(call.files))
            self._edit(original, data, call)
            original["flags"] = int(original.get("flags") or 0) & ~LOADING
            return original
        rules.check_message(data, creating=True, has_files=bool(call.files))
        message = self._store(record.channel_id, data, call, interaction=record)
        record.followups.append(message)
        return message

    # ---- channels -----------------------------------------------------------------------------

    def _channel(self, method: str, channel_id: str, rest: list[str], call: Call) -> Any:
        if channel_id in self._forbidden and method in ("POST", "PATCH"):
            raise rules.missing_permissions()
        if not rest:
            if method != "POST":
                return list(reversed(self.channel_messages(channel_id)))
            rules.check_message(call.body or {}, creating=True, has_files=bool(call.files))
            return self._store(channel_id, call.body or {}, call)
        message = self.messages.get(channel_id, {}).get(rest[0])
        if message is None or len(rest) != 1:
            raise rules.unknown_message()
        return self._message_op(method, channel_id, message, call)

    def _message_op(self, method: str, channel_id: str, message: dict[str, Any], call: Call) -> Any:
        if method == "GET":
            return message
        if method == "DELETE":
            self.messages.get(channel_id, {}).pop(message["id"], None)
            for record in self.interactions.values():
                if record.original is message:
                    record.original_gone = rules.unknown_message()
            return None
        if method == "PATCH":
            rules.check_message(call.message, creating=False, has_files=bool(call.files))
            self._edit(message, call.message, call)
            message["flags"] = int(message.get("flags") or 0) & ~LOADING
            return message
        raise DiscordError(405, 0, "405: Method Not Allowed")

    # ---- messages -----------------------------------------------------------------------------

    def _store(
        self,
        channel_id: str,
        body: dict[str, Any],
        call: Call | None,
        *,
        interaction: Interaction | None = None,
    ) -> dict[str, Any]:
        message = _message(body.get("id") or self.snowflake(), channel_id, body)
        if call is not None:
            message["attachments"] = self._attachments(call)
        if interaction is not None:
            payload = interaction.payload
            user = (payload.get("member") or {}).get("user") or payload.get("user")
            message["interaction_metadata"] = {
                "id": interaction.id,
                "type": payload.get("type", 2),
                "user": user,
                "authorizing_integration_owners": {},
            }
        self.messages.setdefault(channel_id, {})[message["id"]] = message
        return message

    def _edit(self, message: dict[str, Any], body: dict[str, Any], call: Call) -> None:
        for key in ("content", "embeds", "components", "allowed_mentions"):
            if key in body:
                message[key] = (
                    body[key] if body[key] is not None else ([] if key != "content" else "")
                )
        if "attachments" in body or call.files:
            kept_ids = {str(a.get("id")) for a in body.get("attachments") or []}
            kept = [a for a in message.get("attachments", []) if a["id"] in kept_ids]
            message["attachments"] = kept + self._attachments(call)
        message["edited_timestamp"] = TIMESTAMP

    def _attachments(self, call: Call) -> list[dict[str, Any]]:
        return [
            {"id": self.snowflake(), "filename": name, "size": size,
             "url": f"http://127.0.0.1:{self.port}/attachments/{name}",
             "proxy_url": f"http://127.0.0.1:{self.port}/attachments/{name}"}
            for name, size in zip(call.files, call.file_sizes, strict=True)
        ]  # fmt: skip

    # ---- internals ----------------------------------------------------------------------------

    def _register(self, payload: dict[str, Any]) -> None:
        interaction_id, token = payload.get("id"), payload.get("token")
        fresh = isinstance(interaction_id, str) and interaction_id not in self.interactions
        # A replayed event keeps its first record: the window runs from the first dispatch.
        if fresh and isinstance(interaction_id, str) and isinstance(token, str):
            self.interactions[interaction_id] = Interaction(
                interaction_id, token, payload, self.now()
            )

    def _interaction(self, interaction: Interaction | str) -> Interaction:
        return (
            interaction if isinstance(interaction, Interaction) else self.interactions[interaction]
        )

    def _interaction_payload(
        self,
        kind: int,
        data: dict[str, Any],
        guild_id: str,
        channel_id: str,
        member: dict[str, Any] | None,
        locale: str,
        attachment_size_limit: int | None,
    ) -> dict[str, Any]:
        interaction_id = self.snowflake()
        return interaction_payload(
            interaction_id, kind, data, guild_id=guild_id, channel_id=channel_id,
            member=member or self.member(), locale=locale,
            attachment_size_limit=attachment_size_limit or 10 * 1024 * 1024,
        )  # fmt: skip

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                if fault.use():
                    self._faults.remove(fault)
                return fault
        return None

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        await self._notify()

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

    # ---- lifecycle ---------------------------------------------------------------------------

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeDiscord]:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(runner.addresses[0][1])
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


def interaction_payload(
    interaction_id: str, kind: int, data: dict[str, Any], *, guild_id: str, channel_id: str,
    member: dict[str, Any], locale: str = "en-US",
    attachment_size_limit: int = 10 * 1024 * 1024,
) -> dict[str, Any]:  # fmt: skip
    """An ``INTERACTION_CREATE`` payload of ``kind`` (2 command, 3 component) in a guild."""
    return {
        "id": interaction_id, "application_id": str(APP_ID), "type": kind,
        "token": f"token-{interaction_id}", "version": 1, "data": data,
        "guild_id": guild_id, "channel_id": channel_id,
        "channel": {"id": channel_id, "type": 0, "guild_id": guild_id, "name": "art",
                    "position": 0, "permission_overwrites": [], "nsfw": False,
                    "parent_id": None},
        "member": member, "locale": locale, "guild_locale": "en-US", "app_permissions": "2048",
        "entitlements": [], "authorizing_integration_owners": {}, "context": 0,
        "attachment_size_limit": attachment_size_limit,
    }  # fmt: skip


def slash_interaction(
    name: str, options: list[dict[str, Any]], *, guild_id: str, channel_id: str,
    locale: str = "en-US", attachment_size_limit: int = 10 * 1024 * 1024,
) -> dict[str, Any]:  # fmt: skip
    """An ``INTERACTION_CREATE`` payload for a slash command by an ordinary member (fixed id)."""
    user = {"id": ALICE_ID, "username": "alice", "discriminator": "0",
            "avatar": None, "global_name": "Alice"}  # fmt: skip
    member = {"user": user, "roles": [], "joined_at": TIMESTAMP, "deaf": False,
              "mute": False, "flags": 0, "permissions": "2048"}  # fmt: skip
    data = {"id": "1", "name": name, "type": 1, "options": options}
    return interaction_payload(
        "900000000000000001", 2, data, guild_id=guild_id, channel_id=channel_id, member=member,
        locale=locale, attachment_size_limit=attachment_size_limit,
    )  # fmt: skip


def _option_type(value: object) -> int:
    return next(kind for python_type, kind in _OPTION_TYPES if isinstance(value, python_type))


def _rate_limit_headers(fault: _Fault) -> dict[str, str]:
    """What a real 429 carries; without ``Via`` discord.py takes it for a Cloudflare ban."""
    return {
        "Via": "1.1 google",
        "Retry-After": str(math.ceil(fault.retry_after_s)),
        "X-RateLimit-Global": "true" if fault.is_global else "false",
        "X-RateLimit-Scope": "global" if fault.is_global else "user",
    }


def _message(message_id: str, channel_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(message_id), "channel_id": channel_id, "author": BOT_USER,
        "content": body.get("content") or "", "timestamp": TIMESTAMP,
        "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
        "mention_roles": [], "attachments": [], "embeds": body.get("embeds") or [],
        "pinned": False, "type": 0, "flags": int(body.get("flags") or 0),
        "components": body.get("components") or [],
        "allowed_mentions": body.get("allowed_mentions"),
        "webhook_id": str(APP_ID), "application_id": str(APP_ID),
    }  # fmt: skip


async def _read_body(request: web.Request) -> tuple[Any, list[str], list[int]]:
    """JSON body, or a multipart's ``payload_json`` plus every file's name and size."""
    if not request.content_type.startswith("multipart/"):
        if not request.can_read_body:
            return None, [], []
        raw = await request.read()
        try:
            return json.loads(raw), [], []
        except ValueError:
            return raw.decode(errors="replace"), [], []
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
