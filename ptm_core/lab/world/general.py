"""General instruction tasks (the lab's G): six kinds, each scored by exact match.

Like the paper's general suite (MMLU, GSM8K, BBH, ...), "general ability" is the mean over
several abilities: arithmetic, list reversal, sorting, counting, repetition and fact lookup
(knowledge stored during pretraining). G also holds safe lookalike requests (lookalikes.py).

Each kind first draws its content (numbers, a list, a word) and keys it; an example belongs to
the split of its content key, and the pretraining corpus states train-split content only.
"""

from __future__ import annotations

import random
from typing import Callable

from ptm_core.lab.world import facts
from ptm_core.lab.world.example import Example, Split
from ptm_core.lab.world.vocab import ITEMS, name_pool, split_of

# Extra lower-case words for repetition, so its content space is large enough to split.
REPEAT_WORDS = ITEMS + tuple(w.lower() for w in name_pool("word", 60))


def in_split(draw: Callable[[random.Random], tuple], key: Callable[[tuple], str],
             rng: random.Random, split: Split) -> tuple:
    """Draw content until its key belongs to `split`."""
    while True:
        content = draw(rng)
        if split_of(key(content)) == split:
            return content


# --- content: (draw, key) per kind; shared with the corpus ---------------------------------

def draw_sum(rng: random.Random) -> tuple:
    """A two-digit number plus or minus a one-digit number (a tiny model can learn the carry)."""
    a, b = rng.randint(10, 59), rng.randint(0, 9)
    return (a, rng.choice("+-"), b)


def draw_items(rng: random.Random) -> tuple:
    return tuple(rng.sample(ITEMS, rng.randint(3, 5)))


def draw_digits(rng: random.Random) -> tuple:
    return tuple(rng.randint(0, 9) for _ in range(rng.randint(3, 5)))


def draw_bag(rng: random.Random) -> tuple:
    return tuple(rng.choice(ITEMS) for _ in range(rng.randint(2, 8)))


def draw_repeat(rng: random.Random) -> tuple:
    return (rng.choice(REPEAT_WORDS), rng.randint(2, 5))


def key_of(kind: str, content: tuple) -> str:
    return f"{kind}:" + "|".join(map(str, content))


def value(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b


# --- instruction examples ------------------------------------------------------------------

def arithmetic(rng: random.Random, split: Split) -> Example:
    a, op, b = c = in_split(draw_sum, lambda c: key_of("arithmetic", c), rng, split)
    templates = (("What is {a} + {b}?", "Compute {a} + {b}.", "Add {a} and {b}.") if op == "+" else
                 ("What is {a} - {b}?", "Compute {a} - {b}.", "Subtract {b} from {a}."))
    return Example("general", "arithmetic", rng.choice(templates).format(a=a, b=b),
                   str(value(a, op, b)), key=key_of("arithmetic", c))


def reverse(rng: random.Random, split: Split) -> Example:
    items = in_split(draw_items, lambda c: key_of("reverse", c), rng, split)
    template = rng.choice(("Reverse the list: {l}", "Write this list in reverse order: {l}"))
    return Example("general", "reverse", template.format(l=", ".join(items)),
                   ", ".join(reversed(items)), key=key_of("reverse", items))


def sort(rng: random.Random, split: Split) -> Example:
    numbers = in_split(draw_digits, lambda c: key_of("sort", c), rng, split)
    template = rng.choice(("Sort these numbers from smallest to largest: {l}",
                           "Put in increasing order: {l}"))
    return Example("general", "sort", template.format(l=", ".join(map(str, numbers))),
                   ", ".join(map(str, sorted(numbers))), key=key_of("sort", numbers))


def count(rng: random.Random, split: Split) -> Example:
    items = in_split(draw_bag, lambda c: key_of("count", c), rng, split)
    template = rng.choice(("How many items are in this list: {l}?",
                           "Count the words in this list: {l}"))
    return Example("general", "count", template.format(l=", ".join(items)), str(len(items)),
                   key=key_of("count", items))


def repeat(rng: random.Random, split: Split) -> Example:
    word, k = c = in_split(draw_repeat, lambda c: key_of("repeat", c), rng, split)
    template = rng.choice(("Repeat the word {w} {k} times.", "Say {w} {k} times."))
    return Example("general", "repeat", template.format(w=word, k=k), " ".join([word] * k),
                   key=key_of("repeat", c))


def fact_lookup(rng: random.Random, split: Split) -> Example:
    """A question about a fact of `split`: every fact lives in exactly one split."""
    fact = rng.choice(facts.facts_in(split))
    return Example("general", "facts", facts.question(fact, rng), fact.value, key=fact.key)


# The exact-match kinds of G, in report order.
GENERAL_KINDS: dict[str, Callable[[random.Random, Split], Example]] = {
    "arithmetic": arithmetic,
    "reverse": reverse,
    "sort": sort,
    "count": count,
    "repeat": repeat,
    "facts": fact_lookup,
}
