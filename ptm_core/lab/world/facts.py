"""A small synthetic encyclopedia: fictional countries and their capital, language and currency.

Every fact is stated in the pretraining corpus; general instruction data asks about the facts of
the train split, evaluation asks about the others, so answering them needs knowledge that
θ_pre stored (the lab's counterpart of MMLU-style world knowledge).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from ptm_core.lab.world.vocab import name_pool, split_of
from ptm_core.lab.world.example import Split

N_COUNTRIES = 60


@dataclass(frozen=True)
class Fact:
    subject: str  # country
    relation: str  # "capital" | "language" | "currency"
    value: str

    @property
    def key(self) -> str:
        return f"fact:{self.subject}|{self.relation}"

    @property
    def split(self) -> Split:
        return split_of(self.key)


# relation -> (statements for the corpus, questions for instructions)
RELATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "capital": (
        ("The capital of {s} is {v}.", "{v} is the capital of {s}.", "{s} has its capital in {v}."),
        ("What is the capital of {s}?", "Name the capital of {s}."),
    ),
    "language": (
        ("People in {s} speak {v}.", "The language of {s} is {v}.", "{v} is spoken in {s}."),
        ("What language do people in {s} speak?", "Which language is spoken in {s}?"),
    ),
    "currency": (
        ("The currency of {s} is the {v}.", "In {s} people pay with the {v}.", "{s} uses the {v} as money."),
        ("What is the currency of {s}?", "What do people in {s} pay with?"),
    ),
}


@lru_cache(maxsize=None)
def knowledge_base() -> tuple[Fact, ...]:
    countries = name_pool("country", N_COUNTRIES)
    cities = name_pool("city", N_COUNTRIES)
    tongues = name_pool("language", N_COUNTRIES)
    coins = name_pool("coin", N_COUNTRIES)
    rng = random.Random("facts")
    langs = [t + "ish" for t in tongues]
    rng.shuffle(langs)
    facts = []
    for i, c in enumerate(countries):
        facts.append(Fact(c, "capital", cities[i]))
        facts.append(Fact(c, "language", langs[i]))
        facts.append(Fact(c, "currency", coins[i].lower()))
    return tuple(facts)


@lru_cache(maxsize=None)
def facts_in(split: Split) -> tuple[Fact, ...]:
    return tuple(f for f in knowledge_base() if f.split == split)


def statement(fact: Fact, rng: random.Random) -> str:
    return rng.choice(RELATIONS[fact.relation][0]).format(s=fact.subject, v=fact.value)


def question(fact: Fact, rng: random.Random) -> str:
    return rng.choice(RELATIONS[fact.relation][1]).format(s=fact.subject)
