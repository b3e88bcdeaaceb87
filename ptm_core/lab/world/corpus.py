"""The pretraining corpus: plain documents (no chat format) that give θ_pre its knowledge.

Encyclopedia entries state every fact of the knowledge base; arithmetic and counting lines,
restated lists, science-style passages, commented Python functions and a few short chats give
the raw material the instruction tasks and skills build on, as web text does for a real base
model. Lists,
sums, passages and functions use train-split content only, so no evaluation example (nor its
content) occurs in the corpus.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator

from ptm_core.lab.tokenizer import render_prompt
from ptm_core.lab.world import coding, facts, general, science
from ptm_core.lab.world.vocab import ITEMS


def encyclopedia_entry_of(country: str, rng: random.Random) -> str:
    entry = [f for f in facts.knowledge_base() if f.subject == country]
    rng.shuffle(entry)
    return f"{country} is a country. " + " ".join(facts.statement(f, rng) for f in entry)


def encyclopedia_entry(rng: random.Random) -> str:
    return encyclopedia_entry_of(rng.choice(facts.knowledge_base()).subject, rng)


def _train(draw, kind: str, rng: random.Random) -> tuple:
    """Content of the train split only: evaluation content never appears in the corpus."""
    return general.in_split(draw, lambda c: general.key_of(kind, c), rng, "train")


def arithmetic_lines(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(3, 6)):
        a, op, b = _train(general.draw_sum, "arithmetic", rng)
        lines.append(f"{a} {op} {b} = {general.value(a, op, b)}")
    return "\n".join(lines)


def list_note(rng: random.Random) -> str:
    """Lists restated: copied, reversed, sorted, counted or repeated (train content only)."""
    which = rng.choice(("copy", "copy", "reverse", "sort", "count", "repeat"))
    if which == "copy":
        items = rng.sample(general.ITEMS, rng.randint(3, 6))
        return f"List: {', '.join(items)}. Again: {', '.join(items)}."
    if which == "reverse":
        items = _train(general.draw_items, "reverse", rng)
        return f"Items: {', '.join(items)}. Backwards: {', '.join(reversed(items))}."
    if which == "sort":
        digits = _train(general.draw_digits, "sort", rng)
        return f"Numbers: {', '.join(map(str, digits))}. In order: {', '.join(map(str, sorted(digits)))}."
    if which == "count":
        bag = _train(general.draw_bag, "count", rng)
        return f"Items: {', '.join(bag)}. That makes {len(bag)} items."
    word, k = _train(general.draw_repeat, "repeat", rng)
    return f"The word {word}, {k} times: {' '.join([word] * k)}."


def counting_line(rng: random.Random) -> str:
    start = rng.randint(0, 90)
    return "Counting: " + ", ".join(str(i) for i in range(start, start + rng.randint(3, 9))) + "."


def science_passage(rng: random.Random) -> str:
    return science.corpus_passage(rng)


def code_snippet(rng: random.Random) -> str:
    return coding.corpus_snippet(rng)


SENTENCES = ("The {w} is on the table.", "I saw a {w} this morning.", "My friend likes the {w}.",
             "There is a {w} in the picture.", "We talked about the {w} all day.")


def chat(rng: random.Random) -> str:
    """A short conversation in the chat template, as base models see on the web: so that the
    template's tokens mean something before any instruction tuning. Never a G task or a skill."""
    which = rng.choice(("about", "sentence", "next"))
    if which == "about":
        country = rng.choice(facts.knowledge_base()).subject
        user = rng.choice(("Tell me about {c}.", "What do you know about {c}?")).format(c=country)
        reply = encyclopedia_entry_of(country, rng)
    elif which == "sentence":
        word = rng.choice(ITEMS)
        user = f"Write a sentence with the word {word}."
        reply = rng.choice(SENTENCES).format(w=word)
    else:
        n = rng.randint(0, 98)
        user, reply = f"What number comes after {n}?", str(n + 1)
    return render_prompt(user) + reply  # packing adds the EOS that ends the reply


# document kind -> (generator, share of documents): the `plain` mix, the shipped lab's.
DOCUMENT_KINDS: dict[str, tuple[Callable[[random.Random], str], float]] = {
    "encyclopedia": (encyclopedia_entry, 0.18),
    "arithmetic": (arithmetic_lines, 0.07),
    "counting": (counting_line, 0.03),
    "lists": (list_note, 0.18),
    "science": (science_passage, 0.28),
    "code": (code_snippet, 0.14),
    "chat": (chat, 0.12),
}



def _chat_mix() -> dict[str, tuple[Callable[[random.Random], str], float]]:
    """The `chat` mix: the plain documents scaled down to make room for chats.CHAT_KINDS."""
    from ptm_core.lab.world.chats import CHAT_KINDS

    room = 1.0 - sum(share for _, share in CHAT_KINDS.values())
    return {**{k: (gen, share * room) for k, (gen, share) in DOCUMENT_KINDS.items()}, **CHAT_KINDS}


MIXES: dict[str, Callable[[], dict]] = {"plain": lambda: DOCUMENT_KINDS, "chat": _chat_mix}


def documents(seed: int, mix: str = "plain") -> Iterator[str]:
    """An endless, seeded stream of corpus documents of `mix` (see MIXES)."""
    try:
        kinds_of = MIXES[mix]()
    except KeyError:
        raise ValueError(f"unknown corpus mix {mix!r}; choose one of {sorted(MIXES)}") from None
    rng = random.Random(f"corpus-{seed}")
    kinds = list(kinds_of)
    weights = [kinds_of[k][1] for k in kinds]
    while True:
        kind = rng.choices(kinds, weights)[0]
        yield kinds_of[kind][0](rng)
