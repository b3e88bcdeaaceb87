"""The worker: claims jobs, keeps engines warm, applies recipes, runs suites, writes results.

    python -m ptm_core worker [--store PATH] [--once]

Engines and suites are injected (`engine_factory(experiment) -> Engine`,
`suite_resolver(experiment, axis) -> Suite`), so tests run the real loop on fakes; the default
wiring imports `ptm_core.engine` and `ptm_core.evals` lazily.

Failure handling: any exception in a job (model fails to load, bad suite file, metric out of
range, a job that does not fit its experiment, a store write failing with a full disk) marks the
job failed with a readable error and the worker takes the next job. A worker that dies stops
heartbeating; its lease expires and the job returns to the queue. Ctrl-C / SIGTERM give the
running job back to the queue at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ptm_core.errors import PTMError
from ptm_core.store.db import Store, StoreError, default_cached_dir, default_store_path
from ptm_core.store.experiment import Experiment, ExperimentError
from ptm_core.store.jobs import (
    Fingerprinter, JobMismatchError, SuiteResolver, check_point_fits, default_fingerprinter,
    package_versions, record_for, suite_options, weights_key, worker_id_default,
)
from ptm_core.store.keys import diff_components, engine_key, key_components
from ptm_core.store.points import MergeKitBuilder, RecipeBuilder
from ptm_core.store.records import Job, JobSpec, RecordError, ResultRecord

log = logging.getLogger("ptm_core.store.worker")
EngineFactory = Callable[[Experiment], Any]  # -> ptm_core.engine.base.Engine
ProgressFn = Callable[[int | None, int | None, str], None]


class EngineStartError(PTMError):
    """The engine for an experiment could not be built (a model fails to load...)."""


# ---- default wiring ---------------------------------------------------------------------------
def default_engine_factory(experiment: Experiment) -> Any:
    """`ptm_core.engine.engine_for_experiment(experiment)` when the engine package provides it;
    otherwise the engine named by `experiment.engine`, started from θ_G with every model of the
    experiment resident: "vllm" -> VLLMEngine, "hf" -> HFEngine (`engine_options` are passed
    to the constructor)."""
    from ptm_core import engine as engine_pkg
    fn = getattr(engine_pkg, "engine_for_experiment", None)
    if fn is not None:
        return fn(experiment)
    opts = dict(experiment.engine_options)
    if experiment.engine == "vllm":
        from ptm_core.engine.vllm_engine import VLLMEngine
        return VLLMEngine(experiment.general.model, inputs=experiment.model_refs(), **opts)
    if experiment.engine == "hf":
        from ptm_core.engine.hf import HFEngine
        eng = HFEngine(experiment.general.model, **opts)
        eng.load_inputs(experiment.model_refs())
        return eng
    raise PTMError(f"experiment {experiment.name!r}: unknown engine {experiment.engine!r} "
                   "(vllm or hf)")


def default_suite_resolver(experiment: Experiment, axis: str) -> Any:
    """`ptm_core.evals.suite_for_axis(experiment, axis)`, else
    `ptm_core.evals.get_suite(name, **options)` with the axis's suite name and options."""
    from ptm_core import evals
    fn = getattr(evals, "suite_for_axis", None)
    if fn is not None:
        return fn(experiment, axis)
    get = getattr(evals, "get_suite", None)
    if get is None:
        raise PTMError("ptm_core.evals has neither suite_for_axis(experiment, axis) nor "
                       "get_suite(name, **options); cannot resolve suites")
    spec = experiment.axes[axis]
    return get(spec.suite, **spec.options)


# ---- evaluation (shared with sweep --inline) -----------------------------------------------------
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

    def suite(self, exp: Experiment, ref: str) -> Any:
        k = (exp.name, exp.content_hash(), ref)
        if k not in self._suites:
            if ref not in exp.axes:
                raise JobMismatchError(f"the job asks for axis {ref!r}, which experiment "
                                       f"{exp.name!r} does not have (axes: {', '.join(exp.axes)})")
            self._suites[k] = self.suite_resolver(exp, ref)
        return self._suites[k]

    def verify(self, exp: Experiment, spec: JobSpec, recipe: Any, suite: Any, engine_kind: str) -> None:
        """Re-derive the key from what will actually run; refuse a job that became stale."""
        check_point_fits(exp, spec.point)
        refs = list(recipe.model_refs())
        if refs != list(spec.point.model_refs):
            raise JobMismatchError(f"job {spec.point.label!r}: its recipe now names models "
                                   f"{refs}, queued with {list(spec.point.model_refs)}")
        fps = [self.fingerprinter(r) for r in refs]
        actual = key_components(
            recipe_key=weights_key(recipe, fps), fingerprints=fps,
            suite=suite.name, suite_version=suite.version, sampling=suite.sampling,
            engine=engine_kind, suite_options=suite_options(exp, spec.suite_ref))
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
        suite = self.suite(exp, spec.suite_ref)
        recipe = self.builder.load(spec.point.recipe_yaml)
        engine_kind = engine_key(engine.kind, exp.engine_options)
        self.verify(exp, spec, recipe, suite, engine_kind)
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


def check_axes_measured(exp: Experiment, record: ResultRecord) -> None:
    """A result must give every axis it was run for a score; otherwise the axis would silently
    stay empty in every chart (typically a `metric:` in the experiment file the suite does not
    report)."""
    from ptm_core.store.frame import axis_value

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


# ---- the loop -------------------------------------------------------------------------------
@dataclass
class WorkerStats:
    done: int = 0
    failed: int = 0
    lost: int = 0  # results written after the lease had been taken over
    job_ids: list[int] = field(default_factory=list)


class _Heartbeat(threading.Thread):
    def __init__(self, store: Store, job: Job, lease_s: float):
        super().__init__(daemon=True, name=f"heartbeat-{job.id}")
        self.store, self.job, self.lease_s = store, job, lease_s
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        interval = max(self.lease_s / 3.0, 0.05)
        while not self.stopped.wait(interval):
            try:
                if not self.store.heartbeat(self.job.id, self.job.worker, lease_s=self.lease_s):
                    self.lost = True
                    log.warning("job %s: lease lost (taken over by another worker?)", self.job.id)
                    return
            except StoreError as e:
                log.warning("job %s: heartbeat failed: %s", self.job.id, e)

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(timeout=5)


def _progress_reporter(store: Store, job: Job, lease_s: float, min_interval_s: float = 0.5) -> ProgressFn:
    last = [0.0]

    def report(done: int | None, total: int | None, message: str) -> None:
        now = time.monotonic()
        final = total is not None and done == total
        if not final and now - last[0] < min_interval_s and done not in (None, 0):
            return
        last[0] = now
        try:
            store.progress(job.id, job.worker, done, total, message[:500], lease_s=lease_s)
        except StoreError as e:
            log.warning("job %s: progress not recorded: %s", job.id, e)

    return report


def run_job(store: Store, evaluator: Evaluator, job: Job, *, lease_s: float,
            stats: WorkerStats) -> bool:
    """Run one claimed job to done or failed. Returns True when its result was stored.
    An interrupt (Ctrl-C, SIGTERM) at any point gives the job back to the queue."""
    hb = _Heartbeat(store, job, lease_s)
    spec = job.spec
    try:
        hb.start()
        store.worker_seen(job.worker, "busy", job.id)
        exp = store.get_experiment(spec.experiment)
        record, details = evaluator.evaluate(exp, spec, _progress_reporter(store, job, lease_s))
    except (KeyboardInterrupt, SystemExit):
        hb.stop()
        _release(store, job)
        raise
    except Exception as e:
        hb.stop()
        msg = describe_error(e)
        log.error("job %s (%s / %s) failed: %s", job.id, spec.point.label, spec.suite_ref, msg)
        _fail(store, job, msg)
        stats.failed += 1
        return False
    hb.stop()
    try:
        owned = store.complete(job, record, details)
    except (StoreError, RecordError) as e:
        msg = f"could not write the result: {e}"
        log.error("job %s: %s", job.id, msg)
        _fail(store, job, msg)
        stats.failed += 1
        return False
    except (KeyboardInterrupt, SystemExit):
        _release(store, job)  # the result transaction rolled back or committed; either is whole
        raise
    stats.done += 1
    stats.job_ids.append(job.id)
    if not owned:
        stats.lost += 1
    log.info("job %s done: %s / %s %s (%.2fs)", job.id, spec.point.label, spec.suite_ref,
             {k: round(v, 1) for k, v in list(record.metrics.items())[:4]}, record.wall_s or 0)
    return True


def _release(store: Store, job: Job) -> None:
    with contextlib.suppress(StoreError):
        store.release(job, "worker interrupted; back in the queue")


def _fail(store: Store, job: Job, msg: str) -> None:
    try:
        store.fail(job, msg)
    except StoreError as e:  # e.g. disk still full: the lease will expire and requeue it
        log.error("job %s: could not record the failure either (%s); it returns to the queue "
                  "when its lease expires", job.id, e)


def run_worker(store: Store, engine_factory: EngineFactory, suite_resolver: SuiteResolver, *,
               once: bool = False, poll_s: float = 1.0, lease_s: float = 60.0,
               worker_id: str | None = None, builder: RecipeBuilder | None = None,
               fingerprinter: Fingerprinter | None = None, max_jobs: int | None = None,
               max_attempts: int = 3, max_engines: int = 1,
               stop: threading.Event | None = None) -> WorkerStats:
    """Claim and run jobs until stopped; with `once`, until the queue is empty."""
    wid = worker_id or worker_id_default()
    stop = stop or threading.Event()
    evaluator = Evaluator(engine_factory, suite_resolver, builder=builder,
                          fingerprinter=fingerprinter, max_engines=max_engines)
    stats = WorkerStats()
    store.worker_seen(wid, "idle")
    log.info("worker %s on %s", wid, store.path)
    try:
        while not stop.is_set():
            job = None
            try:
                job = store.claim(wid, lease_s=lease_s, max_attempts=max_attempts,
                                  prefer_recipe=evaluator.last_recipe_key)
                if job is None:
                    if once:
                        break
                    store.worker_seen(wid, "idle")
                    stop.wait(poll_s)
                    continue
                run_job(store, evaluator, job, lease_s=lease_s, stats=stats)
            except (KeyboardInterrupt, SystemExit):
                if job is not None:  # interrupted between the claim and run_job's own handler
                    _release(store, job)
                raise
            if max_jobs is not None and stats.done + stats.failed >= max_jobs:
                break
    finally:
        evaluator.close()
        with contextlib.suppress(StoreError):
            store.worker_seen(wid, "stopped")
    return stats


def main(argv: Sequence[str] | None = None, *, engine_factory: EngineFactory | None = None,
         suite_resolver: SuiteResolver | None = None, builder: RecipeBuilder | None = None,
         fingerprinter: Fingerprinter | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptm_core worker",
                                 description="Claim evaluation jobs from the store and run them "
                                             "on a warm engine.")
    ap.add_argument("--store", default=None, help=f"SQLite store (default: $PTM_STORE or "
                                                  f"{default_store_path()})")
    ap.add_argument("--once", action="store_true", help="exit when the queue is empty")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between polls when idle")
    ap.add_argument("--lease", type=float, default=60.0,
                    help="seconds without a heartbeat before a job returns to the queue")
    ap.add_argument("--max-jobs", type=int, default=None)
    ap.add_argument("--id", default=None, help="worker id (default host:pid)")
    ap.add_argument("--no-cached", action="store_true", help="do not import cached_runs/")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = Store(args.store or default_store_path(),
                  cached_dir=None if args.no_cached else default_cached_dir())
    stop = threading.Event()

    def on_term(signum, frame):  # finish nothing half-way: give the job back, then exit
        raise SystemExit(128 + signum)

    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, on_term)
    try:
        stats = run_worker(store, engine_factory or default_engine_factory,
                           suite_resolver or default_suite_resolver, once=args.once,
                           poll_s=args.poll, lease_s=args.lease, worker_id=args.id,
                           max_jobs=args.max_jobs, stop=stop, builder=builder,
                           fingerprinter=fingerprinter)
    except KeyboardInterrupt:
        return 130
    print(f"worker: {stats.done} done, {stats.failed} failed")
    return 0
