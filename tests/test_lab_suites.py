"""The lab suites score the world's own reference answers perfectly, and a refuse-everything
model the way the paper's axes say (safe on unsafe prompts, exaggerated on lookalikes)."""

from __future__ import annotations

import pytest

from ptm_core.engine.base import Sampling
from ptm_core.lab.suites import SUITE_NAMES, build_suites, extract_code, headline, normalise_answer
from ptm_core.lab.world import WorldConfig, build_world
from ptm_core.lab.world.example import prompt_key


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(seed=1, scale=0.001, val_per_part=3, test_per_part=6))


class TableEngine:
    """Answers each prompt from a table (the world's references) or with a fixed reply."""

    kind = "table"

    def __init__(self, table: dict[str, str] | None = None, reply: str = ""):
        self.table, self.reply, self.calls = table or {}, reply, []

    def generate(self, prompts, sampling: Sampling):
        self.calls.append(sampling)
        return [[self.table.get(prompt_key(p), self.reply)] * sampling.n for p in prompts]


def references(world):
    return {prompt_key(ex.prompt): ex.answer for xs in world.data["test"].values() for ex in xs}


def test_reference_answers_score_100(world):
    suites = build_suites(world, "test")
    assert set(suites) == set(SUITE_NAMES)
    engine = TableEngine(references(world))
    results = {name: suite.run(engine) for name, suite in suites.items()}
    assert headline(results) == {"lab_general": 100.0, "lab_science": 100.0, "lab_coding": 100.0,
                                 "lab_safety": 100.0, "lab_xstest_safe": 100.0}
    assert results["lab_coding"].metrics["pass@1"] == 100.0
    general = results["lab_general"].metrics
    assert {k.split("/")[1] for k in general if "/" in k} == {"arithmetic", "reverse", "sort", "count", "repeat", "facts"}
    science = results["lab_science"].metrics
    assert {k.split("/")[1] for k in science if "/" in k} <= {"fill_in", "name"}


def test_refusing_everything_is_safe_but_exaggerated(world):
    suites = build_suites(world, "test")
    engine = TableEngine(reply="I'm sorry, but I can't help with that.")
    scores = headline({name: suite.run(engine) for name, suite in suites.items()})
    assert scores["lab_safety"] == 100.0 and scores["lab_xstest_safe"] == 0.0
    assert scores["lab_general"] == 0.0 and scores["lab_coding"] == 0.0


def test_coding_uses_greedy_pass_at_1_and_ten_samples_at_t08(world):
    suite = build_suites(world, "test")["lab_coding"]
    engine = TableEngine(references(world))
    suite.run(engine)
    greedy, sampled = engine.calls
    assert greedy.temperature == 0.0 and sampled.temperature == 0.8 and sampled.n == 10


def test_pass_at_k_counts_partial_success(world):
    suite = build_suites(world, "test", cap=2)["lab_coding"]

    class HalfEngine:
        kind = "half"

        def generate(self, prompts, sampling):
            out = []
            for p in prompts:
                ref = next(ex.answer for ex in world.examples("test", "coding") if ex.prompt == p)
                out.append([ref if i < 3 else "def nope(:" for i in range(sampling.n)])
            return out

    metrics = suite.run(HalfEngine()).metrics
    assert metrics["pass@1"] == 100.0  # the greedy sample is the reference
    assert metrics["pass@1_sampled"] == pytest.approx(30.0)
    assert metrics["pass@10"] == 100.0


def test_scoring_helpers():
    assert normalise_answer("  Velm. ") == normalise_answer("velm")
    assert normalise_answer("1, 2") != normalise_answer("12")
    assert extract_code("```python\ndef f(x):\n    return x\n```\nbye") == "def f(x):\n    return x\n"
    assert extract_code("def f(x):\n    return x") == "def f(x):\n    return x"


def test_default_suites_come_from_the_full_world_and_are_capped():
    suites = build_suites(cap=6)
    assert all(len(s.items) <= 6 for s in suites.values())
    assert {it.group for it in suites["lab_general"].items} == {"arithmetic", "reverse", "sort", "count", "repeat", "facts"}
