"""Sweeps: a grid of recipes over one experiment, evaluated through one warm engine.

    python -m ptm_core sweep EXPERIMENT.yml [--omegas 0:1:0.1] [--methods task_arithmetic,linear]
        [--skills science,coding] [--pairs] [--product] [--heuristic] [--suites general,science]
        [--inline | --enqueue] [--subsample K] [--dry-run] [--export [DIR]]

The grid: every method at every ω for each skill (plus the heuristic ω |D|/|G| with
--heuristic), each pair of skills at their heuristic ω (--pairs), every combination of the ω values over the skills (--product: the full
grid, 11^k points at step 0.1), all skills together at the heuristic ω (--heuristic), and always the baselines (θ_pre, θ_G, each θ_D alone) and the
experiment's CFT/RT reference checkpoints. Points already in the store are skipped.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ptm_core import catalogue
from ptm_core.errors import PTMError
from ptm_core.store.db import Store, default_cached_dir, default_store_path
from ptm_core.store.experiment import Experiment
from ptm_core.orchestrate.evaluate import EngineFactory, EngineStartError, Evaluator, describe_error
from ptm_core.orchestrate.jobs import default_fingerprinter, enqueue_specs, plan_jobs
from ptm_core.orchestrate.points import Grid, MergeKitBuilder, RecipeBuilder, grid_points
from ptm_core.orchestrate.wiring import default_engine_factory, default_suite_resolver
from ptm_core.store.jobs import Fingerprinter, SuiteResolver
from ptm_core.store.point import round_omega

DEFAULT_OMEGAS = "0:1:0.1"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ptm_core sweep",
                                 description="Evaluate a grid of merges of one experiment.")
    ap.add_argument("experiment", help="experiment YAML file")
    ap.add_argument("--omegas", default=DEFAULT_OMEGAS,
                    help="ω per skill: START:STOP:STEP (stop included), a comma list, or "
                         f"'none' (only --heuristic/--pairs points; default {DEFAULT_OMEGAS})")
    ap.add_argument("--methods", default="task_arithmetic",
                    help=f"comma list of {', '.join(catalogue.methods())} (default task_arithmetic)")
    ap.add_argument("--skills", default=None,
                    help="comma list of skills (default: all); CFT/RT references trained on "
                         "other skills are skipped")
    ap.add_argument("--pairs", action="store_true", help="every pair of skills at the heuristic ω")
    ap.add_argument("--product", action="store_true",
                    help="every combination of --omegas over the skills (the full k-skill grid)")
    ap.add_argument("--heuristic", action="store_true",
                    help="each skill and all skills together at the heuristic ω = |D|/|G|")
    ap.add_argument("--suites", default=None,
                    help="comma list of axes to measure (default: every axis of the experiment)")
    ap.add_argument("--density", type=float, default=0.5, help="density for ties / dare_*")
    ap.add_argument("--no-baselines", action="store_true", help="skip θ_pre, θ_G and each θ_D alone")
    ap.add_argument("--no-references", action="store_true", help="skip CFT/RT checkpoints")
    ap.add_argument("--together", action="store_true",
                    help="only points over all the chosen skills at once: the all-skills merge "
                         "(--heuristic), the --product grid, CFT/RT trained on exactly those skills")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--inline", dest="mode", action="store_const", const="inline",
                      help="evaluate here, through one warm engine (default)")
    mode.add_argument("--enqueue", dest="mode", action="store_const", const="enqueue",
                      help="put the points on the job queue for `python -m ptm_core worker`")
    ap.set_defaults(mode="inline")
    ap.add_argument("--priority", type=int, default=0, help="job priority with --enqueue")
    ap.add_argument("--subsample", type=int, default=None, metavar="K",
                    help="measure every point on K items of each suite first (kept beside the "
                         "full result; default: full suites only)")
    ap.add_argument("--dry-run", action="store_true", help="list the points and what is cached")
    ap.add_argument("--export", nargs="?", const=str(default_cached_dir()), default=None,
                    metavar="DIR", help="afterwards write the experiment's results to "
                                        "DIR/<experiment>.jsonl, the experiment's engine only "
                                        "(default DIR: cached_runs/)")
    ap.add_argument("--store", default=None,
                    help=f"SQLite file or postgresql:// URL (default: $PTM_STORE or "
                         f"{default_store_path()})")
    return ap


def parse_omegas(spec: str) -> list[float]:
    """'0:1:0.1' (start:stop:step, stop included) or '0,0.25,0.5' -> sorted unique ω values;
    'none' -> no grid (only the heuristic / pair points a sweep asks for)."""
    spec = spec.strip()
    if spec.lower() == "none":
        return []
    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise PTMError(f"--omegas {spec!r}: need start <= stop and a positive step")
            n = int(math.floor((stop - start) / step + 1e-9))
            if n > 10_000:
                raise PTMError(f"--omegas {spec!r}: {n + 1} points is too many")
            vals = [start + i * step for i in range(n + 1)]
        else:
            vals = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise PTMError(f"--omegas {spec!r}: expected START:STOP:STEP (e.g. 0:1:0.1) or a comma "
                       f"list (e.g. 0,0.5,1)") from None
    if not vals:
        raise PTMError(f"--omegas {spec!r}: no values")
    return sorted({round_omega(v) for v in vals})


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def main(argv: Sequence[str] | None = None, *, engine_factory: EngineFactory | None = None,
         suite_resolver: SuiteResolver | None = None, builder: RecipeBuilder | None = None,
         fingerprinter: Fingerprinter | None = None, store: Store | None = None,
         out=None) -> int:
    """Returns 0 when every evaluation succeeded (or was cached), 1 when some failed."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    exp = Experiment.load(args.experiment)
    builder = builder or MergeKitBuilder()
    suite_resolver = suite_resolver or default_suite_resolver
    injected_fingerprinter = fingerprinter
    fingerprinter = fingerprinter or default_fingerprinter()
    grid = Grid(omegas=parse_omegas(args.omegas), methods=_csv(args.methods) or ["task_arithmetic"],
                skills=_csv(args.skills), pairs=args.pairs, product=args.product, heuristic=args.heuristic,
                density=args.density, baselines=not args.no_baselines,
                references=not args.no_references, together=args.together)
    points, notes = grid_points(exp, builder, grid)
    for n in notes:
        print(f"note: {n}", file=out)
    store = store or Store(args.store or default_store_path(), cached_dir=default_cached_dir())
    if args.subsample is not None and args.subsample < 1:
        print("--subsample needs K >= 1", file=sys.stderr)
        return 2
    specs = plan_jobs(exp, points, suite_resolver, fingerprinter, axes=_csv(args.suites),
                      builder=builder, subsample=args.subsample)
    store.register_experiment(exp)
    n_suites = len({s.suite_ref for s in specs})
    print(f"{exp.name}: {len(points)} points x {n_suites} suite(s) = {len(specs)} evaluations",
          file=out)

    if args.dry_run:
        have = store.existing_keys([s.key for s in specs])
        for s in specs:
            print(f"  {'cached' if s.key in have else 'todo  '}  {s.point.kind:<9} "
                  f"{s.point.label:<40} {s.suite_ref}", file=out)
        return 0

    if args.mode == "enqueue":
        outcomes = enqueue_specs(store, specs, priority=args.priority)
        counts = {k: sum(o.status == k for o in outcomes) for k in ("queued", "existing", "cached")}
        print(f"queued {counts['queued']} job(s); {counts['existing']} already queued or running; "
              f"{counts['cached']} already measured. Run `python -m ptm_core worker` to process "
              f"them.", file=out)
        rc = 0
    else:
        rc = run_inline(store, exp, specs, engine_factory or default_engine_factory,
                        suite_resolver, builder=builder, fingerprinter=fingerprinter, out=out)
    if args.export:
        from ptm_core.merge.fingerprint import current_fingerprints
        from ptm_core.store.cached import export_experiment
        from ptm_core.store.keys import engine_key
        # Every model of the experiment as it is now, not only this sweep's: results of a model
        # rebuilt since are dropped even when this sweep did not touch it (store/current.py).
        current = current_fingerprints(exp, injected_fingerprinter)
        for spec in specs:  # what this sweep's jobs were keyed with
            for ref, fp in spec.fingerprints.items():
                current[ref] = (fp, *(f for f in current.get(ref, ()) if f != fp))
        path = export_experiment(store, exp.name, Path(args.export),
                                 engine=engine_key(exp.engine, exp.engine_options),
                                 fingerprints=current)
        print(f"exported {exp.name} to {path}", file=out)
    return rc


def run_inline(store: Store, exp: Experiment, specs: Sequence[Any], engine_factory: EngineFactory,
               suite_resolver: SuiteResolver, *, builder: RecipeBuilder | None = None,
               fingerprinter: Fingerprinter | None = None, out=None) -> int:
    """Evaluate the specs not yet stored, in order, through one warm engine."""
    from tqdm import tqdm

    out = out or sys.stdout
    cached = store.adopt(specs)
    todo = [s for s in specs if s.key not in cached]
    ev = Evaluator(engine_factory, suite_resolver, builder=builder, fingerprinter=fingerprinter)
    failures: list[str] = []
    start = time.perf_counter()
    ran = 0
    bar = tqdm(total=len(todo), desc=exp.name, unit="eval", file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5)
    try:
        for spec in todo:
            bar.set_postfix_str(f"{spec.point.label} / {spec.suite_ref}"[:60])
            try:
                record, details = ev.evaluate(exp, spec)
                store.put_result(record, details)
                ran += 1
            except EngineStartError as e:
                failures.append(f"{e}; {len(todo) - ran - len(failures)} evaluation(s) not run")
                break
            except PTMError as e:
                failures.append(f"{spec.point.label} / {spec.suite_ref}: {e}")
            except Exception as e:  # one bad point must not end the sweep
                failures.append(f"{spec.point.label} / {spec.suite_ref}: {describe_error(e)}")
            bar.update(1)
    except KeyboardInterrupt:
        failures.append("interrupted")
    finally:
        bar.close()
        ev.close()
    print(f"{len(cached)} cached, {ran} evaluated, {len(failures)} failed "
          f"in {time.perf_counter() - start:.1f}s", file=out)
    for f in failures:
        print(f"FAILED {f}", file=out)
    return 1 if failures else 0
