"""Tokens never reach the log, whichever logger writes them and however."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from backend.logs import REDACTED, setup_logging

TOKEN = "123456:ABC-secret-token-value"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    setup_logging("DEBUG", [TOKEN, ""], stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def test_token_in_message_args_and_url_is_redacted(log_stream: io.StringIO) -> None:
    logging.getLogger("httpx").warning(
        "HTTP Request: POST https://api.telegram.org/bot%s/getMe", TOKEN
    )
    logging.getLogger("majicbot.telegram").info("token is %s", TOKEN)
    logging.getLogger("majicbot.x").error(f"f-string with {TOKEN} inside")
    text = log_stream.getvalue()
    assert TOKEN not in text
    assert text.count(REDACTED) == 3
    assert f"https://api.telegram.org/bot{REDACTED}/getMe" in text


def test_token_in_exception_traceback_is_redacted(log_stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"request to /bot{TOKEN}/sendPhoto failed")
    except RuntimeError:
        logging.getLogger("majicbot.telegram").exception("delivery failed")
    text = log_stream.getvalue()
    assert "delivery failed" in text
    assert "RuntimeError: request to /bot<redacted>/sendPhoto failed" in text
    assert TOKEN not in text


def test_job_lines_keep_their_fields(log_stream: io.StringIO) -> None:
    logging.getLogger("majicbot.service").info(
        "job %s queued user=%s platform=%s", "abc123", "42", "telegram"
    )
    line = log_stream.getvalue().strip()
    assert line.endswith("INFO    majicbot.service: job abc123 queued user=42 platform=telegram")
