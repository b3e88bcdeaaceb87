"""The science skill: extract facts from a short synthetic passage (after SciRIFF).

A passage states two or three relations of a fictional substance. The task types are the
formats in which a relation is asked for: a wh-question and a "what is the <label> of" question
are trained; a fill-in-the-blank and a "name the <label> of" request are held out of training
and used only for evaluation (as the paper scored SciRIFF's held-out tasks). Answers are spans
of the passage, scored by exact match. (Held-out relations, tried first, were beyond what a
1M-parameter model generalizes to: it scored 0 on them however long it trained.)
"""

from __future__ import annotations

import random
from functools import lru_cache

from ptm_core.lab.world.example import Example, Split
from ptm_core.lab.world.vocab import name_pool, names_in

CHEMICALS = ("calcium", "iron", "zinc", "copper", "iodine", "sulfur", "sodium")
DRUGS = ("aspirin", "caffeine", "nicotine", "morphine", "penicillin", "quinine")
ORGANS = ("liver", "brain", "heart", "lungs", "skin", "kidney", "blood", "bones")
ANIMALS = ("frogs", "mice", "sheep", "bats", "crabs", "snails", "owls", "eels")
DISEASES = ("weak bones", "hair loss", "fever", "poor sight", "slow growth", "dry skin",
            "muscle pain", "bad sleep")
SEASONS = ("spring", "summer", "autumn", "winter")
CELLS = ("nerve cells", "red cells", "fat cells", "gut cells", "root cells")
COLORS = ("blue", "green", "yellow", "red", "white", "purple", "orange")
TOOLS = ("microscope", "scale", "thermometer", "laser", "filter", "magnet", "prism")
SHAPES = ("round", "flat", "long", "spiral", "curved")
TASTES = ("sweet", "bitter", "sour", "salty")
HABITATS = ("desert", "forest", "ocean", "cave", "swamp")


def _values(kind: str, rng: random.Random) -> str:
    return rng.choice({"chemical": CHEMICALS, "drug": DRUGS, "organ": ORGANS, "animal": ANIMALS,
                       "disease": DISEASES, "season": SEASONS, "cell": CELLS, "color": COLORS,
                       "tool": TOOLS, "shape": SHAPES, "taste": TASTES, "habitat": HABITATS}[kind])


# relation -> (sentence, question, value kind). Every relation has its own kind of value, so a
# passage never holds two candidate answers of the same kind.
RELATIONS: dict[str, tuple[str, str, str]] = {
    "binding": ("{n} binds to {v}.", "What does {n} bind to?", "chemical"),
    "inhibitor": ("{n} is blocked by {v}.", "What blocks {n}?", "drug"),
    "location": ("{n} is found in the {v}.", "Where in the body is {n} found?", "organ"),
    "source": ("{n} was first isolated from {v}.", "From which animal was {n} first isolated?", "animal"),
    "habitat": ("{n} was first found in the {v}.", "Where was {n} first found?", "habitat"),
    "deficiency": ("A lack of {n} causes {v}.", "What does a lack of {n} cause?", "disease"),
    "shape": ("The molecule of {n} is {v}.", "What shape is the molecule of {n}?", "shape"),
    "season": ("{n} is most active in {v}.", "In which season is {n} most active?", "season"),
    "producer": ("{n} is made by {v}.", "What makes {n}?", "cell"),
    "taste": ("{n} tastes {v}.", "How does {n} taste?", "taste"),
    "color": ("Pure {n} is {v}.", "What color is pure {n}?", "color"),
    "instrument": ("{n} is measured with a {v}.", "What is {n} measured with?", "tool"),
}
TRAIN_TYPES: tuple[str, ...] = ("question", "label")
HELD_OUT_TYPES: tuple[str, ...] = ("fill_in", "name")
INSTRUCTION = "Read the passage and answer the question."


@lru_cache(maxsize=None)
def substances(split: Split) -> tuple[str, ...]:
    """Substance names of `split`: a passage's subject lives in exactly one split."""
    return names_in([n + "in" for n in name_pool("substance", 600)], split)


def passage(rng: random.Random, name: str, must_include: str) -> tuple[str, dict[str, str]]:
    """Two or three relation sentences about `name`, one of them `must_include`."""
    others = [t for t in RELATIONS if t != must_include]
    chosen = rng.sample(others, rng.randint(1, 2)) + [must_include]
    rng.shuffle(chosen)
    values = {t: _values(RELATIONS[t][2], rng) for t in chosen}
    text = " ".join(RELATIONS[t][0].format(n=name, v=values[t]) for t in chosen)
    return text, values


def ask(task_type: str, relation: str, name: str) -> str:
    sentence, question, _ = RELATIONS[relation]
    if task_type == "question":
        return question.format(n=name)
    if task_type == "fill_in":
        return "Fill in the blank: " + sentence.format(n=name, v="____")
    if task_type == "name":
        return f"Name the {LABELS[relation]} of {name}."
    return f"What is the {LABELS[relation]} of {name}?"


def question_example(rng: random.Random, split: Split) -> Example:
    """Train split uses trained task types; val and test use held-out types only."""
    task_type = rng.choice(TRAIN_TYPES if split == "train" else HELD_OUT_TYPES)
    relation = rng.choice(tuple(RELATIONS))
    name = rng.choice(substances(split))
    text, values = passage(rng, name, relation)
    prompt = f"{INSTRUCTION}\n\nPassage: {text}\n\nQuestion: {ask(task_type, relation, name)}"
    return Example("science", task_type, prompt, values[relation], key=name)


# How the corpus names each relation in its notes ("Note: the color of X is blue.").
LABELS = {"binding": "binding partner", "location": "location", "source": "source animal",
          "habitat": "habitat", "deficiency": "deficiency sign", "inhibitor": "inhibitor",
          "shape": "shape", "season": "active season", "producer": "producer",
          "taste": "taste", "color": "color", "instrument": "instrument"}


def corpus_passage(rng: random.Random) -> str:
    """A passage for the pretraining corpus (train-split names, any relations, no question),
    followed by notes that restate one or two of its relations, as encyclopedic text does."""
    name = rng.choice(substances("train"))
    text, values = passage(rng, name, rng.choice(tuple(RELATIONS)))
    for kind in rng.sample(list(values), rng.randint(1, 2)):
        text += f" Note: the {LABELS[kind]} of {name} is {values[kind]}."
    return text
