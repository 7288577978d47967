"""A fake Telegram Bot API server (aiohttp) for driving the real python-telegram-bot against.

    async with FakeTelegram() as api:            # listens on 127.0.0.1:<free port>
        app = Application.builder().token(api.token).base_url(api.base_url)...
        message = api.user_sends("/imagine a cat", user=ALICE)      # queued for getUpdates
        call = await api.wait_for("sendMessage", lambda c: c.chat_id == ALICE.id)
        api.press_button(call.result, "r:abc123", user=ALICE)      # a callback query update

It serves ``getUpdates`` as a real long poll (or posts to a webhook after ``setWebhook``),
accepts multipart uploads and answers with objects PTB parses. It **enforces the Bot API's
rules** with the real 400 descriptions (``telegram_rules``): text ≤ 4096 and non-empty,
caption ≤ 1024, callback_data 1–64 bytes, "message is not modified", editing or deleting a
message that is gone, answering a callback query twice or one that never existed, a photo's
width + height ≤ 10000. Rule breaks are answered *and recorded* (``ok=False``), so a test can
assert there were none: ``assert api.rejected() == []``.

Faults, for the next calls of a method (``times=None``: until cleared):

    api.fail("sendPhoto", 403)                        # "Forbidden: bot was blocked by the user"
    api.fail("sendMessage", 429, retry_after=3)       # parameters.retry_after
    api.delay("sendPhoto", 8.0)      # done and recorded at once, answered 8 s later
    api.drop("sendPhoto")            # done and recorded, connection closed without an answer
    api.block(ALICE.id)              # every send/edit to that chat: 403 until unblock()
    api.enforce_flood_limits = True  # 429 + retry_after past ~1 msg/s per chat, 20/min per group

Records: ``calls`` (method, params, files, what was answered, ``received_at``/``answered_at``
on the fake's clock), ``photos_sent_to(chat)``, ``edits_of(chat, message)``,
``visible_messages(chat)``, ``max_calls_in_window(...)`` and ``flood_violations()``. Updates:
``user_sends``, ``press_button``, ``push_update`` (raw, hostile) and ``redeliver`` (the same
update again, as a restarted bot sees it). Tests wait on conditions with ``wait_for``, never on
sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from tests.fakes import telegram_rules as rules
from tests.fakes.telegram_rules import ApiError, FloodLimits

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
EDIT_METHODS = frozenset(
    {"editMessageText", "editMessageCaption", "editMessageReplyMarkup", "editMessageMedia"}
)
SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup"})


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
    """One request the bot made: method, decoded params, uploaded files, and what we answered.

    ``ok`` says whether the fake *did* it (a delayed or dropped call that was applied is ok
    even if the bot never read the answer); ``answered_at`` is None while (or if never)
    answered. Times are on the fake's clock (``FakeTelegram.now()``).
    """

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile] = field(default_factory=dict)
    ok: bool = True
    result: Any = None
    error_code: int | None = None
    description: str = ""
    retry_after: int | None = None
    received_at: float = 0.0
    answered_at: float | None = None
    fault: str | None = None  # "fail", "delay", "drop", "block", "flood" when a fault applied

    @property
    def at(self) -> float:
        return self.received_at

    @property
    def applied(self) -> bool:
        """The call took effect on the fake's state (what flood accounting counts)."""
        return self.ok

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def message_id(self) -> int | None:
        """The message this call targets (edits, deletes) or created (sends)."""
        value = self.params.get("message_id")
        if value is None and isinstance(self.result, dict):
            value = self.result.get("message_id")
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
class _Fault:
    """What to do to the next ``times`` calls of ``method`` (None: every call until cleared)."""

    method: str
    kind: str  # "fail", "delay" or "drop"
    times: int | None
    where: Callable[[Call], bool] | None = None
    code: int = 0
    description: str = ""
    retry_after: int | None = None
    delay_s: float = 0.0
    applied: bool = True  # delay/drop: the fake does the work before stalling

    def matches(self, call: Call) -> bool:
        return self.method in (call.method, "*") and (self.where is None or self.where(call))

    def use(self) -> bool:
        """Count one use; True when it is spent."""
        if self.times is None:
            return False
        self.times -= 1
        return self.times <= 0


class FakeTelegram:
    """The fake server; use as an async context manager (starts and stops the HTTP listener).

    ``clock`` (seconds, monotonic) stamps every record; default: the event loop's clock.
    ``callback_answer_window_s``: answering a callback query later than this is refused
    (None: no limit, the default; Telegram's is about 15 s).
    """

    def __init__(
        self,
        token: str = TOKEN,
        bot_username: str = "majic_test_bot",
        *,
        clock: Callable[[], float] | None = None,
        callback_answer_window_s: float | None = None,
    ) -> None:
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
        self.updates: list[dict[str, Any]] = []  # every update pushed, in order
        self.webhook_url = ""
        self.webhook_secret = ""
        self.enforce_flood_limits = False
        self.flood_limits = FloodLimits()
        self.callback_answer_window_s = callback_answer_window_s
        self._clock = clock
        self._updates: list[dict[str, Any]] = []
        self._redelivered: list[dict[str, Any]] = []  # served once whatever the offset
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._open_queries: dict[str, float] = {}  # callback query id -> pushed at
        self._blocked: set[int] = set()
        self._faults: list[_Fault] = []
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._webhook_session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
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
        for task in list(self._tasks):
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

    def now(self) -> float:
        """The fake's clock, in seconds."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # ---- fault injection ----------------------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int | None = None,
        description: str = "",
        *,
        code: int | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
        where: Callable[[Call], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"``: any) with an error, undone.

        ``status`` (alias ``code``) defaults to 429; a 429 carries ``parameters.retry_after``
        (default 1 s). ``description`` defaults to Telegram's words for the status (403: "bot
        was blocked by the user"). ``where`` narrows it to matching calls (e.g. one chat).
        """
        status = status or code or 429
        if status == 429 and retry_after is None:
            retry_after = 1
        words = description or rules.default_description(status, retry_after)
        self._faults.append(
            _Fault(
                method, "fail", times, where, status, words, retry_after if status == 429 else None
            )
        )

    def delay(
        self,
        method: str,
        seconds: float,
        *,
        times: int | None = 1,
        applied: bool = True,
        where: Callable[[Call], bool] | None = None,
    ) -> None:
        """Receive the next ``times`` calls of ``method`` whole, record them, then answer late.

        With ``applied`` (default) the fake does the work at once (the photo is in the chat),
        as Telegram does when only its answer is slow; a client read timeout then leaves the
        bot unsure although the server has it. ``applied=False``: the call fails with 502
        after the delay and changes nothing.
        """
        self._faults.append(_Fault(method, "delay", times, where, delay_s=seconds, applied=applied))

    def drop(
        self,
        method: str,
        *,
        times: int | None = 1,
        applied: bool = True,
        where: Callable[[Call], bool] | None = None,
    ) -> None:
        """Receive the next ``times`` calls of ``method``, then close the connection unanswered.

        ``applied``: whether the fake did the work first (the bot sees a network error
        either way).
        """
        self._faults.append(_Fault(method, "drop", times, where, applied=applied))

    def clear_failures(self) -> None:
        """Forget every pending fail/delay/drop."""
        self._faults.clear()

    def block(self, chat_id: int) -> None:
        """The user blocks the bot (or a group removes it): sends and edits answer 403."""
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)

    # ---- updates ------------------------------------------------------------------------------

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
        self.push_update({"message": message})
        return message

    def press_button(self, message: dict[str, Any], data: str, *, user: TgUser) -> str:
        """Queue a callback query for an inline button of ``message``; returns its id."""
        query_id = str(next(self._callback_ids))
        query = {
            "id": query_id,
            "from": user.to_dict(),
            "message": message,
            "chat_instance": str(message["chat"]["id"]),
            "data": data,
        }
        self.push_update({"callback_query": query})
        return query_id

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue any update as given (raw or hostile); an ``update_id`` is added if missing.

        A well-formed ``callback_query`` in it becomes answerable. Returns the update sent.
        """
        if "update_id" not in update:
            update = {"update_id": next(self._update_ids), **update}
        query = update.get("callback_query")
        if isinstance(query, dict) and isinstance(query.get("id"), str):
            self.pressed.append(query["id"])
            self._open_queries[query["id"]] = self.now()
        self.updates.append(update)
        self._deliver(update, redelivery=False)
        return update

    def redeliver(self, update: dict[str, Any] | int) -> None:
        """Deliver an update again, same ``update_id``: what a bot restarted after a crash
        (before it confirmed the update with a later ``offset``) receives."""
        if isinstance(update, int):
            update = next(u for u in self.updates if u.get("update_id") == update)
        self._deliver(copy.deepcopy(update), redelivery=True)

    # ---- records ------------------------------------------------------------------------------

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The current state of a message in a chat (None once deleted)."""
        return self._messages.get((chat_id, message_id))

    def visible_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """Every message in the chat now (the users' and the bot's, minus deleted), in order."""
        found = [m for (chat, _), m in self._messages.items() if chat == chat_id]
        return sorted(found, key=lambda m: int(m["message_id"]))

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def sent_to(self, chat_id: int, method: str | None = None) -> list[Call]:
        """Sends the fake accepted for ``chat_id`` (every send method, or just ``method``)."""
        methods = {method} if method else SEND_METHODS
        return [c for c in self.calls if c.ok and c.method in methods and c.chat_id == chat_id]

    def photos_sent_to(self, chat_id: int) -> list[Call]:
        """Every ``sendPhoto`` to ``chat_id`` the fake accepted (answered late or not at all
        included): the photos the user sees."""
        return self.sent_to(chat_id, "sendPhoto")

    def edits_of(self, chat_id: int, message_id: int, *, ok: bool | None = True) -> list[Call]:
        """Edit calls aimed at one message (``ok=None``: refused ones too), in order."""
        return [
            c
            for c in self.calls
            if c.method in EDIT_METHODS
            and c.chat_id == chat_id
            and c.message_id == message_id
            and (ok is None or c.ok is ok)
        ]

    def rejected(self, *, status: int | None = 400) -> list[Call]:
        """Calls the fake refused with ``status`` (None: any error), injected faults excluded:
        rule breaks, by default."""
        return [
            c
            for c in self.calls
            if not c.ok
            and c.fault is None
            and c.method != "webhook"
            and (status is None or c.error_code == status)
        ]

    def max_calls_in_window(self, window_s: float, *, chat_id: int | None = None) -> int:
        """The most message sends/edits (to ``chat_id``, or overall) in any ``window_s``."""
        return rules.max_in_window(rules.counted(self.calls, chat_id), window_s)

    def flood_violations(self, limits: FloodLimits | None = None) -> list[str]:
        """Which flood limits the bot's accepted calls broke, e.g. ``"chat -100: 3 in 1.0 s"``."""
        limits = limits or self.flood_limits
        chats = {c.chat_id for c in self.calls if c.chat_id is not None}
        found: list[str] = []
        checks: list[tuple[str, int | None, rules.Rate]] = [("overall", None, limits.overall)]
        checks += [("chat", chat, limits.per_chat) for chat in sorted(chats)]
        checks += [("group", chat, limits.per_group) for chat in sorted(chats) if chat < 0]
        for name, chat, rate in checks:
            most = rules.max_in_window(rules.counted(self.calls, chat), rate.per_s - limits.slack_s)
            if most > rate.count:
                where = name if chat is None else f"{name} {chat}"
                found.append(f"{where}: {most} in {rate.per_s} s (limit {rate.count})")
        return found

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

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _deliver(self, update: dict[str, Any], *, redelivery: bool) -> None:
        if self.webhook_url:
            self._spawn(self._post_webhook(update))
            return
        (self._redelivered if redelivery else self._updates).append(update)
        self._spawn(self._notify())

    async def _post_webhook(self, update: dict[str, Any]) -> None:
        if self._webhook_session is None:
            self._webhook_session = aiohttp.ClientSession()
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret}
        async with self._webhook_session.post(self.webhook_url, json=update, headers=headers) as r:
            now = self.now()
            call = Call("webhook", update, result=r.status, ok=r.status == 200)
            call.received_at = call.answered_at = now
            await self._record(call)

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
        call = Call(method, params, files, received_at=self.now())
        fault = self._take_fault(call)
        await self._perform(call, fault)
        await self._record(call)
        if fault is not None and fault.kind == "drop":
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the connection without an answer
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay_s)
        call.answered_at = self.now()
        await self._notify()
        if not call.ok:
            return _error(call.error_code or 500, call.description, call.retry_after)
        return web.json_response({"ok": True, "result": call.result})

    async def _perform(self, call: Call, fault: _Fault | None) -> None:
        """Do the call (unless a fault says otherwise) and fill in its answer."""
        if fault is not None:
            call.fault = fault.kind
            if fault.kind == "fail":
                call.ok, call.error_code, call.description = False, fault.code, fault.description
                call.retry_after = fault.retry_after
                return
            if not fault.applied:  # lost on the way: nothing done, a gateway error if answered
                call.ok, call.error_code, call.description = False, 502, "Bad Gateway"
                return
        try:
            self._check_chat(call)
            call.result = await self._dispatch(call.method, call.params, call.files)
        except ApiError as exc:
            call.ok, call.error_code, call.description = False, exc.code, exc.description
            call.retry_after = exc.retry_after

    def _check_chat(self, call: Call) -> None:
        """Blocked chats and (when enforced) flood limits, before the method runs."""
        chat_id = call.chat_id
        if call.method in rules.CHAT_METHODS and chat_id in self._blocked:
            call.fault = "block"
            raise rules.forbidden_for(chat_id)
        if not self.enforce_flood_limits or call.method not in rules.FLOOD_METHODS:
            return
        limits, now = self.flood_limits, call.received_at
        for _, rate, chat in rules.rule_for(chat_id, limits):
            times = rules.counted(self.calls, chat)
            wait_s = rules.retry_after_s(times, rate, now, limits.slack_s)
            if wait_s is not None:
                call.fault = "flood"
                words = rules.default_description(429, wait_s)
                raise ApiError(429, words, wait_s)

    def _take_fault(self, call: Call) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(call):
                if fault.use():
                    self._faults.remove(fault)
                return fault
        return None

    async def _dispatch(
        self, method: str, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            raise ApiError(404, f"Not Found: method {method} is not in the fake")
        return await handler(params, files)

    # ---- Bot API methods ----------------------------------------------------------------------

    async def _api_getMe(self, params: dict[str, Any], files: Any) -> Any:
        return self.bot

    async def _api_getUpdates(self, params: dict[str, Any], files: Any) -> Any:
        offset = int(params.get("offset") or 0)
        timeout_s = float(params.get("timeout") or 0)
        self._updates = [u for u in self._updates if _update_id(u) >= offset]
        if not self._updates and not self._redelivered and timeout_s > 0 and not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s), self._changed:
                    while not (self._updates or self._redelivered or self._closing):
                        await self._changed.wait()
        limit = int(params.get("limit") or 100)
        again, self._redelivered = self._redelivered, []
        return (again + self._updates)[:limit]

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
        pushed_at = self._open_queries.pop(str(params.get("callback_query_id")), None)
        window_s = self.callback_answer_window_s
        if pushed_at is None or (window_s is not None and self.now() - pushed_at > window_s):
            raise ApiError(400, rules.QUERY_INVALID)
        return True

    async def _api_sendMessage(self, params: dict[str, Any], files: Any) -> Any:
        text = rules.check_text(params.get("text"), params.get("parse_mode"), editing=False)
        return self._new_message(params, {"text": text})

    async def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        rules.check_caption(params.get("caption"), params.get("parse_mode"))
        upload = _upload(params, files, "photo")
        width, height = _image_size(upload.data)
        rules.check_photo_size(width, height)
        photo: dict[str, Any] = {"width": width, "height": height, "file_size": len(upload.data)}
        photo |= self._file_ids_pair()
        return self._new_message(params, {"photo": [photo], **_caption(params)})

    async def _api_sendDocument(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        rules.check_caption(params.get("caption"), params.get("parse_mode"))
        upload = _upload(params, files, "document")
        if len(upload.data) > rules.UPLOAD_MAX_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        document: dict[str, Any] = {"file_name": upload.filename, "mime_type": upload.content_type}
        document |= {"file_size": len(upload.data), **self._file_ids_pair()}
        return self._new_message(params, {"document": document, **_caption(params)})

    async def _api_editMessageText(self, params: dict[str, Any], files: Any) -> Any:
        message = self._editable(params)
        text = rules.check_text(params.get("text"), params.get("parse_mode"), editing=True)
        if "text" not in message:
            raise ApiError(400, rules.NO_TEXT_TO_EDIT)
        return self._edit(message, "text", text, params.get("reply_markup"))

    async def _api_editMessageCaption(self, params: dict[str, Any], files: Any) -> Any:
        message = self._editable(params)
        rules.check_caption(params.get("caption"), params.get("parse_mode"))
        if "text" in message:
            raise ApiError(400, rules.NO_CAPTION_TO_EDIT)
        caption = str(params.get("caption") or "")
        return self._edit(message, "caption", caption or None, params.get("reply_markup"))

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any], files: Any) -> Any:
        message = self._editable(params)
        return self._edit(message, None, None, params.get("reply_markup"))

    async def _api_deleteMessage(self, params: dict[str, Any], files: Any) -> Any:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if self._messages.pop(key, None) is None:
            raise ApiError(400, rules.DELETE_NOT_FOUND)
        return True

    def _file_ids_pair(self) -> dict[str, str]:
        number = next(self._file_ids)
        return {"file_id": f"file-{number}", "file_unique_id": f"u{number}"}

    def _editable(self, params: dict[str, Any]) -> dict[str, Any]:
        """The bot's message an edit aims at; refuses gone messages and other people's."""
        key = (int(params["chat_id"]), int(params["message_id"]))
        message = self._messages.get(key)
        if message is None:
            raise ApiError(400, rules.EDIT_NOT_FOUND)
        if message.get("from", {}).get("id") != self.bot["id"]:
            raise ApiError(400, rules.CANT_EDIT)
        rules.check_markup(params.get("reply_markup"))
        return message

    @staticmethod
    def _edit(message: dict[str, Any], key: str | None, value: Any, markup: Any) -> Any:
        """Apply an edit, refusing one that changes nothing ("message is not modified")."""
        before = (message.get(key) if key else None, message.get("reply_markup") or None)
        if before == (value, markup or None):
            raise ApiError(400, rules.NOT_MODIFIED)
        if key is not None:
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return message

    def _new_message(self, params: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        rules.check_markup(params.get("reply_markup"))
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


def _update_id(update: dict[str, Any]) -> int:
    value = update.get("update_id")
    return value if isinstance(value, int) else 0


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
    raise ApiError(400, f"Bad Request: there is no {name} in the request")


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
    raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")


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
