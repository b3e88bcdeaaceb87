"""What keys a job and what a finished job stores: the weights key of a recipe, the check that
a point fits its experiment, and the result record of a job spec (pure; recipes and suites
are duck-typed). Planning jobs from points is `ptm_core.orchestrate.jobs`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

from ptm_core.errors import PTMError
from ptm_core.store.experiment import Experiment
from ptm_core.store.point import Point, recipe_refs
from ptm_core.store.records import JobSpec, ResultRecord

Fingerprinter = Callable[[str], str]


class SuiteLike(Protocol):
    name: str
    version: str
    sampling: Any

    def run(self, engine: Any) -> Any: ...


SuiteResolver = Callable[[Experiment, str], SuiteLike]


class JobMismatchError(PTMError):
    """A job does not fit its experiment any more (unknown model, changed suite or model...)."""


# A subsample job runs its suite on `subsample` of its items (ptm_core.evals.subsample); the
# option enters the job's suite options, hence its key, so the record of the quick pass and
# the full one are kept side by side. Records without it are full runs.
SUBSAMPLE_OPTION = "subsample"


def suite_options(exp: Experiment, axis: str, subsample: int | None = None) -> dict[str, Any]:
    """The suite options of a job on `axis`: the axis's, plus the subsample size if any."""
    opts = dict(exp.axes[axis].options)
    if subsample is not None:
        opts[SUBSAMPLE_OPTION] = int(subsample)
    return opts


def subsample_of(suite_opts: Mapping[str, Any] | None) -> int | None:
    """The subsample size of a job or record from its suite options; None for a full run."""
    k = (suite_opts or {}).get(SUBSAMPLE_OPTION)
    return None if k is None or isinstance(k, bool) else int(k)


def check_point_fits(exp: Experiment, point: Point) -> None:
    """A recipe may only use the experiment's own models (the warm engine holds only those;
    a model named only as the tokenizer's source too, so its fingerprint is tracked)."""
    known = set(exp.model_refs())
    stray = [r for r in point.model_refs if r not in known]
    if stray:
        raise JobMismatchError(
            f"recipe {point.label!r} uses model(s) {', '.join(stray)} that are not part of "
            f"experiment {exp.name!r} (its models: {', '.join(exp.model_refs())})")


def weights_key(recipe: Any, fingerprints: Sequence[str]) -> str:
    """The recipe's key with each model path replaced by its position and fingerprint: what
    the merge computes from, independent of where the models lie on disk. `fingerprints` are
    those of `recipe_refs(recipe)` (a tokenizer-only model included), in that order."""
    refs = recipe_refs(recipe)
    if len(refs) != len(fingerprints):
        raise JobMismatchError(f"recipe names {len(refs)} models, got {len(fingerprints)} fingerprints")
    with_refs = getattr(recipe, "with_refs", None)
    if with_refs is None:
        return recipe.key()
    return with_refs({r: f"{i}:{fp}" for i, (r, fp) in enumerate(zip(refs, fingerprints))}).key()


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
