"""A deterministic stand-in engine for tests of suites, stores and workers: answers come from a
function of (prompt, sampling, sample index), and every call is recorded."""

from __future__ import annotations

from typing import Callable

from ptm_core.engine.base import Sampling

Responder = Callable[[str, Sampling, int], str]


class ScriptedEngine:
    def __init__(self, respond: Responder, kind: str = "scripted"):
        self.respond, self.kind = respond, kind
        self.recipe_key: str | None = None
        self.calls: list[tuple[list[str], Sampling]] = []
        self.applied: list[str] = []

    def apply(self, recipe) -> float:
        self.recipe_key = recipe.key()
        self.applied.append(self.recipe_key)
        return 0.0

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        self.calls.append((list(prompts), sampling))
        return [[self.respond(p, sampling, i) for i in range(sampling.n)] for p in prompts]
