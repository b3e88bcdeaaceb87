"""Word pools and synthetic names shared by the generators.

Names are made from syllables so that they are new words (no real-world knowledge helps), and
each name belongs to one split, train, val or test, by a stable hash: examples of a split use
names of that split only, so an evaluation item can never coincide with a training item.
"""

from __future__ import annotations

import random
import zlib
from functools import lru_cache
from typing import Sequence

from ptm_core.lab.world.example import Split

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr", "st")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "n", "r", "l", "s")

# Everyday words for list tasks and templates (lower case, short).
ITEMS = (
    "apple", "pear", "fig", "plum", "kiwi", "lemon", "grape", "melon", "peach", "lime",
    "cat", "dog", "fox", "owl", "bee", "cow", "duck", "frog", "goat", "hen",
    "red", "blue", "green", "pink", "gold", "gray", "tan", "black", "white", "brown",
    "cup", "pen", "hat", "box", "key", "map", "bag", "car", "bus", "book",
)


def split_of(key: str, eval_share: float = 0.25) -> Split:
    """The fixed split of a name or fact: `eval_share` of all keys, halved, go to val and test."""
    bucket = zlib.crc32(key.encode()) % 1000
    if bucket < eval_share * 500:
        return "test"
    if bucket < eval_share * 1000:
        return "val"
    return "train"


def make_word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(syllables))


@lru_cache(maxsize=None)
def name_pool(kind: str, size: int, seed: int = 7) -> tuple[str, ...]:
    """`size` distinct capitalised names for `kind` (e.g. "protein"), the same on every call."""
    rng = random.Random(f"{kind}-{seed}")
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < size:
        word = make_word(rng, rng.choice((2, 2, 3))).capitalize()
        if word not in seen and 4 <= len(word) <= 10:
            seen.add(word)
            names.append(word)
    return tuple(names)


def names_in(names: Sequence[str], split: Split) -> tuple[str, ...]:
    """The names of `names` that belong to `split`."""
    return tuple(n for n in names if split_of(n) == split)
