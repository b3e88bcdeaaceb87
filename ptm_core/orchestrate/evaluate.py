"""Evaluating one job spec: a warm engine per experiment, the recipe applied, the suite run, the
key re-derived from what actually ran. Shared by the worker loop and `sweep --inline`.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections import OrderedDict
from typing import Any, Callable

from ptm_core.errors import PTMError
from ptm_core.orchestrate.jobs import default_fingerprinter, package_versions
from ptm_core.orchestrate.points import MergeKitBuilder, RecipeBuilder
from ptm_core.store.experiment import Experiment, ExperimentError
from ptm_core.store.frame import axis_value
from ptm_core.store.jobs import (
    Fingerprinter, JobMismatchError, SuiteResolver, check_point_fits, record_for, subsample_of,
    suite_options, weights_key,
)
from ptm_core.store.keys import diff_components, engine_key, key_components
from ptm_core.store.point import recipe_refs
from ptm_core.store.records import JobSpec, ResultRecord

EngineFactory = Callable[[Experiment], Any]  # -> ptm_core.engine.base.Engine
ProgressFn = Callable[[int | None, int | None, str], None]


class EngineStartError(PTMError):
    """The engine for an experiment could not be built (a model fails to load...)."""


class ProgressEngine:
    """Wraps an engine to report how many prompts have been generated (suites need not know)."""

    def __init__(self, engine: Any, report: ProgressFn | None, total: int | None):
        self._engine, self._report, self._total, self._done = engine, report, total, 0
        self.kind = engine.kind

    def apply(self, recipe: Any) -> float:
        return self._engine.apply(recipe)

    def generate(self, prompts: list[str], sampling: Any) -> list[list[str]]:
        out = self._engine.generate(prompts, sampling)
        self._done += len(prompts)
        if self._report is not None:
            self._report(self._done, self._total, f"generated {self._done}"
                         + (f"/{self._total}" if self._total else "") + " prompts")
        return out

    def __getattr__(self, name: str) -> Any:  # anything else a suite may need (lm-eval wrapper)
        return getattr(self._engine, name)


class Evaluator:
    """Warm engines (LRU, one per experiment), cached suites, and the recipe last applied to
    each engine (so consecutive jobs on the same recipe do not swap weights again)."""

    def __init__(self, engine_factory: EngineFactory, suite_resolver: SuiteResolver, *,
                 builder: RecipeBuilder | None = None, fingerprinter: Fingerprinter | None = None,
                 max_engines: int = 1):
        self.engine_factory = engine_factory
        self.suite_resolver = suite_resolver
        self.builder = builder or MergeKitBuilder()
        self.fingerprinter = fingerprinter or default_fingerprinter()
        self.max_engines = max(1, max_engines)
        self._engines: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._suites: dict[tuple[str, str, str], Any] = {}
        self._subsamples: dict[tuple[str, str, str, int], Any] = {}
        self._applied: dict[int, str | None] = {}
        self.last_recipe_key: str | None = None
        self.engines_built = 0

    def engine(self, exp: Experiment) -> Any:
        k = (exp.name, exp.content_hash())
        if k in self._engines:
            self._engines.move_to_end(k)
            return self._engines[k]
        while len(self._engines) >= self.max_engines:
            _, old = self._engines.popitem(last=False)
            self._applied.pop(id(old), None)
            _close(old)
        try:
            eng = self.engine_factory(exp)
        except Exception as e:
            detail = str(e) if isinstance(e, PTMError) else f"{type(e).__name__}: {e}"
            raise EngineStartError(f"could not start the engine for experiment {exp.name!r}: "
                                   f"{detail}") from e
        self.engines_built += 1
        self._engines[k] = eng
        return eng

    def suite(self, exp: Experiment, ref: str, subsample: int | None = None) -> Any:
        """The axis's suite (resolved once), or its subsample of `subsample` items."""
        k = (exp.name, exp.content_hash(), ref)
        if k not in self._suites:
            if ref not in exp.axes:
                raise JobMismatchError(f"the job asks for axis {ref!r}, which experiment "
                                       f"{exp.name!r} does not have (axes: {', '.join(exp.axes)})")
            self._suites[k] = self.suite_resolver(exp, ref)
        if subsample is None:
            return self._suites[k]
        sk = (*k, subsample)
        if sk not in self._subsamples:
            from ptm_core.evals.subsample import can_subsample, subsample_suite
            full = self._suites[k]
            if not can_subsample(full, subsample):
                raise JobMismatchError(f"the job asks for suite {full.name!r} on {subsample} of "
                                       f"its items, which it cannot run (it has fewer, or no "
                                       f"list of items)")
            self._subsamples[sk] = subsample_suite(full, subsample)
        return self._subsamples[sk]

    def verify(self, exp: Experiment, spec: JobSpec, recipe: Any, suite: Any, engine_kind: str,
               subsample: int | None = None) -> None:
        """Re-derive the key from what will actually run; refuse a job that became stale."""
        check_point_fits(exp, spec.point)
        refs = recipe_refs(recipe)
        if refs != list(spec.point.model_refs):
            raise JobMismatchError(f"job {spec.point.label!r}: its recipe now names models "
                                   f"{refs}, queued with {list(spec.point.model_refs)}")
        fps = [self.fingerprinter(r) for r in refs]
        actual = key_components(
            recipe_key=weights_key(recipe, fps), fingerprints=fps,
            suite=suite.name, suite_version=suite.version, sampling=suite.sampling,
            engine=engine_kind, suite_options=suite_options(exp, spec.suite_ref, subsample))
        diffs = diff_components(spec.components, actual)
        if diffs:
            raise JobMismatchError(
                f"job {spec.point.label!r} / {spec.suite_ref} no longer matches what would run "
                f"(enqueue it again): " + "; ".join(diffs))

    def evaluate(self, exp: Experiment, spec: JobSpec,
                 progress: ProgressFn | None = None) -> tuple[ResultRecord, list]:
        start = time.perf_counter()
        say = progress or (lambda *a: None)
        say(None, None, "loading engine")
        engine = self.engine(exp)
        subsample = subsample_of(spec.components.get("suite_options"))
        suite = self.suite(exp, spec.suite_ref, subsample)
        recipe = self.builder.load(spec.point.recipe_yaml)
        engine_kind = engine_key(engine.kind, exp.engine_options)
        self.verify(exp, spec, recipe, suite, engine_kind, subsample)
        swap_s = 0.0
        if self._applied.get(id(engine)) != spec.point.recipe_key:
            say(None, None, f"applying {spec.point.label}")
            self._applied[id(engine)] = None  # unknown state if apply fails halfway
            swap_s = float(engine.apply(recipe) or 0.0)
            self._applied[id(engine)] = spec.point.recipe_key
        self.last_recipe_key = spec.point.recipe_key
        items = getattr(suite, "items", None)
        total = len(items) if items is not None else None
        say(0, total, f"running {suite.name}")
        try:
            result = suite.run(ProgressEngine(engine, progress, total))
        except Exception:
            self._applied[id(engine)] = None  # the engine may be in any state now
            raise
        wall = time.perf_counter() - start
        record = record_for(spec, metrics=result.metrics, counts=result.counts, wall_s=wall,
                            swap_s=swap_s, engine=engine_kind, versions=package_versions(),
                            intervals=getattr(result, "intervals", None))
        record.validate()
        check_axes_measured(exp, record)
        return record, list(getattr(result, "details", None) or [])

    def close(self) -> None:
        for eng in self._engines.values():
            _close(eng)
        self._engines.clear()
        self._applied.clear()
        self._subsamples.clear()


def check_axes_measured(exp: Experiment, record: ResultRecord) -> None:
    """A result must give every axis it was run for a score; otherwise the axis would silently
    stay empty in every chart (typically a `metric:` in the experiment file the suite does not
    report)."""
    for axis in record.axes:
        if axis_value(exp, axis, record) is None:
            asked = exp.axes[axis].metric or "its only top-level metric, or 'score'"
            have = ", ".join(sorted(k for k in record.metrics if "/" not in k)) or "nothing"
            raise ExperimentError(f"axis {axis!r} asks suite {record.suite!r} for {asked!r}, but the "
                                  f"suite reports {have}: set `metric:` of that axis in the experiment file")


def _close(engine: Any) -> None:
    fn = getattr(engine, "close", None)
    if callable(fn):
        with contextlib.suppress(Exception):
            fn()


def describe_error(e: BaseException) -> str:
    """One readable paragraph: the message for user errors, plus where for unexpected ones."""
    if isinstance(e, PTMError):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)[-3:]
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in reversed(tb))
    return f"{type(e).__name__}: {e}" + (f" (at {where})" if where else "")
