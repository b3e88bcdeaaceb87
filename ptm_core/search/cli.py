"""`python -m ptm_core search EXPERIMENT.yml`: find good ω without the full grid.

    python -m ptm_core search EXPERIMENT.yml --skills science,safety [--objective science,safety
        | --objective science=1,safety=2] [--delta 5 | --delta none] [--budget 20] [--batch 4]
        [--step 0.05] [--layer-groups G] [--surrogate gp|quadratic] [--inline | --enqueue [--wait S]]
        [--json OUT]

Each suggestion is an ordinary sweep point (`orchestrate.points.method_point`, the same recipe
and key), evaluated inline through one warm engine or queued for `python -m ptm_core worker`,
and stored like every other result; points already measured are reused, not re-run. After each
batch the surrogates are refitted and the measured and predicted fronts printed.

`--layer-groups G` (2–4) searches a per-layer ω: G anchors per skill of a MergeKit gradient list
(ω at the first layer, ..., at the last, interpolated between), so k·G dimensions; a suggestion
whose anchors are all equal is the plain one-ω point (`search.space.Space`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

import numpy as np

from ptm_core import catalogue
from ptm_core.atomic import write_text
from ptm_core.errors import PTMError
from ptm_core.merge.fingerprint import current_fingerprints
from ptm_core.orchestrate.evaluate import EngineStartError, Evaluator, describe_error
from ptm_core.orchestrate.jobs import default_fingerprinter, plan_jobs
from ptm_core.orchestrate.points import MergeKitBuilder, method_point
from ptm_core.orchestrate.wiring import default_engine_factory, default_suite_resolver
from ptm_core.search import acquisition, front as front_mod, space, surrogate
from ptm_core.search.hypervolume import hypervolume
from ptm_core.search.measured import measured_points
from ptm_core.search.objective import Objective, parse_objective
from ptm_core.store.db import Store, default_cached_dir, default_store_path
from ptm_core.store.experiment import Experiment
from ptm_core.store.frame import results_frame


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ptm_core search",
                                 description="Suggest, measure and refit: the best ω without the grid.")
    ap.add_argument("experiment", help="experiment YAML file")
    ap.add_argument("--skills", default=None, help="comma list of skills whose ω to search (default: all)")
    ap.add_argument("--objective", default=None,
                    help="axes to maximise: 'a,b' (Pareto front) or 'a=1,b=2' (weighted sum); "
                         "default: the chosen skills' axes")
    ap.add_argument("--constraint", default="general",
                    help="axis that must stay within --delta of the ω = 0 point, θ_G's weights (default general)")
    ap.add_argument("--delta", default="5", help="allowed drop of the constraint axis in points, or 'none'")
    ap.add_argument("--method", default="task_arithmetic", help="a base-relative merge method (default task_arithmetic)")
    ap.add_argument("--budget", type=int, default=20, help="new evaluations (points) to spend (default 20)")
    ap.add_argument("--batch", type=int, default=4, help="points per batch (default 4)")
    ap.add_argument("--init", type=int, default=5, help="points in the initial design (default 5)")
    ap.add_argument("--step", type=float, default=0.05, help="ω lattice step of the suggestions (default 0.05)")
    ap.add_argument("--max-omega", type=float, default=1.0, help="upper end of each ω (default 1)")
    ap.add_argument("--layer-groups", type=int, default=1, metavar="G",
                    help="ω per skill per layer group: 1 (default) is one ω per skill; 2 to 4 give "
                         "each skill G anchors of a MergeKit gradient (first layer to last, "
                         "interpolated between), so k·G dimensions. When the --step lattice of "
                         f"k·G dimensions would pass {space.MAX_CANDIDATES:,} points, the "
                         "candidates are a seeded sample of it (every one-ω-per-skill point, then "
                         "uniform draws) at the same step; a coarser --step keeps the whole lattice")
    ap.add_argument("--surrogate", default="gp", choices=surrogate.KINDS)
    ap.add_argument("--beta", type=float, default=1.0, help="optimism: mean + β·sd (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--inline", dest="mode", action="store_const", const="inline",
                      help="evaluate here, through one warm engine (default)")
    mode.add_argument("--enqueue", dest="mode", action="store_const", const="enqueue",
                      help="queue each batch for `python -m ptm_core worker` and wait for it")
    ap.set_defaults(mode="inline")
    ap.add_argument("--wait", type=float, default=3600.0,
                    help="with --enqueue: seconds to wait for a batch (0: queue one batch and stop)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write the predicted front (with bands) here")
    ap.add_argument("--store", default=None, help=f"SQLite store (default: $PTM_STORE or {default_store_path()})")
    return ap


def measured(store: Store, exp: Experiment, method: str, skills: Sequence[str],
             metrics: Sequence[str], groups: int = 1,
             current=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """ω and scores of every stored point of this method over these skills, `groups` anchors
    per skill (search/measured.py); `current` (merge.fingerprint.current_fingerprints) leaves
    out results of rebuilt models."""
    return measured_points(results_frame(store, exp, current=current), method, skills, metrics,
                           groups)


def _objective(args, exp: Experiment, skills: Sequence[str], floor: float | None) -> Objective:
    spec = args.objective or ",".join(skills)
    constraint = None if args.delta.strip().lower() == "none" else args.constraint
    return parse_objective(spec, known_axes=list(exp.axes), constraint_axis=constraint, floor=floor)


def _delta(args) -> float | None:
    if args.delta.strip().lower() == "none":
        return None
    try:
        d = float(args.delta)
    except ValueError:
        raise PTMError(f"--delta {args.delta!r}: a number of points or 'none'") from None
    if not d >= 0:
        raise PTMError("--delta must be ≥ 0")
    return d


class _Runner:
    """Evaluates batches of points inline through one engine kept warm, or via the queue."""

    def __init__(self, args, store, exp, builder, engine_factory, suite_resolver, fingerprinter, out):
        self.args, self.store, self.exp, self.out = args, store, exp, out
        self.builder, self.resolver, self.fp = builder, suite_resolver, fingerprinter
        self.engine_factory = engine_factory
        self.ev: Evaluator | None = None

    def run(self, points, axes) -> tuple[int, list[str]]:
        """(evaluated, failures); raises nothing for a failing point."""
        specs = plan_jobs(self.exp, points, self.resolver, self.fp, axes=axes, builder=self.builder)
        self.store.register_experiment(self.exp)
        cached = self.store.adopt(specs)
        todo = [s for s in specs if s.key not in cached]
        if self.args.mode == "enqueue":
            return self._enqueue(todo)
        if self.ev is None:
            self.ev = Evaluator(self.engine_factory, self.resolver, builder=self.builder,
                                fingerprinter=self.fp)
        failures, ran = [], 0
        for spec in todo:
            try:
                record, details = self.ev.evaluate(self.exp, spec)
                self.store.put_result(record, details)
                ran += 1
            except EngineStartError as e:
                raise PTMError(str(e)) from None
            except Exception as e:  # one bad point must not end the search
                failures.append(f"{spec.point.label} / {spec.suite_ref}: {describe_error(e)}")
        return ran, failures

    def _enqueue(self, todo) -> tuple[int, list[str]]:
        self.store.enqueue_many(todo)
        keys = {s.key for s in todo}
        deadline = time.monotonic() + self.args.wait
        while True:
            have = self.store.existing_keys(keys)
            failed = [j for j in self.store.jobs(experiment=self.exp.name, statuses=["failed"])
                      if j.key in keys]
            if len(have) + len(failed) >= len(keys):
                return len(have), [f"{j.label} / {j.suite_ref}: failed in the worker" for j in failed]
            if time.monotonic() >= deadline:
                raise _Pending(len(keys) - len(have) - len(failed))
            time.sleep(1.0)

    def close(self):
        if self.ev is not None:
            self.ev.close()


class _Pending(Exception):
    pass


def main(argv: Sequence[str] | None = None, *, engine_factory=None, suite_resolver=None,
         builder=None, fingerprinter=None, store: Store | None = None, out=None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    exp = Experiment.load(args.experiment)
    skills = [s.strip() for s in args.skills.split(",")] if args.skills else list(exp.skills)
    unknown = [s for s in skills if s not in exp.skills]
    if unknown:
        raise PTMError(f"unknown skill(s) {', '.join(unknown)}; experiment {exp.name!r} has {', '.join(exp.skills)}")
    skills = [s for s in exp.skills if s in skills]  # experiment order, as points name them
    if catalogue.method(args.method).form != "task_arithmetic":
        raise PTMError(f"--method {args.method}: search needs a base-relative merge over several skills")
    if args.budget < 1 or args.batch < 1 or args.init < 1:
        raise PTMError("--budget, --batch and --init must be at least 1")
    delta = _delta(args)
    obj = _objective(args, exp, skills, None)  # validates the axes before anything runs
    groups = space.check_groups(args.layer_groups)
    sp = space.Space(tuple(skills), groups, 0.0, args.max_omega, args.step, args.seed)
    candidates = sp.candidates()
    builder = builder or MergeKitBuilder()
    store = store or Store(args.store or default_store_path(), cached_dir=default_cached_dir())
    runner = _Runner(args, store, exp, builder, engine_factory or default_engine_factory,
                     suite_resolver or default_suite_resolver, fingerprinter or default_fingerprinter(), out)
    print(f"{exp.name}: searching ω of {', '.join(skills)} ({sp.describe()}), budget "
          f"{args.budget}, batch {args.batch}, {args.surrogate} surrogate", file=out)
    spent, batch_no, failures, models = 0, 0, [], None
    current = current_fingerprints(exp, fingerprinter)  # the models do not change meanwhile
    try:
        while True:
            X, scores = measured(store, exp, args.method, skills, obj.metrics, groups, current)
            origin = np.flatnonzero(np.all(X == 0, axis=1)) if len(X) else np.array([], int)
            floor = (float(scores[obj.constraint_axis][origin[0]]) - delta
                     if obj.constraint_axis and delta is not None and len(origin) else None)
            obj = _objective(args, exp, skills, floor)
            if batch_no:
                ref = _ref(obj, X, scores, origin)
                models = _report(out, obj, sp, X, scores, ref, candidates, args, batch_no, spent)
            left = args.budget - spent
            if left <= 0:
                break
            if len(X) < args.init or floor is None and obj.constraint_axis and delta is not None:
                design = space.initial_design(candidates, args.init, args.seed)
                have = {tuple(x) for x in np.round(X, 6)}  # a resampled gradient: to ω's rounding
                picks = [i for i in design if tuple(np.round(candidates[i], 6)) not in have][:left]
            else:
                picks, _ = acquisition.propose(obj, X, scores, candidates, q=min(args.batch, left),
                                               ref=_ref(obj, X, scores, origin), beta=args.beta,
                                               kind=args.surrogate, seed=args.seed)
            if not picks:
                print("every lattice point is measured", file=out)
                break
            batch_no += 1
            points = [method_point(exp, builder, args.method, sp.omegas(candidates[i]))
                      for i in picks]
            print(f"batch {batch_no}: " + "; ".join(p.label for p in points), file=out)
            ran, failed = runner.run(points, list(obj.metrics))
            spent += len(picks)
            failures += failed
            for f in failed:
                print(f"FAILED {f}", file=out)
    except _Pending as p:
        print(f"queued; {p} evaluation(s) still waiting for `python -m ptm_core worker`: rerun "
              f"this command to continue from the stored results", file=out)
        return 0
    finally:
        runner.close()
    if models is not None and args.json:
        f = front_mod.predicted_front(models, obj, candidates)
        names = list(obj.axes) if obj.weights is None else ["objective"]
        write_text(args.json, json.dumps({"objective": obj.describe(), "skills": skills,
                                          "layer_groups": groups,
                                          "predicted_front": f.rows(sp, names)}, indent=1) + "\n")
        print(f"wrote the predicted front to {args.json}", file=out)
    return 1 if failures else 0


def _ref(obj: Objective, X, scores, origin) -> list[float]:
    """Hypervolume reference: the ω = 0 point's objective values (improvement over θ_G's
    weights), else the worst measured value."""
    A = np.column_stack([scores[a] for a in obj.axes])
    v = obj.values(A[origin[0]] if len(origin) else A.min(axis=0))
    return [float(x) for x in np.atleast_1d(v)]


def _report(out, obj, sp, X, scores, ref, candidates, args, batch_no, spent):
    models = surrogate.fit_all(args.surrogate, X, {m: scores[m] for m in obj.metrics}, seed=args.seed)
    front = acquisition.measured_front(obj, scores)
    hv = hypervolume(front, ref) if len(front) else 0.0
    f = front_mod.predicted_front(models, obj, candidates)
    print(f"  after batch {batch_no}: {spent} evaluated here, {len(X)} measured; {obj.describe()}; "
          f"measured hypervolume {hv:.1f}; predicted front {len(f.omega)} point(s)", file=out)
    names = list(obj.axes) if obj.weights is None else ["objective"]
    for i in range(min(len(f.omega), 5)):
        band = ", ".join(f"{n} {f.mean[i, j]:.1f} [{f.lo[i, j]:.1f}, {f.hi[i, j]:.1f}]"
                         for j, n in enumerate(names))
        print(f"    predicted {sp.label(f.omega[i])}: {band}", file=out)
    return models
