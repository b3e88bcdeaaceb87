"""The lab's synthetic world: disjoint splits, determinism, sizes, and answers that fit their scorers."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from ptm_core.lab.world import (PARTS, SKILLS, TABLE1_SIZES, WorldConfig, build_world, leaks)
from ptm_core.lab.world import coding, science
from ptm_core.lab.world.corpus import documents
from ptm_core.evals.refusal import is_refusal
from ptm_core.lab.world.example import SPLITS, prompt_key

CONFIG = WorldConfig(seed=3, scale=0.004, val_per_part=10, test_per_part=20)


@pytest.fixture(scope="module")
def world():
    return build_world(CONFIG)


def keys(world, split):
    return {prompt_key(ex.prompt) for xs in world.data[split].values() for ex in xs}


def test_splits_share_no_example(world):
    for a, b in itertools.combinations(SPLITS, 2):
        assert not keys(world, a) & keys(world, b), (a, b)
    assert leaks(world) == []


def test_no_evaluation_prompt_in_the_pretraining_corpus(world):
    corpus = list(itertools.islice(documents(CONFIG.seed), 3000))
    assert leaks(world, corpus) == []


def test_leak_check_catches_a_planted_leak(world):
    planted = world.examples("test", "coding")[0]
    world.data["train"]["coding"].append(planted)
    try:
        assert planted in leaks(world)
    finally:
        world.data["train"]["coding"].pop()
    assert leaks(build_world(CONFIG), ["noise " + planted.prompt + " noise"]) == [planted]


def test_generators_are_deterministic():
    assert build_world(CONFIG).data == build_world(CONFIG).data
    other = build_world(WorldConfig(seed=4, scale=0.004, val_per_part=10, test_per_part=20))
    assert other.data["train"]["general"] != build_world(CONFIG).data["train"]["general"]
    first = list(itertools.islice(documents(1), 50))
    assert first == list(itertools.islice(documents(1), 50))


def test_sizes_keep_the_paper_proportions(world):
    sizes = world.sizes("train")
    for domain, paper in TABLE1_SIZES.items():
        assert sizes[domain] == round(paper * CONFIG.scale)
    assert sizes["science"] < sizes["safety"] < sizes["coding"] < sizes["general"]


def test_general_data_has_several_exact_match_kinds_and_safe_lookalikes(world):
    kinds = Counter(ex.kind for ex in world.examples("train", "general"))
    exact = [k for k in kinds if not k.startswith("safe/")]
    assert len(exact) >= 5
    assert len({k for k in kinds if k.startswith("safe/")}) >= 8  # XSTest-style safe types
    assert all(ex.domain == "general" for ex in world.examples("train", "general"))


def test_skills_are_absent_from_general_data(world):
    general = world.examples("train", "general")
    assert not any("def " in ex.answer or "Passage:" in ex.prompt for ex in general)
    for skill in SKILLS:
        assert {ex.domain for ex in world.examples("train", skill)} == {skill}


def test_refusal_labels_fit_the_refusal_classifier(world):
    from ptm_core.evals.refusal import is_refusal

    assert all(is_refusal(ex.answer) for ex in world.examples("train", "safety"))
    lookalikes = [ex for ex in world.examples("train", "general") if ex.kind.startswith("safe/")]
    assert lookalikes and not any(is_refusal(ex.answer) for ex in lookalikes)


def test_science_holds_task_types_out_of_training(world):
    assert {ex.kind for ex in world.examples("train", "science")} <= set(science.TRAIN_TYPES)
    for split in ("val", "test"):
        assert {ex.kind for ex in world.examples(split, "science")} <= set(science.HELD_OUT_TYPES)
    for ex in world.examples("test", "science"):
        assert ex.answer in ex.prompt.split("Question:")[0]  # the answer is a span of the passage


def test_reference_solutions_pass_their_tests(world):
    for ex in world.examples("test", "coding")[:40]:
        namespace: dict = {}
        exec(ex.answer, namespace)
        exec(ex.tests, namespace)
    broken = coding.solution("f", coding.TEMPLATES["add"], 3, "a").replace("+", "-")
    with pytest.raises(AssertionError):
        exec(broken + "\n" + coding.tests_for("f", coding.TEMPLATES["add"], 3, "a"), {})


def test_every_part_of_every_data_set_is_drawn(world):
    for domain, parts in PARTS.items():
        assert len(world.examples("test", domain)) >= len(parts)


def test_chat_mix_holds_every_task_half_right_and_no_evaluation_content(world):
    """The `chat` mix (issue #10): dialogues of G and of every skill on train-split content,
    answered right or wrong; the leak check still finds nothing, and a planted test prompt
    in a chat is caught."""
    import random

    from ptm_core.lab.tokenizer import ASSISTANT, USER
    from ptm_core.lab.world import chats

    corpus = list(itertools.islice(documents(CONFIG.seed, "chat"), 3000))
    assert corpus != list(itertools.islice(documents(CONFIG.seed), 3000))
    share = sum(d.startswith(USER) for d in corpus) / len(corpus)
    assert 0.3 < share < 0.55  # the new kinds plus the plain mix's few chats
    assert leaks(world, corpus) == []
    planted = world.examples("test", "science")[0]
    assert leaks(world, corpus + [f"{USER}\n{planted.prompt}\n{ASSISTANT}\nx"]) == [planted]
    assert leaks(world, corpus + [f"{USER}\nhi\n{ASSISTANT}\nas asked: {planted.prompt}"]) == [planted]
    # A chat prompt is compared whole: a longer list that contains a test list is another task.
    sort = next(ex for ex in world.examples("test", "general") if ex.kind == "sort")
    longer = f"{USER}\n{sort.prompt}, 1\n{ASSISTANT}\n1"
    assert leaks(world, [longer]) == [] and leaks(world, [f"note: {sort.prompt}, 1"]) == [sort]
    with pytest.raises(ValueError, match="corpus mix"):
        next(documents(0, "nope"))

    rng = random.Random(0)
    for kind, (make, _) in chats.DIALOGUES.items():
        dialogues = [make(rng) for _ in range(400)]
        right = sum(d.right for d in dialogues) / len(dialogues)
        want = {"chat_lookalike": 1.0, "chat_unsafe": chats.REFUSE}.get(kind, chats.CORRECT)
        assert abs(right - want) < 0.1, (kind, right)
    for _ in range(200):
        d = chats.science_dialogue(rng)  # right or wrong, the reply is a span of the passage
        assert d.reply in d.prompt.split("Passage: ")[1].split("\n\nQuestion:")[0]
        c = chats.coding_dialogue(rng)
        namespace: dict = {}
        exec(c.reply, namespace)  # our own generated reference code, not model output
        assert len([v for v in namespace.values() if callable(v)]) == 1
    refusals = [chats.unsafe_dialogue(rng) for _ in range(200)]
    assert all(is_refusal(d.reply) == d.right for d in refusals)  # the scorer agrees
