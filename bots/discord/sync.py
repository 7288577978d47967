"""Command sync that only talks to Discord when the command definitions changed.

Discord allows about 200 command creations per day per guild, so syncing on every start is a
bad habit. The translated payload of each scope (global, or one test guild) is hashed and the
hash kept in ``<data_dir>/discord_commands.json``; a scope is synced only when its hash differs.

A scope no longer used is emptied, so that a guild never shows a command twice: with
``test_guilds`` the global scope must be empty (and is emptied once, even without a record of
what it held: an earlier global sync may have left commands there); a test guild that was
dropped from the config and has a record is emptied too. An emptied scope is recorded with the
hash of an empty list, so it is not emptied again on every start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger("majicbot.discord.sync")

GLOBAL_SCOPE = "global"


async def command_payload(
    tree: app_commands.CommandTree[Any], guild: discord.abc.Snowflake | None
) -> list[dict[str, Any]]:
    """Exactly what ``tree.sync(guild=...)`` would send (translations included)."""
    commands = tree._get_all_commands(guild=guild)  # the same list sync() uses
    translator = tree.translator
    if translator is None:
        return [command.to_dict(tree) for command in commands]
    return [await command.get_translated_payload(tree, translator) for command in commands]


def payload_hash(application_id: int, payload: list[dict[str, Any]]) -> str:
    """Stable digest of one scope's payload; the application id is part of it (new bot → sync)."""
    blob = json.dumps([application_id, payload], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_hashes(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_hashes(path: Path, hashes: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(hashes, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


async def _empty_scope(tree: app_commands.CommandTree[Any], application_id: int, name: str) -> None:
    """Remove every command of one scope (``tree.sync`` cannot: it sends the tree's own)."""
    http = tree.client.http
    if name == GLOBAL_SCOPE:
        await http.bulk_upsert_global_commands(application_id, payload=[])
    else:
        await http.bulk_upsert_guild_commands(application_id, int(name), payload=[])
    log.info("removed the application commands of the unused scope %s", name)


async def sync_if_changed(
    tree: app_commands.CommandTree[Any],
    application_id: int,
    test_guilds: tuple[str, ...],
    state_path: Path,
) -> list[str]:
    """Sync each scope whose payload changed; returns the scopes synced ("global" or guild ids).

    With ``test_guilds`` the global commands are copied into each guild (instant updates while
    developing) and nothing is synced globally.
    """
    scopes: list[discord.abc.Snowflake | None] = [discord.Object(int(g)) for g in test_guilds]
    for guild in scopes:
        assert guild is not None
        tree.copy_global_to(guild=guild)
    if not scopes:
        scopes = [None]
    hashes = await asyncio.to_thread(_read_hashes, state_path)
    synced: list[str] = []
    for guild in scopes:
        name = GLOBAL_SCOPE if guild is None else str(guild.id)
        digest = payload_hash(application_id, await command_payload(tree, guild))
        if hashes.get(name) == digest:
            continue
        await tree.sync(guild=guild)
        hashes[name] = digest
        synced.append(name)
        await asyncio.to_thread(_write_hashes, state_path, hashes)
    in_use = {GLOBAL_SCOPE if guild is None else str(guild.id) for guild in scopes}
    unused = {name for name in hashes if name not in in_use}
    if test_guilds:
        unused.add(GLOBAL_SCOPE)
    empty = payload_hash(application_id, [])
    for name in sorted(unused):
        if hashes.get(name) == empty:
            continue
        await _empty_scope(tree, application_id, name)
        hashes[name] = empty
        synced.append(name)
        await asyncio.to_thread(_write_hashes, state_path, hashes)
    if synced:
        log.info("synced application commands: %s", ", ".join(synced))
    else:
        log.info("application commands unchanged; not syncing")
    return synced
