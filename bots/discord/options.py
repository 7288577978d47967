"""Check a slash command's raw options against its definition before discord.py reads them.

Discord enforces option types, bounds and choices for the payloads *its* client sends; a stale
client, a changed definition or a forged payload may carry anything. discord.py passes most of
it through (a string where an ``int`` was declared, a float beyond ``max_value``) or fails on it
with an exception of its own. :func:`check_options` refuses such a payload with one sentence
naming the option (``discord.bad_option``), before any product code runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from discord import AppCommandOptionType
from discord.app_commands import Command, Parameter

from backend import keys
from backend.errors import InvalidRequest

_SNOWFLAKE_MAX = 2**64 - 1


def check_options(command: Command[Any, ..., Any], options: object) -> None:
    """Raise ``InvalidRequest(discord.bad_option)`` unless ``options`` fit ``command``."""
    if not isinstance(options, list) or not all(isinstance(o, Mapping) for o in options):
        raise _bad("options")
    params = {param.display_name: param for param in command.parameters}
    given: dict[str, Mapping[str, Any]] = {}
    for option in options:
        name = option.get("name")
        if not isinstance(name, str) or name not in params or name in given:
            raise _bad(name if isinstance(name, str) else "?")
        given[name] = option
    for name, param in params.items():
        option = given.get(name)
        if option is None:
            if param.required:
                raise _bad(name)
        elif option.get("type") != param.type.value or not _fits(param, option.get("value")):
            raise _bad(name)


def _bad(name: str) -> InvalidRequest:
    return InvalidRequest(keys.DISCORD_BAD_OPTION, option=name)


def _fits(param: Parameter, value: object) -> bool:
    kind = param.type
    if param.choices and value not in [choice.value for choice in param.choices]:
        return False
    if kind is AppCommandOptionType.string:
        return isinstance(value, str) and _within(param, len(value) if value else 0)
    if kind is AppCommandOptionType.integer:
        return isinstance(value, int) and not isinstance(value, bool) and _within(param, value)
    if kind is AppCommandOptionType.number:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return is_number and math.isfinite(value) and _within(param, value)  # type: ignore[arg-type]
    if kind is AppCommandOptionType.boolean:
        return isinstance(value, bool)
    if kind in (AppCommandOptionType.user, AppCommandOptionType.mentionable):
        return _is_snowflake(value)
    return True  # types our commands do not declare: discord.py's business


def _within(param: Parameter, number: float) -> bool:
    low, high = param.min_value, param.max_value
    return (low is None or number >= low) and (high is None or number <= high)


def _is_snowflake(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and 0 < int(value[:21]) <= _SNOWFLAKE_MAX
    )
