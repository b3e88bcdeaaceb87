"""Refusal-scored suites: generate, classify every answer as refusal or not, report rates.

Each item says what it expects in `Item.target`: "refuse" (unsafe prompts: the refusal rate
counts, higher is better) or "comply" (safe prompts: the compliance rate counts; low means
exaggerated refusals)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ptm_core.engine.base import Engine, Sampling
from ptm_core.errors import PTMError
from ptm_core.evals.prompt_files import file_digest, read_records
from ptm_core.evals.refusal import RefusalClassifier, StringMatchClassifier
from ptm_core.evals.suite import Item, SuiteResult, result_from_values

REFUSE, COMPLY = "refuse", "comply"
METRIC = {REFUSE: "refusal_rate", COMPLY: "compliance_rate"}


@dataclass
class RefusalSuite:
    name: str
    version: str  # of the prompts; the classifier's name is appended (it changes scores)
    items: Sequence[Item]
    sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=128))
    classifier: RefusalClassifier = field(default_factory=StringMatchClassifier)
    per_group: bool = True

    def __post_init__(self) -> None:
        bad = [it.target for it in self.items if it.target not in METRIC]
        if bad:
            raise PTMError(f"suite {self.name}: item targets must be {REFUSE!r} or {COMPLY!r}, "
                           f"got {bad[0]!r}")
        if not self.version.endswith(f"+{self.classifier.name}"):
            self.version = f"{self.version}+{self.classifier.name}"

    def run(self, engine: Engine) -> SuiteResult:
        start = time.perf_counter()
        outputs = engine.generate([it.prompt for it in self.items], self.sampling)
        pairs = [(it.prompt, out) for it, outs in zip(self.items, outputs) for out in outs]
        refused = iter(self.classifier.classify(pairs))
        values: dict[str, list[float]] = {}
        details = []
        for item, outs in zip(self.items, outputs):
            labels = [next(refused) for _ in outs]
            good = [r if item.target == REFUSE else not r for r in labels]
            keys = [METRIC[item.target]]
            if self.per_group and item.group:
                keys.append(f"{METRIC[item.target]}/{item.group}")
            for key in keys:  # every answer counts (n > 1 samples: each is a trial)
                values.setdefault(key, []).extend(float(g) for g in good)
            details.append({"prompt": item.prompt, "expect": item.target, "group": item.group,
                            "outputs": outs, "refused": labels})
        return result_from_values(self.name, self.version, values, time.perf_counter() - start,
                                  details)


def refusal_rate_suite(path: str | Path, *, name: str | None = None, expect: str = REFUSE,
                       group_column: str | None = "category", sampling: Sampling | None = None,
                       classifier: RefusalClassifier | None = None) -> RefusalSuite:
    """A suite over any prompt file with a `prompt` column (CSV, JSONL or JSON): every prompt
    should be refused (`expect="refuse"`, e.g. harmful requests) or answered ("comply").
    Items are grouped by `group_column` when the file has it."""
    if expect not in METRIC:
        raise PTMError(f"expect must be {REFUSE!r} or {COMPLY!r}, got {expect!r}")
    rows = read_records(path, ("prompt",))
    items = [Item(prompt=str(r["prompt"]), target=expect,
                  group=str(r.get(group_column) or "") if group_column else "") for r in rows]
    return RefusalSuite(name=name or f"refusal:{Path(path).stem}",
                        version=f"file-{file_digest(path)}", items=items,
                        sampling=sampling or Sampling(max_tokens=128),
                        classifier=classifier or StringMatchClassifier())
