"""The coding skill: write a short Python function from a one-line description.

The answer is the reference solution; the score runs the generated code against assert tests in
the sandbox (pass@1 greedy, pass@10 at temperature 0.8). Function names belong to one split,
so evaluation problems are new functions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from ptm_core.lab.world.example import Example, Split
from ptm_core.lab.world.vocab import name_pool, names_in

LETTERS = "abeiklmnorst"


@dataclass(frozen=True)
class Template:
    args: str  # "x", "xs", "s" or "a, b"
    description: str  # may use {k} (an int) and {c} (a letter)
    body: str  # the returned expression


TEMPLATES: dict[str, Template] = {
    "add": Template("x", "returns x plus {k}", "x + {k}"),
    "sub": Template("x", "returns x minus {k}", "x - {k}"),
    "mul": Template("x", "returns x times {k}", "x * {k}"),
    "square_add": Template("x", "returns x squared plus {k}", "x * x + {k}"),
    "divisible": Template("x", "returns True if x is divisible by {k}", "x % {k} == 0"),
    "greater": Template("x", "returns True if x is greater than {k}", "x > {k}"),
    "sum_add": Template("xs", "returns the sum of the list xs plus {k}", "sum(xs) + {k}"),
    "max": Template("xs", "returns the largest number in the list xs", "max(xs)"),
    "filter": Template("xs", "returns the numbers in xs that are greater than {k}",
                       "[x for x in xs if x > {k}]"),
    "map_mul": Template("xs", "returns a list of every number in xs times {k}",
                        "[x * {k} for x in xs]"),
    "head": Template("xs", "returns the first {k} items of the list xs", "xs[:{k}]"),
    "count_char": Template("s", "returns how many times the letter '{c}' appears in s",
                           "s.count('{c}')"),
    "repeat": Template("s", "returns the string s repeated {k} times", "s * {k}"),
    "starts": Template("s", "returns True if s starts with the letter '{c}'", "s.startswith('{c}')"),
    "reverse": Template("s", "returns the string s reversed", "s[::-1]"),
    "len_add": Template("s", "returns the length of s plus {k}", "len(s) + {k}"),
    "larger": Template("a, b", "returns the larger of a and b", "max(a, b)"),
    "abs_diff": Template("a, b", "returns the absolute difference of a and b", "abs(a - b)"),
}

# Fixed test inputs per argument list; expected values come from the reference solution.
TEST_INPUTS: dict[str, tuple[tuple, ...]] = {
    "x": ((0,), (3,), (7,), (-4,), (12,)),
    "xs": (([1, 5, 2],), ([7, 0, 9, 4],), ([3],), ([-2, 8, 6, 10, 1],)),
    "s": (("banana",), ("kiwi",), ("stream",), ("a",), ("lemonade",)),
    "a, b": ((3, 8), (9, 2), (5, 5), (-1, -6)),
}
PHRASES = ("Write a Python function {f}({a}) that {d}.", "Define a Python function {f}({a}) that {d}.")


@lru_cache(maxsize=None)
def function_names(split: Split) -> tuple[str, ...]:
    return names_in([n.lower() for n in name_pool("function", 800)], split)


def solution(name: str, template: Template, k: int, c: str) -> str:
    return f"def {name}({template.args}):\n    return {template.body.format(k=k, c=c)}"


def tests_for(name: str, template: Template, k: int, c: str) -> str:
    """Assert statements, with expected values computed by running the reference solution."""
    namespace: dict = {}
    exec(solution(name, template, k, c), namespace)  # our own reference code, not model output
    lines = []
    for args in TEST_INPUTS[template.args]:
        expected = namespace[name](*args)
        lines.append(f"assert {name}({', '.join(map(repr, args))}) == {expected!r}")
    return "\n".join(lines) + "\n"


def problem(rng: random.Random, split: Split) -> Example:
    kind = rng.choice(tuple(TEMPLATES))
    template = TEMPLATES[kind]
    name, k, c = rng.choice(function_names(split)), rng.randint(2, 9), rng.choice(LETTERS)
    prompt = rng.choice(PHRASES).format(f=name, a=template.args,
                                        d=template.description.format(k=k, c=c))
    return Example("coding", kind, prompt, solution(name, template, k, c),
                   tests_for(name, template, k, c), key=name)


def corpus_snippet(rng: random.Random) -> str:
    """A commented function for the pretraining corpus (train-split names only)."""
    kind = rng.choice(tuple(TEMPLATES))
    template = TEMPLATES[kind]
    name, k, c = rng.choice(function_names("train")), rng.randint(2, 9), rng.choice(LETTERS)
    return f"# {name} {template.description.format(k=k, c=c)}\n{solution(name, template, k, c)}\n"
