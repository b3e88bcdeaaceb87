"""A suite is a named, versioned set of prompts with sampling parameters and a scorer.

Every suite yields metrics on a 0-100 scale together with the number of samples behind each,
and a 95 % interval for each metric it can give one (`ptm_core.intervals`).
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
    # metric -> [lo, hi], 95 %, 0-100 like the metric; a metric without one has no interval
    intervals: dict[str, list[float]] = field(default_factory=dict)


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
        values: dict[str, list[float]] = {}
        details = []
        for item, outs in zip(self.items, outputs):
            scores = self.scorer(item, outs)
            keys = list(scores)
            for k in keys:
                values.setdefault(k, []).append(float(scores[k]))
                if self.per_group and item.group:
                    values.setdefault(f"{k}/{item.group}", []).append(float(scores[k]))
            details.append({"prompt": item.prompt, "outputs": outs, "scores": scores})
        return result_from_values(self.name, self.version, values, time.perf_counter() - start,
                                  details)


def result_from_values(name: str, version: str, values: dict[str, list[float]], wall_s: float,
                       details: list[dict]) -> SuiteResult:
    """A SuiteResult from per-item values in [0, 1] per metric: the mean (x100), the number of
    items and the 95 % interval of each."""
    from ptm_core.intervals import item_intervals

    metrics = {k: 100.0 * sum(v) / len(v) for k, v in values.items()}
    counts = {k: len(v) for k, v in values.items()}
    return SuiteResult(name, version, metrics, counts, wall_s, details, item_intervals(values))
