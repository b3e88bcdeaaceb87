"""Execution-scored coding: the model writes code, hidden assert-tests run it in the sandbox.

Reports pass@1 from one greedy completion per problem and the unbiased pass@k (Chen et al.
2021) from n samples at temperature 0.8 (the paper: pass@10, n = 10)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ptm_core.engine.base import Engine, Sampling
from ptm_core.errors import PTMError
from ptm_core.passk import pass_at_k
from ptm_core.evals.prompt_files import file_digest, read_records
from ptm_core.evals.sandbox import run_tests_batch
from ptm_core.evals.suite import SuiteResult, result_from_values

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str) -> str:
    """The program in a completion: the fenced code blocks when there are any (a reply often
    wraps its code in prose), else the whole completion."""
    blocks = _FENCE.findall(completion)
    return "\n\n".join(b.strip("\n") for b in blocks) if blocks else completion


@dataclass(frozen=True)
class CodeProblem:
    prompt: str
    tests: str  # assert statements, run after the candidate code in the same namespace
    setup: str = ""  # code placed before the candidate (imports, a given stub's helpers)
    group: str = ""


@dataclass
class CodingSuite:
    name: str
    version: str
    problems: Sequence[CodeProblem]
    # The sampled pass; the greedy pass@1 uses the same max_tokens and stop strings.
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.8, n=10,
                                                                max_tokens=256))
    k: int = 10
    timeout_s: float = 5.0
    memory_mb: int = 512
    workers: int | None = None
    sampled: bool = True  # False: greedy pass@1 only (10x cheaper)

    def __post_init__(self) -> None:
        if self.sampled and not 1 <= self.k <= self.sampling.n:
            raise PTMError(f"pass@{self.k} needs at least {self.k} samples, sampling.n is "
                           f"{self.sampling.n}")

    @property
    def greedy(self) -> Sampling:
        return Sampling(temperature=0.0, n=1, max_tokens=self.sampling.max_tokens,
                        stop=self.sampling.stop, seed=self.sampling.seed)

    def run(self, engine: Engine) -> SuiteResult:
        start = time.perf_counter()
        prompts = [p.prompt for p in self.problems]
        greedy = [outs[0] for outs in engine.generate(prompts, self.greedy)]
        sampled = engine.generate(prompts, self.sampling) if self.sampled else [[] for _ in prompts]
        cases = [self._case(p, c) for p, c in zip(self.problems, greedy)]
        cases += [self._case(p, c) for p, outs in zip(self.problems, sampled) for c in outs]
        passed = iter(run_tests_batch(cases, self.timeout_s, self.memory_mb, self.workers))
        greedy_ok = [next(passed) for _ in self.problems]
        sampled_ok = [[next(passed) for _ in outs] for outs in sampled]

        values: dict[str, list[float]] = {}
        details = []
        for prob, g_ok, s_ok, g_out, s_outs in zip(self.problems, greedy_ok, sampled_ok,
                                                   greedy, sampled):
            scores = {"pass@1": float(g_ok)}
            if self.sampled:
                n, c = len(s_ok), sum(s_ok)
                scores[f"pass@{self.k}"] = pass_at_k(n, c, self.k)
                scores["pass@1_sampled"] = pass_at_k(n, c, 1)
            for key, value in scores.items():
                values.setdefault(key, []).append(value)
                if prob.group:
                    values.setdefault(f"{key}/{prob.group}", []).append(value)
            details.append({"prompt": prob.prompt, "group": prob.group, "greedy": g_out,
                            "greedy_passed": g_ok, "samples": s_outs, "samples_passed": s_ok})
        # pass@k's interval: the bootstrap over problems of the per-problem estimator
        return result_from_values(self.name, self.version, values, time.perf_counter() - start,
                                  details)

    @staticmethod
    def _case(problem: CodeProblem, completion: str) -> tuple[str, str]:
        code = extract_code(completion)
        return ((problem.setup + "\n" + code) if problem.setup else code, problem.tests)


def load_code_problems(path: str | Path) -> list[CodeProblem]:
    """Problems from a CSV/JSONL/JSON file with `prompt` and `tests` columns (optional `setup`
    and `group`), or in HumanEval's layout (`prompt`, `test`, `entry_point`: the stub is the
    prompt and `check(entry_point)` runs the tests)."""
    rows = read_records(path, ())
    if rows and "test" in rows[0] and "entry_point" in rows[0] and "tests" not in rows[0]:
        read_records(path, ("prompt", "test", "entry_point"))  # validates every row
        return [CodeProblem(
            prompt=("Complete this Python function. Reply with the whole function in a "
                    f"```python code block.\n\n```python\n{r['prompt']}```"),
            tests=f"{r['test']}\n\ncheck({r['entry_point']})\n",
            group=str(r.get("group") or "")) for r in rows]
    rows = read_records(path, ("prompt", "tests"))
    return [CodeProblem(prompt=str(r["prompt"]), tests=str(r["tests"]),
                        setup=str(r.get("setup") or ""), group=str(r.get("group") or ""))
            for r in rows]


def coding_suite(path: str | Path, *, name: str | None = None, **options) -> CodingSuite:
    """A coding suite over a problem file (see `load_code_problems`)."""
    return CodingSuite(name=name or f"coding:{Path(path).stem}",
                       version=f"file-{file_digest(path)}", problems=load_code_problems(path),
                       **options)
