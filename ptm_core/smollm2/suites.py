"""The real-model world's suites, on the same warm engine as every other suite.

    smollm2_general      ARC-Easy (100 validation questions), multiple choice by log-likelihood
    smollm2_science      SciRIFF yes/no (100 held-out documents), multiple choice
    smollm2_coding       HumanEval (164), greedy pass@1 by executing the completion in the sandbox
    smollm2_safety       refusal rate on the 99 HarmBench prompts held out of training
    smollm2_xstest_safe  compliance with XSTest's 250 safe prompts (exaggerated refusals)

XSTest is not on PyPI: its CSV is read from the `path` option, else $PTM_XSTEST_CSV, else
`../shared/data/xstest/xstest_prompts.csv` beside the repository."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

from ptm_core.engine.base import Sampling
from ptm_core.errors import PTMError
from ptm_core.evals.registry import NoReferences, register_references, register_suite_family
from ptm_core.smollm2 import data

TASKS_DIR = Path(__file__).resolve().parent / "lmeval_tasks"
REPO = Path(__file__).resolve().parents[2]
XSTEST_DEFAULT = REPO.parent / "shared" / "data" / "xstest" / "xstest_prompts.csv"
VERSION = "s1"


def _items_digest(items) -> str:
    """Part of every version: the test items themselves (rebuilt from the packages), so a change
    of split, size or prompt format can never reuse cached scores."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _lmeval(name: str, task: str, items):
    from ptm_core.evals.lmeval import LMEvalSuite

    suite = LMEvalSuite([task], include_path=TASKS_DIR, include_defaults=False,
                        apply_chat_template=True, name=name)
    suite.version = f"{suite.version}-{VERSION}-{_items_digest(items)}"
    return suite


def general(**_: Any):
    return _lmeval("smollm2_general", "smollm2_arc_easy", data.general_test())


def science(**_: Any):
    return _lmeval("smollm2_science", "smollm2_sciriff_yesno", data.science_test())


def _preamble(stub: str, entry_point: str) -> str:
    """What the stub gives before the function to write: its imports and, in four problems
    (HumanEval/10, 32, 38, 50), helper functions the tests or the solution call. A reply that
    rewrites only the asked-for function drops them."""
    return stub[: re.search(rf"^def {re.escape(entry_point)}\(", stub, re.M).start()].strip()


def coding(max_tokens: int = 160, timeout_s: float = 5.0, **_: Any):
    from ptm_core.evals.coding import CodeProblem, CodingSuite

    problems = [CodeProblem(prompt=d["prompt"], tests=d["tests"],
                            setup=_preamble(d["stub"], d["entry_point"]))
                for d in data.coding_test()]
    # s1 -> s2: the stub's helper functions, not only its imports, go before the reply
    return CodingSuite(name="smollm2_coding", version=f"humaneval-s2-{_items_digest([p.__dict__ for p in problems])}", problems=problems,
                       sampling=Sampling(temperature=0.0, n=1, max_tokens=max_tokens),
                       k=1, sampled=False, timeout_s=timeout_s)


def safety(max_tokens: int = 48, **_: Any):
    from ptm_core.evals.refusal_suite import REFUSE, RefusalSuite
    from ptm_core.evals.suite import Item

    items = [Item(prompt=p, target=REFUSE) for p in data.safety_test()]
    return RefusalSuite(name="smollm2_safety", version=f"harmbench-{VERSION}-{_items_digest([i.prompt for i in items])}", items=items,
                        sampling=Sampling(max_tokens=max_tokens))


def xstest_path(path: str | None = None) -> Path:
    chosen = Path(path or os.environ.get("PTM_XSTEST_CSV") or XSTEST_DEFAULT).expanduser()
    if not chosen.is_file():
        raise PTMError(f"XSTest prompts not found at {chosen}: pass the suite option `path`, or "
                       "set PTM_XSTEST_CSV to xstest_prompts.csv (CC BY 4.0, "
                       "github.com/paul-rottger/exaggerated-safety)")
    return chosen


def xstest_safe(path: str | None = None, max_tokens: int = 48, every: int = 2, **_: Any):
    """XSTest's safe prompts; `every`: keep every n-th (2: 125 of 250, a point stays cheap)."""
    from ptm_core.evals.refusal_suite import COMPLY, RefusalSuite
    from ptm_core.evals.xstest import load_xstest_rows
    from ptm_core.evals.suite import Item

    rows, version = load_xstest_rows(xstest_path(path))
    items = [Item(prompt=str(r["prompt"]), target=COMPLY, group=str(r.get("type") or ""))
             for r in rows if str(r["label"]).strip().lower() == "safe"][::max(1, int(every))]
    return RefusalSuite(name="smollm2_xstest_safe", version=f"{version}-{VERSION}-every{every}", items=items,
                        sampling=Sampling(max_tokens=max_tokens), per_group=False)


SUITES: dict[str, Callable[..., Any]] = {
    "smollm2_general": general, "smollm2_science": science, "smollm2_coding": coding,
    "smollm2_safety": safety, "smollm2_xstest_safe": xstest_safe,
}


@register_suite_family("smollm2_")
def build_suite(name: str, **options: Any):
    """The registry's builder for `smollm2_*` names (listed in ptm_core.orchestrate.worlds)."""
    if name not in SUITES:
        raise PTMError(f"unknown suite {name!r}; the real-model world has {', '.join(SUITES)}")
    return SUITES[name](**options)


_NO_REFERENCES = {
    "smollm2_coding": "HumanEval is scored by executing the reply; the world reads no reference "
                      "solutions for its test problems",
    "smollm2_safety": "HarmBench prompts come without reference replies (the suite scores "
                      "refusals)",
    "smollm2_xstest_safe": "XSTest prompts come without reference replies (the suite scores "
                           "compliance)",
}


@register_references("smollm2_")
def references(name: str, cap: int | None = None, **_: Any) -> list[tuple[str, str]]:
    """(question, correct choice) of the multiple-choice suites, the items their lm-eval task
    scores; the other suites have none (NoReferences says why)."""
    if name in _NO_REFERENCES:
        raise NoReferences(f"{name}: {_NO_REFERENCES[name]}")
    tests = {"smollm2_general": data.general_test, "smollm2_science": data.science_test}
    if name not in tests:
        raise PTMError(f"unknown suite {name!r}; the real-model world has {', '.join(SUITES)}")
    return [(d["question"], d["choices"][d["gold"]]) for d in tests[name]()[:cap]]
