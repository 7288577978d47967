"""Confirming Telegram updates only once they are handled: durable before announced.

``getUpdates`` confirms every update below its ``offset``. PTB's ``Updater`` asks for the next
batch (with the offset past the last one) as soon as it has queued the previous batch, while the
handlers of that batch still run concurrently: a crash then loses an ``/imagine`` Telegram will
never send again. Here the next ``getUpdates`` waits until every update of the previous batch was
handled (``UpdateLedger``): its job committed to SQLite and its status message sent, or its
refusal sent, or its handler failed and the error handler answered. A crash before that leaves
the batch unconfirmed, and Telegram delivers it again to the next process; the idempotency key
of ``/imagine`` (``telegram:<chat>:<message id>``) turns a re-delivered command into the job it
already made, never a second one (``bots.telegram.jobs``).

The wait is bounded (``CONFIRM_WAIT_S``): a handler stuck longer (a long 429 wait) lets polling
go on, with a warning naming the updates. Webhook mode confirms an update when PTB answers the
webhook request, which it does on receipt: re-delivery after a crash is then Telegram's only for
requests that were never answered (a documented limit; polling is the default).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from telegram import Bot, Update
from telegram.ext import SimpleUpdateProcessor

log = logging.getLogger("majicbot.telegram")

CONFIRM_WAIT_S = 30.0


class UpdateLedger:
    """Update ids fetched and not handled yet."""

    def __init__(self) -> None:
        self._pending: set[int] = set()
        self._settled = asyncio.Event()
        self._settled.set()

    def fetched(self, updates: Sequence[Update]) -> None:
        self._pending.update(u.update_id for u in updates)
        if self._pending:
            self._settled.clear()

    def handled(self, update: object) -> None:
        if isinstance(update, Update):
            self._pending.discard(update.update_id)
        if not self._pending:
            self._settled.set()

    async def settled(self, timeout_s: float) -> None:
        """Until every fetched update was handled, or ``timeout_s`` passed (logged)."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout_s)
        except TimeoutError:
            log.warning(
                "telegram: updates %s still being handled after %.0f s; confirming them anyway",
                sorted(self._pending),
                timeout_s,
            )


class LedgerUpdateProcessor(SimpleUpdateProcessor):
    """PTB's concurrent update processor that reports each update handled to the ledger."""

    def __init__(self, max_concurrent_updates: int, ledger: UpdateLedger) -> None:
        super().__init__(max_concurrent_updates)
        self._ledger = ledger

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        try:
            await coroutine
        finally:
            self._ledger.handled(update)


class ConfirmingBot:
    """The bot as the ``Updater`` sees it: ``get_updates`` first waits for the ledger."""

    def __init__(self, bot: Bot, ledger: UpdateLedger, wait_s: float = CONFIRM_WAIT_S) -> None:
        self._bot = bot
        self._ledger = ledger
        self._wait_s = wait_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bot, name)

    async def get_updates(self, *args: Any, **kwargs: Any) -> tuple[Update, ...]:
        await self._ledger.settled(self._wait_s)
        updates: tuple[Update, ...] = await self._bot.get_updates(*args, **kwargs)
        self._ledger.fetched(updates)
        return updates
