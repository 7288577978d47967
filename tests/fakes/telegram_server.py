"""A fake Telegram Bot API server (aiohttp) for driving the real python-telegram-bot against.

    async with FakeTelegram() as api:            # listens on 127.0.0.1:<free port>
        app = Application.builder().token(api.token).base_url(api.base_url)...
        message = api.user_sends("/imagine a cat", user=ALICE)      # queued for getUpdates
        call = await api.wait_for("sendMessage", lambda c: c.chat_id == ALICE.id)
        api.press_button(call.result, "r:abc123", user=ALICE)      # a callback query update

It records every Bot API call (``api.calls``), answers with objects PTB can parse, serves
``getUpdates`` as a real long poll, delivers updates to a webhook after ``setWebhook``, accepts
multipart uploads (``sendPhoto``/``sendDocument``) and can inject failures such as a 429 with
``retry_after`` (``api.fail("sendPhoto", code=429, retry_after=1)``). Like the real API it answers
an edit that changes nothing with 400 "message is not modified" (recorded, so tests can assert
there was none). Tests wait on conditions with ``wait_for``, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

T = TypeVar("T")
TOKEN = "123456:TEST-token"
# Fields PTB sends JSON-encoded inside form/multipart bodies.
_JSON_FIELDS = {
    "reply_markup",
    "commands",
    "allowed_updates",
    "entities",
    "caption_entities",
    "reply_parameters",
    "scope",
    "link_preview_options",
}


@dataclass(frozen=True)
class TgUser:
    """A Telegram user as the fake sends it in updates."""

    id: int
    first_name: str = "Alice"
    username: str | None = None
    language_code: str | None = "en"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data


@dataclass(frozen=True)
class TgChat:
    """A private chat (id = user id) or a group (negative id)."""

    id: int
    type: str = "private"
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            data["title"] = self.title
        return data


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    """One request the bot made: method, decoded params, uploaded files, and what we answered."""

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile] = field(default_factory=dict)
    ok: bool = True
    result: Any = None
    error_code: int | None = None
    description: str = ""
    at: float = field(default_factory=time.monotonic)

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def text(self) -> str | None:
        value = self.params.get("text", self.params.get("caption"))
        return str(value) if value is not None else None

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """(text, callback_data) of every inline button of the reply_markup sent."""
        markup = self.params.get("reply_markup") or {}
        rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
        return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]

    def file(self) -> UploadedFile:
        """The single file uploaded with this call."""
        (upload,) = self.files.values()
        return upload


@dataclass
class _Failure:
    method: str
    code: int
    description: str
    retry_after: int | None
    times: int


class FakeTelegram:
    """The fake server; use as an async context manager (starts and stops the HTTP listener)."""

    def __init__(self, token: str = TOKEN, bot_username: str = "majic_test_bot") -> None:
        self.token = token
        self.bot = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "Majic",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[Call] = []
        self.pressed: list[str] = []  # callback query ids of every button press pushed
        self.webhook_url = ""
        self.webhook_secret = ""
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._failures: list[_Failure] = []
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._webhook_session: aiohttp.ClientSession | None = None
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # ---- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        async with self._changed:
            self._changed.notify_all()
        for task in list(self._webhook_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._webhook_session is not None:
            await self._webhook_session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """What PTB's ``base_url`` should be (PTB appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ---- test controls ------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        code: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        description: str = "",
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error (default: 429, 1 s)."""
        text = description or (
            f"Too Many Requests: retry after {retry_after}" if code == 429 else "Internal error"
        )
        after = retry_after if code == 429 else None
        self._failures.append(_Failure(method, code, text, after, times))

    def clear_failures(self) -> None:
        self._failures.clear()

    def user_sends(
        self,
        text: str,
        *,
        user: TgUser,
        chat: TgChat | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Queue (or POST to the webhook) a message update; returns the message object."""
        chat = chat or TgChat(user.id)
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat.id),
            "date": int(time.time()),
            "chat": chat.to_dict(),
            "from": user.to_dict(),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        self._store_message(message)
        self._push({"message": message})
        return message

    def press_button(self, message: dict[str, Any], data: str, *, user: TgUser) -> str:
        """Queue a callback query for an inline button of ``message``; returns its id."""
        query_id = str(next(self._callback_ids))
        self.pressed.append(query_id)
        query = {
            "id": query_id,
            "from": user.to_dict(),
            "message": message,
            "chat_instance": str(message["chat"]["id"]),
            "data": data,
        }
        self._push({"callback_query": query})
        return query_id

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The current state of a message the bot sent (None once deleted)."""
        return self._messages.get((chat_id, message_id))

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_for(
        self,
        method: str,
        where: Callable[[Call], bool] = lambda call: True,
        *,
        timeout_s: float = 30.0,
        ok: bool | None = True,
        since: int = 0,
    ) -> Call:
        """The first ``method`` call from index ``since`` on matching ``where`` and ``ok``."""

        def find() -> Call | None:
            for call in self.calls[since:]:
                if call.method == method and (ok is None or call.ok is ok) and where(call):
                    return call
            return None

        return await self.wait_until(find, timeout_s=timeout_s)

    async def wait_until(self, probe: Callable[[], T | None], *, timeout_s: float = 30.0) -> T:
        """Wait until ``probe()`` returns something other than None (re-checked on each call)."""
        async with asyncio.timeout(timeout_s), self._changed:
            while (found := probe()) is None:
                await self._changed.wait()
            return found

    # ---- internals ----------------------------------------------------------------------------

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _store_message(self, message: dict[str, Any]) -> None:
        self._messages[(message["chat"]["id"], message["message_id"])] = message

    def _push(self, payload: dict[str, Any]) -> None:
        update = {"update_id": next(self._update_ids), **payload}
        if self.webhook_url:
            task = asyncio.get_running_loop().create_task(self._post_webhook(update))
            self._webhook_tasks.add(task)
            task.add_done_callback(self._webhook_tasks.discard)
        else:
            self._updates.append(update)
            asyncio.get_running_loop().create_task(self._notify())

    async def _post_webhook(self, update: dict[str, Any]) -> None:
        if self._webhook_session is None:
            self._webhook_session = aiohttp.ClientSession()
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret}
        async with self._webhook_session.post(self.webhook_url, json=update, headers=headers) as r:
            await self._record(Call("webhook", update, result=r.status, ok=r.status == 200))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        await self._notify()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            return web.json_response(body, status=401)
        method = request.match_info["method"]
        params, files = await _read_params(request)
        call = Call(method, params, files)
        failure = self._take_failure(method)
        if failure is not None:
            call.ok, call.error_code, call.description = False, failure.code, failure.description
            await self._record(call)
            return _error(failure.code, failure.description, failure.retry_after)
        try:
            call.result = await self._dispatch(method, params, files)
        except _ApiError as exc:
            call.ok, call.error_code, call.description = False, exc.code, exc.description
            await self._record(call)
            return _error(exc.code, exc.description, None)
        await self._record(call)
        return web.json_response({"ok": True, "result": call.result})

    def _take_failure(self, method: str) -> _Failure | None:
        for failure in self._failures:
            if failure.method == method:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    async def _dispatch(
        self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            raise _ApiError(404, f"Not Found: method {method} is not in the fake")
        return await handler(params, files)

    # ---- Bot API methods ----------------------------------------------------------------------

    async def _api_getMe(self, params: dict[str, Any], files: Any) -> Any:
        return self.bot

    async def _api_getUpdates(self, params: dict[str, Any], files: Any) -> Any:
        offset = int(params.get("offset") or 0)
        timeout_s = float(params.get("timeout") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and timeout_s > 0 and not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s), self._changed:
                    while not self._updates and not self._closing:
                        await self._changed.wait()
        limit = int(params.get("limit") or 100)
        return self._updates[:limit]

    async def _api_setWebhook(self, params: dict[str, Any], files: Any) -> Any:
        self.webhook_url = str(params["url"])
        self.webhook_secret = str(params.get("secret_token") or "")
        return True

    async def _api_deleteWebhook(self, params: dict[str, Any], files: Any) -> Any:
        self.webhook_url = ""
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self._updates.clear()
        return True

    async def _api_getWebhookInfo(self, params: dict[str, Any], files: Any) -> Any:
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": 0}

    async def _api_setMyCommands(self, params: dict[str, Any], files: Any) -> Any:
        return True

    async def _api_deleteMyCommands(self, params: dict[str, Any], files: Any) -> Any:
        return True

    async def _api_sendChatAction(self, params: dict[str, Any], files: Any) -> Any:
        return True

    async def _api_answerCallbackQuery(self, params: dict[str, Any], files: Any) -> Any:
        return True

    async def _api_sendMessage(self, params: dict[str, Any], files: Any) -> Any:
        return self._new_message(params, {"text": str(params["text"])})

    async def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        upload = _upload(params, files, "photo")
        width, height = _image_size(upload.data)
        photo: dict[str, Any] = {"width": width, "height": height, "file_size": len(upload.data)}
        photo |= self._file_ids_pair()
        return self._new_message(params, {"photo": [photo], **_caption(params)})

    async def _api_sendDocument(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        upload = _upload(params, files, "document")
        document: dict[str, Any] = {"file_name": upload.filename, "mime_type": upload.content_type}
        document |= {"file_size": len(upload.data), **self._file_ids_pair()}
        return self._new_message(params, {"document": document, **_caption(params)})

    async def _api_editMessageText(self, params: dict[str, Any], files: Any) -> Any:
        message = self._existing(params)
        text = str(params["text"])
        markup = params.get("reply_markup")
        if message.get("text") == text and message.get("reply_markup") == markup:
            raise _ApiError(400, "Bad Request: message is not modified")
        message["text"] = text
        _set_markup(message, markup)
        return message

    async def _api_editMessageCaption(self, params: dict[str, Any], files: Any) -> Any:
        message = self._existing(params)
        message["caption"] = str(params.get("caption", ""))
        _set_markup(message, params.get("reply_markup"))
        return message

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any], files: Any) -> Any:
        message = self._existing(params)
        _set_markup(message, params.get("reply_markup"))
        return message

    async def _api_deleteMessage(self, params: dict[str, Any], files: Any) -> Any:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if self._messages.pop(key, None) is None:
            raise _ApiError(400, "Bad Request: message to delete not found")
        return True

    def _file_ids_pair(self) -> dict[str, str]:
        number = next(self._file_ids)
        return {"file_id": f"file-{number}", "file_unique_id": f"u{number}"}

    def _existing(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (int(params["chat_id"]), int(params["message_id"]))
        message = self._messages.get(key)
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        return message

    def _new_message(self, params: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        chat: dict[str, Any] = {"id": chat_id, "type": "private" if chat_id > 0 else "group"}
        if chat_id < 0:
            chat["title"] = "group"
        message = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": self.bot,
            **content,
        }
        _set_markup(message, params.get("reply_markup"))
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and (chat_id, reply.get("message_id")) in self._messages:
            message["reply_to_message"] = dict(self._messages[(chat_id, reply["message_id"])])
        self._store_message(message)
        return message


class _ApiError(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code, self.description = code, description


def _error(code: int, description: str, retry_after: int | None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=code)


def _set_markup(message: dict[str, Any], markup: Any) -> None:
    if markup:
        message["reply_markup"] = markup
    else:
        message.pop("reply_markup", None)


def _caption(params: dict[str, Any]) -> dict[str, Any]:
    return {"caption": str(params["caption"])} if params.get("caption") else {}


def _upload(params: dict[str, Any], files: dict[str, UploadedFile], name: str) -> UploadedFile:
    value = params.get(name)
    if isinstance(value, str) and value.startswith("attach://"):
        return files[value.removeprefix("attach://")]
    if name in files:
        return files[name]
    raise _ApiError(400, f"Bad Request: there is no {name} in the request")


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG or JPEG header (no PIL needed in the fake)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"\xff\xd8"):
        index = 2
        while index < len(data):
            marker, length = data[index + 1], int.from_bytes(data[index + 2 : index + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(data[index + 5 : index + 7], "big")
                return int.from_bytes(data[index + 7 : index + 9], "big"), height
            index += 2 + length
    raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")


def _decode(name: str, value: str) -> Any:
    if name in _JSON_FIELDS:
        return json.loads(value)
    return value


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    params: dict[str, Any] = {}
    files: dict[str, UploadedFile] = {}
    if request.content_type == "application/json":
        body = await request.json() if request.can_read_body else {}
        return dict(body), files
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            if part.filename is not None:
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                files[part.name] = UploadedFile(part.filename, content_type, await part.read())
            else:
                params[part.name] = _decode(part.name, await part.text())
        return params, files
    form = await request.post()
    for name, value in form.items():
        params[name] = _decode(name, str(value))
    params |= {k: _decode(k, v) for k, v in request.query.items()}
    return params, files
