"""Seeded hostile command text for both platforms: what a new user types, and a hostile one.

``command_texts(rng, n)`` mixes prompt pieces (empty, invisible, control characters, ANSI
escapes, mentions, markup, format strings, right-to-left overrides, 4,000-character prompts…)
with option tokens (valid, misspelt, wrong dashes, wrong digits, out of range, duplicated,
conflicting, 4,078 nines…). The same seed gives the same inputs, so a failure is reproducible:
the failing input is in the assertion message.
"""

from __future__ import annotations

import random
from typing import Any

SEED = 13

PROMPT_PIECES = (
    "a red fox in the snow",
    "一只戴帽子的猫",
    "",
    "   ",
    "\u200b",
    "\u200d\u200c",
    "\x00",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;title\x07",
    "——",
    "--",
    "—",
    "…!?",
    "👩\u200d🚀",
    "\u202eevil\u202c",
    "<@123456789012345678>",
    "<@&123456789012345678> <#123456789012345678>",
    "@everyone @here",
    "`code` **bold** ~~x~~ ||spoiler||",
    "[link](http://example.com)",
    "<b>html</b> &amp;",
    "1024x768",
    "16:9",
    "%s %n {0} {prompt} {{}}",
    "\\",
    "e=mc2",
    "rock--steady -5 degrees",
    "a cat —the best",
    "²³",
    "\ufffd",
    "x" * 1001,
    "长" * 4000,
    "a" * 4090,
)
OPTION_TOKENS = (
    "--seed 42",
    "--seed=7",
    "seed=5",
    "——seed ４２",
    "—steps 3",
    "--steps 1",
    "--steps 0",
    "--steps 1000",
    "--steps ²",
    "--seed ٣",
    "--seed -1",
    "--seed " + "9" * 4078,
    "--seed 99999999999",
    "---seed 5",
    "--é 5",
    "--种子 5",
    "——style raw",
    "--" + "q" * 4083,
    "--ar 16:9",
    "--ar 5:4",
    "--ar <@123456789012345678>",
    "--ar " + "1" * 3000,
    "--ar 0:1",
    "--size 64x64",
    "--size 99999x99999",
    "--size 16x16",
    "--size 1024x768",
    "--size big",
    "--guidance 3.5",
    "--guidance nan",
    "--guidance 1e9",
    "--guidance -2",
    "--guidance 100",
    "--seed",
    "--seed --steps 2",
    "--seed 1 --seed 2",
    "--ar 1:1 --size 64x64",
    "--cfg 2,5",
)


def imagine_text(rng: random.Random, limit: int) -> str:
    """One /imagine argument: 0–3 prompt pieces and 0–3 option tokens, shuffled, ≤ ``limit``."""
    parts = rng.choices(PROMPT_PIECES, k=rng.randint(0, 3))
    parts += rng.choices(OPTION_TOKENS, k=rng.randint(0, 3))
    rng.shuffle(parts)
    return " ".join(parts)[:limit]


def junk(rng: random.Random, max_chars: int) -> str:
    """Short or long random text: digits, letters, dashes, symbols and invisible characters."""
    alphabet = "0123456789abcXYZ#@<>:-_—²٣\u200b\x00 猫/\\"
    size = rng.choice((0, 1, 3, 9, 40, 100, max_chars))
    return "".join(rng.choices(alphabet, k=size))


def telegram_command(rng: random.Random) -> str:
    """One message text a Telegram user may send (at most 4,096 characters, the client's max)."""
    roll = rng.random()
    if roll < 0.70:
        command = rng.choice(("/imagine", "/imagine@majic_test_bot"))
        text = f"{command} {imagine_text(rng, 4096)}"
    elif roll < 0.78:
        text = "/settings " + rng.choice(("reset", imagine_text(rng, 4000), junk(rng, 4000)))
    elif roll < 0.84:
        text = "/cancel " + rng.choice(("", "#", junk(rng, 4000)))
    elif roll < 0.90:
        args = ("", "5", "chat", "all 3", "²", "-1", "99999999999", "١٢", junk(rng, 4000))
        text = "/history " + rng.choice(args)
    elif roll < 0.94:
        text = rng.choice(("/ban ", "/unban ")) + rng.choice(("", "123", "²", junk(rng, 4000)))
    else:
        text = rng.choice(("/status", "/help", "/start", "/status extra", "/help " + "x" * 4000))
    return text[:4096]


# ---- Discord: raw option lists (``FakeDiscord.slash`` takes them as given) ------------------

STRING, INTEGER, BOOLEAN, USER, NUMBER = 3, 4, 5, 6, 10
_WRONG_VALUES: tuple[Any, ...] = (
    None, "", "abc", "²", -1, 0, 2**40, 3.5, float("1e308"), True, [1], {"a": 1}, "x" * 5000,
)  # fmt: skip
_TYPED: dict[str, tuple[int, tuple[Any, ...]]] = {
    "seed": (INTEGER, (42, 0, 4294967295)),
    "steps": (INTEGER, (1, 2, 50)),
    "aspect": (STRING, ("16:9", "1:1")),
    "guidance": (NUMBER, (3.5, 1.0, 10)),
}


def _option(rng: random.Random, name: str, kind: int, good: tuple[Any, ...]) -> dict[str, Any]:
    """``name`` with a good value (mostly), a wrong value, a wrong type code, or no value."""
    roll = rng.random()
    if roll < 0.6:
        return {"name": name, "type": kind, "value": rng.choice(good)}
    if roll < 0.85:
        return {"name": name, "type": kind, "value": rng.choice(_WRONG_VALUES)}
    if roll < 0.95:
        return {"name": name, "type": rng.choice((STRING, INTEGER, BOOLEAN, NUMBER, 1)),
                "value": rng.choice(good)}  # fmt: skip
    return {"name": name, "type": kind}


def imagine_options(rng: random.Random) -> list[dict[str, Any]]:
    """The options of a /imagine payload: prompt (mostly), typed options, extras, duplicates."""
    options = []
    if rng.random() < 0.9:
        prompt = imagine_text(rng, rng.choice((200, 1000, 1001, 6000, 7000)))
        options.append(_option(rng, "prompt", STRING, (prompt,)))
    for name in rng.sample(list(_TYPED), k=rng.randint(0, 3)):
        kind, good = _TYPED[name]
        options.append(_option(rng, name, kind, good))
    if rng.random() < 0.08:
        options.append({"name": rng.choice(("foo", "prompt", "seed", "")), "type": 3, "value": "x"})
    rng.shuffle(options)
    return options


def discord_command(rng: random.Random) -> tuple[str, list[dict[str, Any]]]:
    """A slash command name and its raw options, from sane to impossible."""
    roll = rng.random()
    if roll < 0.60:
        return "imagine", imagine_options(rng)
    if roll < 0.67:
        return "cancel", [_option(rng, "job", STRING, (junk(rng, 5000), "nojob"))] * rng.randint(
            0, 1
        )
    if roll < 0.72:
        return "history", [_option(rng, "count", INTEGER, (1, 5, 25))] * rng.randint(0, 1)
    if roll < 0.78:
        names = rng.sample(["steps", "aspect", "guidance", "reset"], k=rng.randint(0, 3))
        return "settings", [
            _option(rng, n, *(_TYPED.get(n) or (BOOLEAN, (True, False)))) for n in names
        ]
    if roll < 0.81:
        return "status", []
    if roll < 0.86:
        name = rng.choice(("ban", "unban"))
        return name, [_option(rng, "user", USER, ("600000000000000009",))] * rng.randint(0, 1)
    name = rng.choice(("imagine2", "IMAGINE", "", "x" * 200, "foo", "imagine"))
    return name, [{"name": "sub", "type": 1, "options": []}] if name == "imagine" else []


def custom_id(rng: random.Random, job_ids: list[str]) -> str:
    """A button's custom_id: ours for real or made-up jobs, or anything else."""
    action = rng.choice(("reroll", "vary", "delete", "cancel", "get", "foo", ""))
    return rng.choice(
        (
            f"mj:{action}:{rng.choice(job_ids or ['nojob'])}",
            f"mj:{action}:{junk(rng, 80)}",
            f"mj:{action}:",
            junk(rng, 100),
            "mj:get:../../etc/passwd",
            "x" * 100,
        )
    )
