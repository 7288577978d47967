"""The per-platform side of following one job: where its status and result appear."""

from __future__ import annotations

from typing import Protocol

from backend.domain import Job
from bots.follow.budget import Lane
from bots.follow.policy import Failure


class Surface(Protocol):
    """One job's place in a chat. Methods raise the platform's errors; ``classify`` reads them.

    ``anew`` means the in-place target (status message, interaction response) is gone: post a
    new message in the chat or channel instead, addressed to the user.
    """

    lang: str
    lane: Lane  # where this job's status edits are budgeted

    async def show(self, text: str, *, cancellable: bool) -> None:
        """Put ``text`` in the status (with a Cancel button while ``cancellable``)."""
        ...

    async def keep_alive(self) -> None:
        """Called every few seconds while the job runs (Telegram: the "sending photo" action)."""
        ...

    async def send_result(self, job: Job, *, anew: bool) -> str | None:
        """The finished image with its caption and buttons; the id of the message showing it
        (recorded by the follower: the result buttons work on that message only)."""
        ...

    async def remove_status(self) -> None:
        """After the result is delivered and recorded: the status message goes, if separate."""
        ...

    async def send_final(self, text: str, *, anew: bool) -> None:
        """The sentence a job ended with when there is no image (failed, cancelled)."""
        ...

    def classify(self, error: Exception) -> Failure:
        """What ``error`` (raised by one of the methods above) means."""
        ...
