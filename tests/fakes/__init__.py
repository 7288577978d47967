"""Local fakes of external services (Telegram Bot API, ...) used by the tests."""
