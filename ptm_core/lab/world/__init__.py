"""The lab's synthetic world: seeded generators for G, the three skills and the corpus.

`build_world(config)` is pure: the same config gives the same examples. Splits share no
example: each example has a key (its content: a list, a fact, a substance, a function name,
else its prompt) and belongs to the split that a stable hash of the key names.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from ptm_core.lab.world import coding, general, lookalikes, science, unsafe
from ptm_core.lab.world.example import SPLITS, Example, Split, prompt_key
from ptm_core.lab.world.vocab import split_of

WORLD_VERSION = "1"

# Paper, Table 1: training set sizes of G (modified Tülu V2) and the three skill data sets.
TABLE1_SIZES: dict[str, int] = {"general": 275_464, "science": 61_349, "safety": 66_161,
                                "coding": 156_526}
SKILLS: tuple[str, ...] = ("science", "coding", "safety")

Generator = Callable[[random.Random, Split], Example]

# The parts of each data set, drawn in equal shares.
PARTS: dict[str, dict[str, Generator]] = {
    "general": {**general.GENERAL_KINDS, "safe": lookalikes.lookalike},
    "science": {"science": science.question_example},
    "coding": {"coding": coding.problem},
    "safety": {"unsafe": unsafe.unsafe_request},
}


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    scale: float = 0.01  # fraction of the paper's Table 1 sizes
    # Evaluation items per part of each data set (val, test); capped by what the split holds.
    val_per_part: int = 30
    test_per_part: int = 60
    min_train: int = 8  # so tiny profiles still train on every part

    def train_size(self, domain: str) -> int:
        return max(self.min_train, round(TABLE1_SIZES[domain] * self.scale))


@dataclass
class World:
    config: WorldConfig
    data: dict[str, dict[str, list[Example]]] = field(default_factory=dict)  # split -> domain

    def examples(self, split: Split, domain: str) -> list[Example]:
        return self.data[split][domain]

    def sizes(self, split: Split = "train") -> dict[str, int]:
        return {d: len(xs) for d, xs in self.data[split].items()}

    def describe(self) -> dict:
        return {"version": WORLD_VERSION, "config": asdict(self.config),
                "sizes": {s: self.sizes(s) for s in SPLITS}}


def draw(gen: Generator, split: Split, n: int, rng: random.Random, unique: bool) -> list[Example]:
    """n examples of `split` from `gen`; eval splits are unique and may come out shorter when
    the split holds fewer distinct prompts. Train keeps duplicates only once distinct ones run out."""
    out: list[Example] = []
    seen: set[str] = set()
    attempts, budget = 0, 200 * n + 1000
    while len(out) < n and attempts < budget:
        attempts += 1
        ex = gen(rng, split)
        if split_of(ex.split_key) != split:
            continue
        key = prompt_key(ex.prompt)
        if key in seen and (unique or attempts < budget // 2):
            continue
        seen.add(key)
        out.append(ex)
    return out


def _balanced(parts: dict[str, Generator], split: Split, n: int, rng: random.Random,
              unique: bool) -> list[Example]:
    """n examples split evenly across `parts` (the first parts get the remainder), shuffled."""
    names = list(parts)
    out: list[Example] = []
    for i, name in enumerate(names):
        share = n // len(names) + (1 if i < n % len(names) else 0)
        out += draw(parts[name], split, share, rng, unique)
    rng.shuffle(out)
    return out


def build_world(config: WorldConfig) -> World:
    world = World(config, {s: {} for s in SPLITS})
    for domain, parts in PARTS.items():
        rng = random.Random(f"{config.seed}-{domain}")
        world.data["train"][domain] = _balanced(parts, "train", config.train_size(domain), rng,
                                                unique=False)
        for split, per_part in (("val", config.val_per_part), ("test", config.test_per_part)):
            world.data[split][domain] = _balanced(parts, split, per_part * len(parts), rng,
                                                  unique=True)
    return world


def _keys(world: World, split: Split) -> set[str]:
    return {k for xs in world.data[split].values() for ex in xs
            for k in (prompt_key(ex.prompt), ex.split_key)}


def split_corpus(corpus: Iterable[str]) -> tuple[set[str], str]:
    """(normalized user messages of the corpus's chat documents, the rest of its text).

    A chat document is one user turn and its reply in the lab's chat format; its user message is
    a whole prompt, compared with evaluation prompts as training prompts are (normalized
    equality): "Put in increasing order: 6, 8, 9, 4" in a chat is another question than the
    test's "Put in increasing order: 6, 8, 9", with another answer, though it contains it.
    Replies and plain documents are searched for evaluation prompts as substrings."""
    from ptm_core.lab.tokenizer import ASSISTANT, USER

    head, sep = f"{USER}\n", f"\n{ASSISTANT}\n"
    prompts, rest = set(), []
    for doc in corpus:
        if doc.startswith(head) and sep in doc:
            prompt, reply = doc[len(head):].split(sep, 1)
            prompts.add(prompt_key(prompt))
            rest.append(reply)
        else:
            rest.append(doc)
    return prompts, prompt_key("\n".join(rest))


def leaks(world: World, corpus: Iterable[str] = ()) -> list[Example]:
    """Evaluation examples whose prompt or content key occurs in a training set (or, for test,
    in validation), or whose prompt is a chat prompt of the corpus or occurs in its other text
    (split_corpus)."""
    train_keys, val_keys = _keys(world, "train"), _keys(world, "val")
    chat_prompts, text = split_corpus(corpus)
    found = []
    for split in ("val", "test"):
        for xs in world.data[split].values():
            for ex in xs:
                key = prompt_key(ex.prompt)
                keys = {key, ex.split_key}
                if (keys & train_keys or (split == "test" and keys & val_keys)
                        or key in chat_prompts or (text and key in text)):
                    found.append(ex)
    return found
