"""The one stand-in engine for tests of suites, stores, workers and the app: answers come from
a function of (prompt, sampling, sample index), every call and every applied recipe is
recorded, and a swap can be made to fail."""

from __future__ import annotations

import time
from typing import Any, Callable

from ptm_core.engine.base import Sampling

Responder = Callable[[str, Sampling, int], str]


class ScriptedEngine:
    def __init__(self, respond: Responder, kind: str = "scripted", *,
                 fail_apply: Callable[[Any], bool] | None = None, swap_s: float = 0.0,
                 generate_delay_s: float = 0.0):
        self.respond, self.kind = respond, kind
        self.fail_apply, self.swap_s, self.generate_delay_s = fail_apply, swap_s, generate_delay_s
        self.recipe: Any = None
        self.recipe_key: str | None = None
        self.calls: list[tuple[list[str], Sampling]] = []
        self.applied: list[str] = []
        self.closed = False

    def apply(self, recipe) -> float:
        if self.fail_apply is not None and self.fail_apply(recipe):
            raise RuntimeError("simulated engine failure while swapping weights")
        self.recipe, self.recipe_key = recipe, recipe.key()
        self.applied.append(self.recipe_key)
        return self.swap_s

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        if self.generate_delay_s:
            time.sleep(self.generate_delay_s)
        self.calls.append((list(prompts), sampling))
        return [[self.respond(p, sampling, i) for i in range(sampling.n)] for p in prompts]

    def close(self) -> None:
        self.closed = True
