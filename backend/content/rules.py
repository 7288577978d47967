"""Prompt rules: blocked terms and patterns, matched on a folded form of the prompt.

Folding (``fold``), in order:

1. NFKC (full-width letters and digits become ASCII: ``ｎｕｄｅ`` → ``nude``), case folding;
2. invisible format characters (zero-width spaces and joiners, soft hyphens) are dropped;
3. accents are stripped (``nüde`` → ``nude``);
4. look-alike letters from Cyrillic and Greek become the Latin letter they imitate
   (``nudе`` with a Cyrillic ``е``), and leetspeak digits and signs become letters
   (``n00d``, ``p0rn``, ``s3x``, ``$ex``, ``@``);
5. punctuation *inside* a word joins it (``n.u.d.e``, ``nu-de``, ``s*e*x`` → one word), and a run
   of single letters separated by spaces is one word (``n u d e`` → ``nude``), inside which terms
   are looked for anywhere (``a n u d e`` → ``anude``);
6. words are separated by single spaces.

A term matches whole words of the folded prompt (with an optional plural ``s``/``es``), so
``Scunthorpe``, ``grape``, ``therapist`` or ``analysis`` never match ``cunt``, ``rape``,
``rapist`` or ``anal``. A term in a script without spaces between words (Chinese, Japanese) matches
anywhere, spaces ignored. Patterns are Python regular expressions searched in the folded prompt.

What it cannot catch: misspellings, synonyms, other languages than those listed, and a word split
by spaces into pieces longer than one letter (``nu de``). A rule list is a speed bump, not a wall;
the image check after generation is the second line.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.errors import ConfigError

if TYPE_CHECKING:
    from backend.config import ContentConfig

# The built-in list (``content.use_default_terms``): explicit sexual content, sexual content
# involving minors, and graphic gore. Plurals match on their own. Kept short on purpose: every
# word here is one nobody needs for an ordinary picture.
DEFAULT_TERMS: tuple[str, ...] = (
    # explicit sexual content
    "nude",
    "nudity",
    "naked",
    "nsfw",
    "porn",
    "porno",
    "pornography",
    "pornographic",
    "hentai",
    "xxx",
    "sex",
    "sexual intercourse",
    "intercourse",
    "orgasm",
    "genitals",
    "genitalia",
    "penis",
    "vagina",
    "vulva",
    "nipple",
    "topless",
    "erotic",
    "erotica",
    "bdsm",
    "blowjob",
    "cumshot",
    "masturbation",
    "masturbating",
    "rape",
    # minors
    "loli",
    "lolicon",
    "shotacon",
    "underage",
    "child porn",
    # gore
    "beheading",
    "beheaded",
    "dismembered",
    "disembowelled",
    # Chinese (matched anywhere: no spaces between words)
    "裸体",
    "裸照",
    "全裸",
    "色情",
    "黄图",
    "性交",
    "做爱",
    "露点",
    "萝莉",
    "血腥",
)

# Cyrillic and Greek letters that pass for Latin ones (after case folding).
_HOMOGLYPHS = {
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "п": "n",
    "и": "u",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "ɡ": "g",
    "α": "a",
    "β": "b",
    "ε": "e",
    "η": "n",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "ω": "w",
    "ѵ": "v",
}
# Leetspeak: digits and signs written for letters.
_LEET = {
    "0": "o",
    "1": "i",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
}
_FOLD_TABLE = str.maketrans({**_HOMOGLYPHS, **_LEET})
# The other reading of the ambiguous ones ("1oli", "n!pple", "|oli"), tried as well.
_FOLD_TABLE_ALT = str.maketrans({**_HOMOGLYPHS, **_LEET, "1": "l", "!": "i", "|": "l"})
_WORD_CHARS = re.compile(r"\w", re.UNICODE)
_PLURAL = "(?:s|es)?"


def _is_cjk(char: str) -> bool:
    """A letter of a script written without spaces between words."""
    name = unicodedata.name(char, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI"))


def fold(text: str, *, alternative: bool = False) -> str:
    """The prompt as the rules see it (module docstring): lower-case words, single spaces.

    ``alternative`` reads ``1`` as ``l`` (not ``i``), and ``!``/``|`` as letters.
    """
    return " ".join(_join_spelled_out(_words(text, alternative)))


def spelled_out(text: str, *, alternative: bool = False) -> list[str]:
    """Runs of three or more single letters (``a n u d e`` → ``anude``): a term is looked for
    anywhere inside them, since the word boundaries are gone (``a`` joined the run)."""
    runs = _join_spelled_out(_words(text, alternative), runs_only=True)
    return [run for run in runs if len(run) >= 3]


def _words(text: str, alternative: bool) -> list[str]:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = unicodedata.normalize("NFD", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    table = _FOLD_TABLE_ALT if alternative else _FOLD_TABLE
    text = unicodedata.normalize("NFC", text).translate(table)
    words = ["".join(c for c in chunk if _WORD_CHARS.match(c)) for chunk in text.split()]
    return [word for word in (w.replace("_", "") for w in words) if word]


def _join_spelled_out(words: list[str], *, runs_only: bool = False) -> list[str]:
    """``["draw", "n", "u", "d", "e"]`` → ``["draw", "nude"]``: single letters form one word."""
    joined: list[str] = []
    run = ""
    for word in words:
        if len(word) == 1:
            run += word
            continue
        if run:
            joined.append(run)
            run = ""
        if not runs_only:
            joined.append(word)
    if run:
        joined.append(run)
    return joined


def _term_regex(folded_term: str) -> str:
    """Whole words for a Latin-script term (plural allowed); anywhere for a CJK one."""
    escaped = re.escape(folded_term)
    if _is_cjk(folded_term[0]) or _is_cjk(folded_term[-1]):
        return escaped
    return rf"(?<!\w){escaped}{_PLURAL}(?!\w)"


@dataclass(frozen=True)
class RuleMatch:
    """Which rule refused a prompt, for logs: ``("term", 3)`` or ``("pattern", 0)``.

    Never the term itself (it may be offensive, and the log is read by people).
    """

    kind: str  # "term" or "pattern"
    index: int


class PromptRules:
    """Compiled terms and patterns; ``match`` says which rule (if any) refuses a prompt."""

    def __init__(self, terms: tuple[str, ...], patterns: tuple[str, ...] = ()) -> None:
        self.terms = terms
        folded = [fold(term) for term in terms]
        self._terms = [re.compile(_term_regex(term)) for term in folded if term]
        self._bare = [re.compile(re.escape(term.replace(" ", ""))) for term in folded if term]
        self._cjk = [_is_cjk(term[0]) or _is_cjk(term[-1]) for term in folded if term]
        self._patterns = [re.compile(pattern) for pattern in patterns]

    @classmethod
    def of(cls, content: ContentConfig) -> PromptRules:
        """The rules ``content`` configures (the defaults first, when used)."""
        defaults = DEFAULT_TERMS if content.use_default_terms else ()
        return cls((*defaults, *content.blocked_terms), content.blocked_patterns)

    def __len__(self) -> int:
        return len(self._terms) + len(self._patterns)

    def match(self, prompt: str) -> RuleMatch | None:
        """The first rule ``prompt`` breaks, or None."""
        if not len(self):
            return None
        readings = (fold(prompt), fold(prompt, alternative=True))
        runs = [*spelled_out(prompt), *spelled_out(prompt, alternative=True)]
        compact = readings[0].replace(" ", "")  # CJK: spaces do not separate words
        for index, (term, bare) in enumerate(zip(self._terms, self._bare, strict=True)):
            if any(term.search(folded) for folded in readings):
                return RuleMatch("term", index)
            if any(bare.search(run) for run in runs):
                return RuleMatch("term", index)
            if self._cjk[index] and bare.search(compact):
                return RuleMatch("term", index)
        for index, pattern in enumerate(self._patterns):
            if any(pattern.search(folded) for folded in readings):
                return RuleMatch("pattern", index)
        return None


def check_rules_config(content: ContentConfig) -> None:
    """Raise ``ConfigError`` for a term that folds to nothing or a pattern that does not compile."""
    for index, term in enumerate(content.blocked_terms):
        if not fold(term):
            raise ConfigError(
                f"content.blocked_terms[{index}] = {term!r}: has no letters or digits to match"
            )
    for index, pattern in enumerate(content.blocked_patterns):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"content.blocked_patterns[{index}] = {pattern!r}: not a valid regular "
                f"expression ({exc})"
            ) from None
        if compiled.search(""):
            raise ConfigError(
                f"content.blocked_patterns[{index}] = {pattern!r}: matches an empty prompt, "
                "so it would refuse everything"
            )
