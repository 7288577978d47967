"""Offline tokenizer folders for test and benchmark fixtures (no hub access).

- ``tokenizer/``: a real CLIP BPE tokenizer (``CLIPTokenizer``) built from the vocabulary that the
  ``open-clip-torch`` package ships (``bpe_simple_vocab_16e6.txt.gz``): 49408 ids, end-of-text last.
- ``tokenizer_2/``: a generated T5-style Unigram tokenizer (``T5TokenizerFast``-compatible
  ``tokenizer.json``). It is not T5's real vocabulary (no package ships ``spiece.model``); it gives
  the right special ids (pad 0, eos 1, unk 2) and splits text into character-level pieces.

Both functions are deterministic and return the number of ids in the written vocabulary.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import string
from pathlib import Path
from typing import Any

CLIP_VOCAB_SIZE = 49408
# Words kept whole by the generated T5 vocabulary; everything else falls back to characters.
_T5_WORDS = tuple(
    [
        "a",
        "an",
        "the",
        "of",
        "and",
        "with",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "is",
        "are",
        "photo",
        "portrait",
        "painting",
        "cat",
        "dog",
        "girl",
        "boy",
        "woman",
        "man",
        "city",
        "night",
        "day",
        "sky",
        "sea",
        "mountain",
        "forest",
        "flower",
        "red",
        "blue",
        "green",
        "white",
        "black",
        "light",
        "dark",
        "style",
        "art",
        "detailed",
        "beautiful",
    ]
)


def clip_bpe_path() -> Path:
    """Where open-clip-torch keeps the CLIP BPE merges (raises if the package is missing)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("open-clip-torch is not installed; it ships the CLIP BPE vocabulary")
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def clip_vocab_and_merges(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """Build CLIP's vocabulary exactly as open_clip's SimpleTokenizer does."""
    with gzip.open(bpe_path) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def write_clip_tokenizer(folder: Path) -> int:
    """Write a ``CLIPTokenizer`` folder (vocab.json, merges.txt, tokenizer.json, configs)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges(clip_bpe_path())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    pairs: Any = [tuple(m.split()) for m in merges]  # tokenizers wants pairs, not strings
    tokenizer = CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=77)
    tokenizer.save_pretrained(str(folder))
    return len(vocab)


def t5_vocab() -> list[tuple[str, float]]:
    """Unigram pieces with scores: specials, then words, then single characters."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -3.0) for w in _T5_WORDS]
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces += [("▁" + c, -6.0) for c in chars if c not in _T5_WORDS]
    pieces += [(c, -7.0) for c in chars]
    return pieces


def write_t5_tokenizer(folder: Path) -> int:
    """Write a ``T5TokenizerFast``-loadable folder (tokenizer.json + configs), offline."""
    import transformers

    t5_tokenizer: Any = transformers.T5TokenizerFast  # lazy alias
    vocab = t5_vocab()
    tokenizer = t5_tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return len(vocab)
