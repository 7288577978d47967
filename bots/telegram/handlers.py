"""Telegram handlers, one per concern, and the single error handler.

Handlers translate between chat and backend and hold no business rules: bans, allowlists,
quotas, bounds and ownership are the backend's, raised as ``UserError``. Every ``UserError``
(``ParseError`` included) reaches the user through ``on_error`` — the one place that maps errors
to replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from telegram import CallbackQuery, Message, Update
from telegram.constants import ChatType
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters

from backend.domain import (
    HistoryScope,
    JobAction,
    JobStatus,
    MessageRef,
    Platform,
    ReplyTarget,
    Requester,
    Submission,
)
from backend.errors import InvalidRequest, JobNotFound, UserError
from bots.i18n import pick_language, translate
from bots.parsing import parse_imagine, parse_settings, to_request
from bots.render import render_history, render_settings, render_status, shorten
from bots.telegram.jobs import TelegramJobs
from bots.telegram.keyboards import Action, ButtonPress, decode, history_keyboard
from bots.telegram.policy import register_policy
from bots.telegram.surface import send_photo

log = logging.getLogger("majicbot.telegram")

Context = ContextTypes.DEFAULT_TYPE
HISTORY_DEFAULT = 10
HISTORY_ASK_MAX = 1000  # the service caps it further; this only keeps the number small
# Registered with setMyCommands in this order (/ban and /unban are admin tools: not listed).
COMMANDS = ("imagine", "settings", "status", "history", "cancel", "help", "start")
RESET_WORDS = ("reset", "重置")
TEXT_LIMIT = 4096  # characters of a message
ALERT_LIMIT = 200  # characters of a callback query's answer


class TelegramHandlers:
    """The bot's commands and buttons, bound to one ``TelegramJobs`` (and so to the service)."""

    def __init__(self, jobs: TelegramJobs) -> None:
        self.jobs = jobs
        self.service = jobs.service
        self.default_language = jobs.config.telegram.default_language

    def register(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Add every handler and the error handler to ``application``."""
        only_new = filters.UpdateType.MESSAGE  # an edited "/imagine" must not start a second job
        application.add_handler(CommandHandler("imagine", self.imagine, only_new))
        application.add_handler(CommandHandler("status", self.status, only_new))
        application.add_handler(CommandHandler("history", self.history, only_new))
        application.add_handler(CommandHandler("cancel", self.cancel, only_new))
        application.add_handler(CommandHandler("settings", self.settings, only_new))
        application.add_handler(CommandHandler("ban", self.ban, only_new))
        application.add_handler(CommandHandler("unban", self.unban, only_new))
        application.add_handler(CommandHandler(["start", "help"], self.help, only_new))
        register_policy(application, self)  # issue 16: /policy
        application.add_handler(CallbackQueryHandler(self.button))
        application.add_error_handler(self.on_error)

    # ---- who and which language ----------------------------------------------------------------

    def requester(self, update: Update) -> Requester:
        user, chat = update.effective_user, update.effective_chat
        assert user is not None and chat is not None
        return Requester(
            platform=Platform.TELEGRAM,
            user_id=str(user.id),
            display_name=user.username or user.full_name,
            chat_id=str(chat.id),
            language=user.language_code or self.default_language,
        )

    def language(self, update: object) -> str:
        user = update.effective_user if isinstance(update, Update) else None
        return pick_language(user.language_code if user else None, self.default_language)

    # ---- commands ------------------------------------------------------------------------------

    async def help(self, update: Update, context: Context) -> None:
        """/start and /help: what the bot does, with examples."""
        assert update.effective_message is not None
        await update.effective_message.reply_text(translate("help.text", self.language(update)))

    async def imagine(self, update: Update, context: Context) -> None:
        """/imagine <prompt> [options]: queue a job and follow it."""
        message = update.effective_message
        assert message is not None
        requester = self.requester(update)
        quoted = await self._quoted_text(message, requester)
        parsed = parse_imagine(f"{quoted} {' '.join(context.args or [])}")
        key = f"telegram:{requester.chat_id}:{message.message_id}"

        def submit(target: ReplyTarget) -> Any:
            return self.service.submit(to_request(parsed, requester, target, idempotency_key=key))

        await self.jobs.start(
            requester.chat_id or "", message.message_id, self.language(update), submit
        )

    async def status(self, update: Update, context: Context) -> None:
        """/status (admins): the backend status snapshot."""
        assert update.effective_message is not None
        snapshot = await self.service.status(self.requester(update))
        text = render_status(snapshot, self.language(update))
        await update.effective_message.reply_text(text)

    async def history(self, update: Update, context: Context) -> None:
        """/history [n] (admins: /history chat|all [n]): the last jobs, with buttons to resend."""
        assert update.effective_message is not None
        scope, limit = _history_args(context.args or [])
        if scope is HistoryScope.USER and not _is_private(update):
            scope = HistoryScope.USER_IN_CHAT  # a group sees only what was asked in it
        jobs = await self.service.history(self.requester(update), scope, limit)
        lang = self.language(update)
        header = {
            HistoryScope.USER: "history.header",
            HistoryScope.USER_IN_CHAT: "history.header",
            HistoryScope.CHAT: "history.header_chat",
            HistoryScope.ALL: "history.header_all",
        }[scope]
        text = render_history(jobs, lang, time.time(), header)
        keyboard = history_keyboard(jobs, lang)
        if keyboard is not None:
            text += "\n" + translate("history.hint", lang)
        await update.effective_message.reply_text(text, reply_markup=keyboard)

    async def cancel(self, update: Update, context: Context) -> None:
        """/cancel [job]: cancel one's newest queued or running job, or the one named."""
        assert update.effective_message is not None
        requester, lang = self.requester(update), self.language(update)
        job_id = (context.args or [""])[0].lstrip("#")
        if job_id:
            await self.service.cancel(job_id, requester)
        else:
            job_id = (await self.service.cancel_latest(requester)).id
        await update.effective_message.reply_text(translate("cancel.done", lang, job_id=job_id))

    async def settings(self, update: Update, context: Context) -> None:
        """/settings [--steps N] [--ar W:H | --size WxH] [--guidance X] | reset: one's defaults."""
        assert update.effective_message is not None
        requester, lang = self.requester(update), self.language(update)
        text = " ".join(context.args or [])
        lines: list[str] = []
        if text.strip().lower() in RESET_WORDS:
            await self.service.accounts.reset_defaults(requester)
            lines.append(translate("settings.reset_done", lang))
        elif text.strip():
            await self.service.accounts.set_defaults(requester, parse_settings(text))
            lines.append(translate("settings.saved", lang))
        lines.append(render_settings(self.service.accounts.settings(requester), lang))
        lines.append(translate("settings.hint", lang))
        await update.effective_message.reply_text("\n".join(lines))

    async def ban(self, update: Update, context: Context) -> None:
        """/ban <user id>, or /ban as a reply to the user's message (admins)."""
        await self._set_banned(update, context.args or [], banned=True)

    async def unban(self, update: Update, context: Context) -> None:
        """/unban <user id>, or /unban as a reply to the user's message (admins)."""
        await self._set_banned(update, context.args or [], banned=False)

    async def _set_banned(self, update: Update, args: list[str], *, banned: bool) -> None:
        message = update.effective_message
        assert message is not None
        requester = self.requester(update)
        usage = "ban.usage" if banned else "ban.unban_usage"
        user_id, label = _ban_target(message, args, usage)
        await self.service.accounts.set_banned(requester, user_id, banned=banned)
        done = "ban.done" if banned else "ban.undone"
        await message.reply_text(translate(done, self.language(update), user=label))

    # ---- buttons ---------------------------------------------------------------------------------

    async def button(self, update: Update, context: Context) -> None:
        """Every inline button; each press is answered (errors are answered by ``on_error``)."""
        query = update.callback_query
        assert query is not None
        press = decode(query.data)
        lang = self.language(update)
        if press is None or not isinstance(query.message, Message):
            await query.answer(translate("cb.expired", lang))
            return
        answer_key = await self._press(press, query, query.message, update)
        if answer_key is not None:
            await query.answer(translate(answer_key, lang))

    async def _press(
        self, press: ButtonPress, query: CallbackQuery, message: Message, update: Update
    ) -> str | None:
        """Do what the button says; the translation key of the answer (None: already answered).

        The service checks the job against the message the button is on (``where``, which
        Telegram fills in: unlike the callback data, it cannot be forged).
        """
        requester, lang = self.requester(update), self.language(update)
        where = MessageRef(str(message.chat_id), str(message.message_id))
        if press.action is Action.CANCEL:
            await self.service.cancel(press.job_id, requester, where)
            return "cb.cancelling"
        if press.action in (Action.REROLL, Action.VARIATION):
            await self._reroll(press, message, requester, lang, where)
            return "cb.queued"
        if press.action is Action.DELETE:
            await self.service.delete(press.job_id, requester, where)
            return await _delete(message)
        action = JobAction.ORIGINAL if press.action is Action.ORIGINAL else JobAction.GET
        job = await self.service.job_for_action(press.job_id, requester, action, where)
        if job.status is not JobStatus.SUCCEEDED or job.result_path is None:
            return "cb.not_ready"
        unblurred = press.action is Action.ORIGINAL  # issue 16: withheld and spoilered images
        self.service.content.check_deliverable(job, requester, unblurred=unblurred)
        await query.answer(translate("cb.sending", lang))
        if press.action is Action.ORIGINAL:
            await self._send_original(message, job.id, job.result_path)
            return None
        chat_id = str(message.chat_id)
        sent = await send_photo(
            self.jobs.bot, job, chat_id, lang, message.message_id, self.jobs.tuning
        )
        await self.service.deliveries.attach_result(job.id, str(sent.message_id), chat_id)
        return None

    async def _reroll(
        self,
        press: ButtonPress,
        message: Message,
        requester: Requester,
        lang: str,
        where: MessageRef,
    ) -> Submission:
        variation = press.action is Action.VARIATION

        def submit(target: ReplyTarget) -> Any:
            return self.service.reroll(
                press.job_id, requester, target, variation=variation, where=where
            )

        return await self.jobs.start(str(message.chat_id), message.message_id, lang, submit)

    async def _quoted_text(self, message: Message, requester: Requester) -> str:
        """The text ``/imagine`` replies to: a message's text, or for the bot's own photo the
        job's stored prompt (its caption also carries the details line)."""
        replied = message.reply_to_message
        if replied is None:
            return ""
        job_id = _job_of_bot_photo(replied, self.jobs.bot.id)
        if job_id is None:
            return replied.text or replied.caption or ""
        try:
            return (await self.service.job(job_id, requester)).params.prompt
        except JobNotFound:
            return (replied.caption or "").rpartition("\n")[0]

    async def _send_original(self, message: Message, job_id: str, path: Path) -> None:
        data = await asyncio.to_thread(path.read_bytes)
        await message.reply_document(
            data, filename=f"majicbot-{job_id}.png", disable_content_type_detection=True
        )

    # ---- errors ---------------------------------------------------------------------------------

    async def on_error(self, update: object, context: Context) -> None:
        """The one place errors become replies: ``UserError`` as a sentence, the rest logged."""
        error = context.error
        lang = self.language(update)
        if isinstance(error, UserError):
            text = translate(error.key, lang, **error.params)
            log.info("refused (%s) for %s", error.key, _who(update))
        else:  # never the whole update: it carries the prompt and the user's names
            log.error("error while handling %s", _who(update), exc_info=error)
            text = translate("error.generic", lang)
        if not isinstance(update, Update):
            return
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(shorten(text, ALERT_LIMIT), show_alert=True)
            elif update.effective_message is not None:
                await update.effective_message.reply_text(shorten(text, TEXT_LIMIT))
        except Exception:  # the reply itself failed: nothing more we can tell the user
            log.warning("could not send the error reply", exc_info=True)


def _who(update: object) -> str:
    """The update, user and chat ids of ``update`` for a log line (no text, no names)."""
    if not isinstance(update, Update):
        return f"a {type(update).__name__}"
    user, chat = update.effective_user, update.effective_chat
    return (
        f"update {update.update_id} from user {user.id if user else '-'} "
        f"in chat {chat.id if chat else '-'}"
    )


def _is_private(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type == ChatType.PRIVATE


def _job_of_bot_photo(message: Message, bot_id: int) -> str | None:
    """The job id of one of the bot's result photos (from its buttons), else None."""
    author = message.from_user
    if author is None or author.id != bot_id or not message.photo:
        return None
    markup = message.reply_markup
    for row in markup.inline_keyboard if markup is not None else ():
        for button in row:
            data = button.callback_data
            press = decode(data) if isinstance(data, str) else None
            if press is not None:
                return press.job_id
    return None


async def _delete(message: Message) -> str:
    """Delete a result photo; the answer's key ("already deleted" for a second press)."""
    try:
        await message.delete()
    except BadRequest as exc:
        if "not found" not in exc.message.lower():
            raise
        return "cb.already_deleted"
    return "cb.deleted"


def _ban_target(message: Message, args: list[str], usage_key: str) -> tuple[str, str]:
    """(user id, how to name them) from ``/ban 12345`` or ``/ban`` replying to their message."""
    if len(args) == 1 and args[0].isascii() and args[0].isdigit():
        return args[0], args[0]
    replied = message.reply_to_message
    author = replied.from_user if replied is not None else None
    if not args and author is not None and not author.is_bot:
        return str(author.id), f"{author.full_name} ({author.id})"
    raise InvalidRequest(usage_key)


def _history_args(args: list[str]) -> tuple[HistoryScope, int]:
    """``[n]``, ``chat [n]`` or ``all [n]``; raises ``InvalidRequest("history.usage")``."""
    scope = HistoryScope.USER
    rest = list(args)
    if rest and rest[0].lower() in (HistoryScope.CHAT.value, HistoryScope.ALL.value):
        scope = HistoryScope(rest.pop(0).lower())
    if len(rest) > 1 or (rest and not (rest[0].isascii() and rest[0].isdigit())):
        raise InvalidRequest("history.usage")
    limit = int(rest[0][:6]) if rest else HISTORY_DEFAULT
    return scope, max(1, min(limit, HISTORY_ASK_MAX))
