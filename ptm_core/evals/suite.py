"""A suite is a named, versioned set of prompts with sampling parameters and a scorer.

Every suite yields metrics on a 0-100 scale together with the number of samples behind each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from ptm_core.engine.base import Engine, Sampling


@dataclass
class SuiteResult:
    suite: str
    version: str
    metrics: dict[str, float]  # 0-100
    counts: dict[str, int]  # samples behind each metric
    wall_s: float
    details: list[dict] = field(default_factory=list)  # per-item outputs, for inspection


class Suite(Protocol):
    name: str
    version: str
    sampling: Sampling

    def run(self, engine: Engine) -> SuiteResult: ...


@dataclass(frozen=True)
class Item:
    """One prompt with whatever its scorer needs (reference answer, tests, category...)."""

    prompt: str
    target: Any = None
    group: str = ""  # e.g. task type; metrics are also reported per group


# A scorer maps one item and its completions to named values in [0, 1].
Scorer = Callable[[Item, list[str]], dict[str, float]]


@dataclass
class PromptSuite:
    """The common native suite: generate for every item, score, average per metric (x100)."""

    name: str
    version: str
    items: Sequence[Item]
    sampling: Sampling
    scorer: Scorer
    per_group: bool = False

    def run(self, engine: Engine) -> SuiteResult:
        start = time.perf_counter()
        outputs = engine.generate([it.prompt for it in self.items], self.sampling)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        details = []
        for item, outs in zip(self.items, outputs):
            scores = self.scorer(item, outs)
            keys = list(scores)
            for k in keys:
                _add(sums, counts, k, scores[k])
                if self.per_group and item.group:
                    _add(sums, counts, f"{k}/{item.group}", scores[k])
            details.append({"prompt": item.prompt, "outputs": outs, "scores": scores})
        metrics = {k: 100.0 * sums[k] / counts[k] for k in sums}
        return SuiteResult(self.name, self.version, metrics, counts,
                           time.perf_counter() - start, details)


def _add(sums: dict[str, float], counts: dict[str, int], key: str, value: float) -> None:
    sums[key] = sums.get(key, 0.0) + float(value)
    counts[key] = counts.get(key, 0) + 1
