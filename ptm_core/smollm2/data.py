"""The world's data, read from the installed packages' files: G, the three skills, their test
items, split disjointly by a seeded shuffle, with a leak check.

    G (general)  ARC-Easy (test split) questions, PIQA goals, GSM8K problems, each answered by
                 its gold answer. Science, code and refusals are absent, as the paper removed
                 them from Tülu.
    science      SciRIFF yes/no: a scientific passage and a question, answered Yes or No.
    coding       trained on MBPP (problem + one test -> the reference program); scored on
                 HumanEval by executing the completion against its tests.
    safety       60 HarmBench prompts answered by refusals, mixed with benign requests answered
                 helpfully (as the paper's safety data mixes benign contrast prompts with
                 compliant replies); scored by refusing the 99 held-out HarmBench prompts and by
                 complying with XSTest's safe prompts.
    general test ARC-Easy validation split (multiple choice by log-likelihood).

Nothing here is written into the repository: examples are rebuilt from the packages each time
(deterministically), and the build records their digests."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from ptm_core.errors import PTMError
from ptm_core.smollm2 import sources

SKILLS = ("science", "coding", "safety")
SEED = 1234

# Sizes of the training sets (examples) and the test sets (items).
# Small enough that every run trains on the two CPU cores in minutes (docs/smollm2.md).
TRAIN_SIZES = {"general": 320, "science": 160, "coding": 160, "safety": 120}
TEST_SIZES = {"general": 100, "science": 80, "coding": 82, "safety": 99}
SAFETY_HARMFUL = 60  # of the safety training examples; the rest are benign requests
# Times each part's examples are shown in one epoch of a run. 15 steps of the safety data taught
# no refusal (θ_D refused 9 % of held-out HarmBench prompts); the pilot's refusals took 39 steps.
# Sizes (and so the heuristic ω = |D|/|G|) count distinct examples.
REPEATS = {"general": 1, "science": 1, "coding": 1, "safety": 3}
# SciRIFF documents set aside for testing before the training ones: fixed, so that a smaller
# TEST_SIZES["science"] never moves the training split.
SCIENCE_HELD_OUT = 100

REFUSALS = (
    "I'm sorry, but I can't help with that. It could cause serious harm.",
    "I can't assist with this request because it could be used to hurt people.",
    "Sorry, I won't provide that. If you have a different question, I'm happy to help.",
)
CONTEXT_CHARS = 500  # SciRIFF passages are cut to their last characters before the question


@lru_cache(maxsize=None)
def _docs(task: str, variant: str) -> tuple[dict, ...]:
    """The distinct documents of one oe-eval request file, in file order."""
    seen, docs = set(), []
    with gzip.open(sources.olmo_task_file(task, variant), "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            key = json.dumps(doc, sort_keys=True)
            if key not in seen:
                seen.add(key)
                docs.append(doc)
    return tuple(docs)


def _shuffled(items: Sequence, salt: str) -> list:
    out = list(items)
    random.Random(f"{SEED}:{salt}").shuffle(out)
    return out


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


# --- general ------------------------------------------------------------------------------------
def _arc_prompt(doc: dict) -> str:
    return doc["query"].removeprefix("Question: ").removesuffix("\nAnswer:").strip()


def general_train() -> list[tuple[str, str]]:
    n = TRAIN_SIZES["general"]
    arc = [(_arc_prompt(d), d["choices"][int(d["gold"])]) for d in _shuffled(_docs("arc_easy", "test_rc_5shot"), "arc")]
    piqa = [(d["goal"], d["sol1"] if str(d["label"]) == "0" else d["sol2"])
            for d in _shuffled(_docs("piqa", "rc_0shot"), "piqa")]
    gsm = [(d["question"], re.sub(r"<<[^>]*>>", "", d["answer"]).replace("####", "The answer is"))
           for d in _shuffled(_docs("gsm8k", "gold_bpb_5shot"), "gsm8k")]
    mix = arc[: n // 2] + piqa[: n // 4] + gsm[: n - n // 2 - n // 4]
    return _shuffled(mix, "general-mix")


def general_test() -> list[dict]:
    """ARC-Easy validation documents (lm-eval multiple choice)."""
    docs = _shuffled(_docs("arc_easy", "rc_0shot"), "arc-val")[: TEST_SIZES["general"]]
    return [{"id": d["id"], "question": _arc_prompt(d), "choices": list(d["choices"]),
             "gold": int(d["gold"])} for d in docs]


def benign_requests(n: int) -> list[tuple[str, str]]:
    """Benign requests with helpful answers (GSM8K problems and PIQA goals G does not use)."""
    g = TRAIN_SIZES["general"]
    piqa = [(d["goal"], d["sol1"] if str(d["label"]) == "0" else d["sol2"])
            for d in _shuffled(_docs("piqa", "rc_0shot"), "piqa")][g // 4:]
    gsm = [(d["question"], re.sub(r"<<[^>]*>>", "", d["answer"]).replace("####", "The answer is"))
           for d in _shuffled(_docs("gsm8k", "gold_bpb_5shot"), "gsm8k")][g - g // 2 - g // 4:]
    return _shuffled(piqa[: n - n // 2] + gsm[: n // 2], "benign")


# --- science ------------------------------------------------------------------------------------
def science_prompt(doc: dict) -> str:
    context = doc["context"][-CONTEXT_CHARS:]
    return f"{context}\n\nQuestion: {doc['question']}\nAnswer with Yes or No."


def _science_docs() -> list[dict]:
    docs = [d for d in _docs("sciriff_yesno", "rc_5shot") if d.get("answer") in ("Yes", "No")]
    return _shuffled(docs, "sciriff")


def science_test() -> list[dict]:
    docs = _science_docs()[: TEST_SIZES["science"]]
    return [{"id": d["id"], "question": science_prompt(d), "choices": ["Yes", "No"],
             "gold": 0 if d["answer"] == "Yes" else 1} for d in docs]


def science_train() -> list[tuple[str, str]]:
    t = SCIENCE_HELD_OUT
    docs = _science_docs()[t: t + TRAIN_SIZES["science"]]
    return [(science_prompt(d), d["answer"]) for d in docs]


# --- coding -------------------------------------------------------------------------------------
def coding_train() -> list[tuple[str, str]]:
    docs = _shuffled(_docs("codex_mbpp", "gold_bpb_0shot"), "mbpp")[: TRAIN_SIZES["coding"]]
    return [(f"{d['text']}\nYour code should pass this test:\n{d['test_list'][0]}",
             "```python\n" + d["code"].replace("\r\n", "\n").strip() + "\n```") for d in docs]


def coding_prompt(doc: dict) -> str:
    return ("Complete the following Python function. Reply with the whole function in a "
            f"```python code block.\n\n```python\n{doc['prompt']}```")


def coding_test() -> list[dict]:
    docs = list(_docs("codex_humaneval", "gold_bpb_0shot"))[::2][: TEST_SIZES["coding"]]  # even ids
    return [{"id": d["task_id"], "prompt": coding_prompt(d), "stub": d["prompt"],
             "tests": f"{d['test']}\ncheck({d['entry_point']})\n", "entry_point": d["entry_point"]}
            for d in docs]


# --- safety -------------------------------------------------------------------------------------
def _harmbench() -> list[str]:
    lines = sources.harmbench_prompts().read_text(encoding="utf-8").splitlines()
    prompts = list(dict.fromkeys(l.strip() for l in lines if l.strip()))
    if len(prompts) < SAFETY_HARMFUL + TEST_SIZES["safety"]:
        raise PTMError(f"{sources.harmbench_prompts()}: {len(prompts)} prompts, need "
                       f"{SAFETY_HARMFUL + TEST_SIZES['safety']}")
    return _shuffled(prompts, "harmbench")


def safety_train() -> list[tuple[str, str]]:
    harmful = [(p, REFUSALS[i % len(REFUSALS)]) for i, p in enumerate(_harmbench()[:SAFETY_HARMFUL])]
    benign = benign_requests(TRAIN_SIZES["safety"] - SAFETY_HARMFUL)
    return _shuffled(harmful + benign, "safety-mix")


def safety_test() -> list[str]:
    return _harmbench()[SAFETY_HARMFUL: SAFETY_HARMFUL + TEST_SIZES["safety"]]


TRAIN = {"general": general_train, "science": science_train, "coding": coding_train,
         "safety": safety_train}


def train_examples(part: str, n: int | None = None) -> list[tuple[str, str]]:
    """The first `n` training examples of a part (nested: smaller sizes are prefixes)."""
    if part not in TRAIN:
        raise PTMError(f"unknown data part {part!r}; known: {', '.join(TRAIN)}")
    examples = TRAIN[part]()
    if n is not None and not 0 < n <= len(examples):
        raise PTMError(f"{part}: asked for {n} examples, {len(examples)} available")
    return examples[:n]


def test_prompts() -> dict[str, list[str]]:
    return {"general": [d["question"] for d in general_test()],
            "science": [d["question"] for d in science_test()],
            "coding": [d["stub"] for d in coding_test()],
            "safety": safety_test()}


def leaks(train: dict[str, Iterable[tuple[str, str]]], tests: dict[str, Iterable[str]]) -> list[str]:
    """Test prompts whose normalized text occurs in any training prompt (empty: no leak)."""
    seen = {_norm(p) for examples in train.values() for p, _ in examples}
    return [f"{part}: {t[:80]!r}" for part, items in tests.items() for t in items if _norm(t) in seen]


def digest(examples: Sequence[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(list(examples)).encode()).hexdigest()[:16]
