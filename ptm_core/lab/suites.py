"""The lab's evaluation suites, built from the world's test (or validation) split.

    lab_general      exact match on the six general kinds (per kind and mean)
    lab_science      exact match on the held-out science task types
    lab_coding       pass@1 (greedy) and pass@10 (n=10, T=0.8; Chen et al.'s estimator)
    lab_safety       refusal rate on held-out unsafe requests (higher is safer)
    lab_xstest_safe  compliance on held-out safe lookalikes (low = exaggerated refusals)

All scores are 0-100. Refusal detection and code execution are the evaluation engine's
(`ptm_core.evals.refusal`, `ptm_core.evals.sandbox`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

from ptm_core.engine.base import Engine, Sampling
from ptm_core.errors import PTMError
from ptm_core.evals.registry import register_references, register_suite_family
from ptm_core.evals.suite import Item, PromptSuite, SuiteResult, result_from_values
from ptm_core.lab.world import WORLD_VERSION, World, build_world
from ptm_core.lab.world.example import Example, Split

SUITE_VERSION = f"w{WORLD_VERSION}.1"
SUITE_NAMES = ("lab_general", "lab_science", "lab_coding", "lab_safety", "lab_xstest_safe")
# The axis each suite reports as its headline score.
HEADLINE = {"lab_general": "exact_match", "lab_science": "exact_match", "lab_coding": "pass@10",
            "lab_safety": "refusal", "lab_xstest_safe": "compliance"}


def normalise_answer(text: str) -> str:
    """Exact match ignores surrounding space, case and a final full stop."""
    return " ".join(text.strip().rstrip(".").lower().split())


def exact_match(item: Item, outputs: list[str]) -> dict[str, float]:
    return {"exact_match": float(normalise_answer(outputs[0]) == normalise_answer(item.target))}


def refusal(item: Item, outputs: list[str]) -> dict[str, float]:
    from ptm_core.evals.refusal import is_refusal

    return {"refusal": float(is_refusal(outputs[0]))}


def compliance(item: Item, outputs: list[str]) -> dict[str, float]:
    from ptm_core.evals.refusal import is_refusal

    return {"compliance": float(not is_refusal(outputs[0]))}


_FENCE = re.compile(r"```(?:python)?\n(.*?)(?:```|$)", re.S)


def extract_code(text: str) -> str:
    """The code in a completion: inside a markdown fence if there is one, else all of it."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def compiles(code: str) -> bool:
    """Whether `code` is valid Python; compiling executes nothing."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # model output is full of odd literals
        try:
            compile(code, "<candidate>", "exec")
        except (SyntaxError, ValueError):
            return False
    return True


@dataclass
class CodingSuite:
    """Execution-scored coding: a greedy pass for pass@1 and n samples for pass@k."""

    name: str
    version: str
    items: Sequence[Item]
    sampling: Sampling  # the sampled pass (pass@k)
    greedy: Sampling
    k: int = 10
    per_group: bool = True
    timeout_s: float = 5.0
    _cache: dict = field(default_factory=dict, repr=False)

    def _passes(self, cases: list[tuple[str, str]]) -> list[bool]:
        """Pass/fail per (model output, tests) pair. Each distinct program runs once; programs
        that do not even compile fail without a sandbox (compiling executes nothing)."""
        from ptm_core.evals.sandbox import run_tests_batch

        todo = [(extract_code(output), tests) for output, tests in cases]
        fresh = []
        for case in dict.fromkeys(todo):
            if case in self._cache:
                continue
            if compiles(case[0]):
                fresh.append(case)
            else:
                self._cache[case] = False
        for case, ok in zip(fresh, run_tests_batch(fresh, self.timeout_s)):
            self._cache[case] = ok
        return [self._cache[case] for case in todo]

    def run(self, engine: Engine) -> SuiteResult:
        from ptm_core.passk import pass_at_k

        start = time.perf_counter()
        prompts = [it.prompt for it in self.items]
        greedy = engine.generate(prompts, self.greedy)
        sampled = engine.generate(prompts, self.sampling)
        values: dict[str, list[float]] = {}
        details = []
        # One sandbox pool over every item's programs: per-item pools of ~11 programs left
        # the workers idle between items.
        flat = [(out, item.target) for item, g, s in zip(self.items, greedy, sampled)
                for out in [*g[:1], *s]]
        passed = iter(self._passes(flat))
        for item, g, s in zip(self.items, greedy, sampled):
            ok_greedy = next(passed)
            ok_sampled = [next(passed) for _ in s]
            n, c = len(ok_sampled), sum(ok_sampled)
            scores = {"pass@1": float(ok_greedy), f"pass@{self.k}": pass_at_k(n, c, min(self.k, n)),
                      "pass@1_sampled": pass_at_k(n, c, 1)}
            for key, value in scores.items():
                for name in (key, f"{key}/{item.group}" if self.per_group and item.group else None):
                    if name:
                        values.setdefault(name, []).append(value)
            details.append({"prompt": item.prompt, "greedy": g[0], "samples": s, "scores": scores})
        # pass@k's interval: the bootstrap over problems of the per-problem estimator
        return result_from_values(self.name, self.version, values, time.perf_counter() - start,
                                  details)


def _items(examples: Sequence[Example], target: str = "answer", cap: int | None = None) -> list[Item]:
    chosen = examples if cap is None else _spread(examples, cap)
    return [Item(ex.prompt, ex.tests if target == "tests" else ex.answer, ex.kind.split("/")[-1])
            for ex in chosen]


def _spread(examples: Sequence[Example], cap: int) -> list[Example]:
    """At most `cap` examples, taking kinds in turn so every kind stays represented."""
    by_kind: dict[str, list[Example]] = {}
    for ex in examples:
        by_kind.setdefault(ex.kind, []).append(ex)
    out: list[Example] = []
    while len(out) < min(cap, len(examples)):
        for xs in by_kind.values():
            if xs and len(out) < cap:
                out.append(xs.pop(0))
    return out


def build_suites(world: World | None = None, split: Split = "test",
                 cap: int | None = None) -> dict[str, object]:
    """The five lab suites over `split` of `world` (default: the full profile's world).
    `cap` limits the items per suite (for quick checks)."""
    if world is None:
        from ptm_core.lab.profiles import SHIPPED, get_profile

        world = build_world(get_profile(SHIPPED).world)
    general = [ex for ex in world.examples(split, "general") if not ex.kind.startswith("safe/")]
    safe = [ex for ex in world.examples(split, "general") if ex.kind.startswith("safe/")]
    version = f"{SUITE_VERSION}.{split}"
    return {
        "lab_general": PromptSuite("lab_general", version, _items(general, cap=cap),
                                   Sampling(temperature=0.0, max_tokens=24), exact_match, True),
        "lab_science": PromptSuite("lab_science", version, _items(world.examples(split, "science"), cap=cap),
                                   Sampling(temperature=0.0, max_tokens=16), exact_match, True),
        "lab_coding": CodingSuite("lab_coding", version,
                                  _items(world.examples(split, "coding"), "tests", cap),
                                  Sampling(temperature=0.8, max_tokens=48, n=10, seed=0),
                                  Sampling(temperature=0.0, max_tokens=48)),
        "lab_safety": PromptSuite("lab_safety", version, _items(world.examples(split, "safety"), cap=cap),
                                  Sampling(temperature=0.0, max_tokens=24), refusal, True),
        "lab_xstest_safe": PromptSuite("lab_xstest_safe", version, _items(safe, cap=cap),
                                       Sampling(temperature=0.0, max_tokens=24), compliance, True),
    }


@register_suite_family("lab_")
def lab_suite(name: str, split: Split = "test", cap: int | None = None):
    """The registry's builder for `lab_*` suite names (listed in ptm_core.orchestrate.worlds)."""
    if name not in SUITE_NAMES:
        raise PTMError(f"unknown lab suite {name!r}; lab suites: {', '.join(SUITE_NAMES)}")
    return build_suites(split=split, cap=cap)[name]


@register_references("lab_")
def lab_references(name: str, cap: int | None = None, split: Split = "test",
                   **_: object) -> list[tuple[str, str]]:
    """(prompt, reference answer) of a lab suite's items, the same items its suite scores: the
    exact-match answer, the reference solution (coding), the refusal (unsafe requests) or the
    compliant reply (safe lookalikes): what each model was trained to reply."""
    if name not in SUITE_NAMES:
        raise PTMError(f"unknown lab suite {name!r}; lab suites: {', '.join(SUITE_NAMES)}")
    return list(_references(split, cap)[name])


@lru_cache(maxsize=4)
def _references(split: Split, cap: int | None) -> dict[str, tuple[tuple[str, str], ...]]:
    from ptm_core.lab.profiles import SHIPPED, get_profile

    world = build_world(get_profile(SHIPPED).world)
    solutions = {ex.prompt: ex.answer for ex in world.examples(split, "coding")}
    return {name: tuple((it.prompt, solutions[it.prompt] if name == "lab_coding" else it.target)
                        for it in suite.items)
            for name, suite in build_suites(world, split, cap).items()}


def headline(results: dict[str, SuiteResult]) -> dict[str, float]:
    """One 0-100 score per suite (the axis the paper plots)."""
    return {name: r.metrics.get(HEADLINE[name], float("nan")) for name, r in results.items()}
