"""A scan of every log record of the test run: no prompt or name at INFO or above.

Tests that want their prompts and names checked put ``PROMPT_MARKER`` in the prompt and
``NAME_MARKER`` in a user's name; ``tests/conftest.py`` installs ``LeakScan`` on the root logger for
the whole session (with majicbot's, PTB's and discord.py's loggers at INFO, so INFO records are
made at all) and fails any test after which a record at INFO or above carries a marker.
Prompts may appear at DEBUG only.
"""

from __future__ import annotations

import logging

PROMPT_MARKER = "zqx7-private-prompt"
NAME_MARKER = "Zqx7Name"
MARKERS = (PROMPT_MARKER, NAME_MARKER, NAME_MARKER.lower())
SCANNED_LOGGERS = ("majicbot", "telegram", "discord", "simcord")


class LeakScan(logging.Handler):
    """Keeps every record at INFO or above whose message or traceback carries a marker."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.leaks: list[str] = []
        self.seen = 0  # records at INFO or above: the scan saw something

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1
        try:
            text = record.getMessage()
        except Exception:  # a broken format string: scan its parts
            text = f"{record.msg} {record.args}"
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            text += record.exc_text
        if any(marker in text for marker in MARKERS):
            self.leaks.append(f"{record.levelname} {record.name}: {text}")

    def take(self) -> list[str]:
        leaks, self.leaks = self.leaks, []
        return leaks
