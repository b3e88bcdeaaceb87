"""`python -m ptm_core bench search`: the search replayed against a measured full grid.

    python -m ptm_core bench search [--grid data/lab/search-grid.jsonl] [--experiment data/lab/lab.yml]
        [--skills science,safety] [--budget 40] [--seeds 10] [--surrogate gp]
    python -m ptm_core bench search --write-grid OUT [--store ...]   # export the measured grid

The grid: task arithmetic over two skills, ω 0..1 step 0.1 (121 points), measured once with
`python -m ptm_core sweep EXPERIMENT.yml --skills a,b --product --suites general,a,b`. The
search's candidates are the grid's own lattice, so every suggestion has a measured answer
(suggestions are grid points: nothing is snapped and nothing measured live). Hypervolume:
maximise both skills subject to general ≥ general(ω = 0) − Δ, above the ω = 0 point's scores.
Prints the hypervolume after each evaluation for the search, random search and the grid in
natural order (first seed), then a JSON line: `evals_to_95pct` for each (first seed), their
medians over the seeds, and `grid_evals`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ptm_core.atomic import write_text
from ptm_core.errors import PTMError
from ptm_core.search import replay
from ptm_core.search.objective import Objective
from ptm_core.store.cached import dumps_records, loads_records
from ptm_core.store.experiment import Experiment

REPO = Path(__file__).resolve().parents[2]
DEFAULT_GRID = REPO / "data" / "lab" / "search-grid.jsonl"
DEFAULT_EXPERIMENT = REPO / "data" / "lab" / "lab.yml"


def grid_rows(records, exp: Experiment, skills: Sequence[str], axes: Sequence[str]) -> list[dict]:
    """{"omega": ..., axis: score} per grid point, from result records (one per suite)."""
    want = "+".join(skills)
    by_omega: dict[tuple, dict] = {}
    for r in records:
        if r.kind != "ptm" or r.skills != want or not r.omega:
            continue
        om = json.loads(r.omega)
        row = by_omega.setdefault(tuple(om[s] for s in skills), {"omega": om})
        for a in axes:
            spec = exp.axes[a]
            if r.suite == spec.suite and spec.metric in r.metrics:
                row[a] = float(r.metrics[spec.metric])
    rows = [r for r in by_omega.values() if all(a in r for a in axes)]
    if not rows:
        raise PTMError(f"no complete grid points for {want} in the grid file")
    return rows


def run_bench(table: replay.Table, objective: Objective, ref: Sequence[float], *, budget: int,
              seeds: Sequence[int], kind: str = "gp", batch: int = 4, n_init: int = 5) -> dict:
    """Traces (first seed) and evals to 95 % of the full grid's hypervolume. Deterministic."""
    full = replay.hv_trace(table, replay.grid_order(table), objective, ref)
    target = 0.95 * full[-1]
    res: dict = {"grid_hv": full[-1], "traces": {"grid": full}, "per_seed": {"search": [], "random": []}}
    for j, seed in enumerate(seeds):
        s = replay.hv_trace(table, replay.search_order(table, objective, ref, budget=budget,
                                                       seed=seed, kind=kind, batch=batch,
                                                       n_init=n_init), objective, ref)
        r = replay.hv_trace(table, replay.random_order(table, len(table.X), seed), objective, ref)
        if j == 0:
            res["traces"]["search"], res["traces"]["random"] = s, r
        res["per_seed"]["search"].append(replay.evals_to(s, target))
        res["per_seed"]["random"].append(replay.evals_to(r, target))
    res["evals_to_95pct"] = {k: replay.evals_to(res["traces"][k], target) for k in ("search", "random", "grid")}
    res["grid_evals"] = len(table.X)
    return res


def _median(xs, never: int) -> float:
    return float(statistics.median(never + 1 if x is None else x for x in xs))  # None: worse than all


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ptm_core bench search", description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default=str(DEFAULT_GRID), help="measured grid (ptm-result/1 JSON Lines)")
    ap.add_argument("--experiment", default=str(DEFAULT_EXPERIMENT))
    ap.add_argument("--skills", default="science,safety")
    ap.add_argument("--constraint", default="general")
    ap.add_argument("--delta", type=float, default=5.0)
    ap.add_argument("--budget", type=int, default=40, help="search evaluations (default 40, 1/3 of 121)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--surrogate", default="gp")
    ap.add_argument("--write-grid", default=None, metavar="OUT",
                    help="export the grid's records from the store to OUT and stop")
    ap.add_argument("--store", default=None)
    return ap


def main(argv: Sequence[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    exp = Experiment.load(args.experiment)
    skills = [s.strip() for s in args.skills.split(",") if s.strip()]
    axes = [args.constraint, *skills]
    if args.write_grid:
        from ptm_core.store.db import Store, default_cached_dir, default_store_path
        store = Store(args.store or default_store_path(), cached_dir=default_cached_dir())
        want = "+".join(s for s in exp.skills if s in skills)
        suites = {exp.axes[a].suite for a in axes}
        from ptm_core.merge.fingerprint import current_fingerprints
        from ptm_core.store.current import current_records
        recs = [r for r in current_records(store.results(exp.name), current_fingerprints(exp)).current
                if r.kind == "ptm" and r.skills == want and r.suite in suites]
        write_text(args.write_grid, dumps_records(recs))
        print(f"wrote {len(recs)} records to {args.write_grid}", file=out)
        return 0
    path = Path(args.grid)
    if not path.is_file():
        raise PTMError(f"no measured grid at {path}: measure it with `python -m ptm_core sweep "
                       f"{args.experiment} --skills {args.skills} --product --suites "
                       f"{','.join(axes)} --no-references`, then `bench search --write-grid {path}`")
    rows = grid_rows(loads_records(path.read_text(), str(path)), exp, skills, axes)
    table = replay.table_from_rows(rows, skills, axes)
    origin = int(np.flatnonzero(np.all(table.X == 0, axis=1))[0])
    o = table.row(origin)
    objective = Objective(tuple(skills), None, args.constraint, o[args.constraint] - args.delta)
    ref = [o[s] for s in skills]
    print(f"grid: {len(table.X)} points ({path}); {objective.describe()}; hypervolume above the "
          f"ω = 0 point {ref}", file=out)
    res = run_bench(table, objective, ref, budget=args.budget, seeds=range(args.seeds),
                    kind=args.surrogate, batch=args.batch)
    for name in ("search", "random", "grid"):
        tr = res["traces"][name]
        print(f"{name:>6}: " + " ".join(f"{v:.0f}" for v in tr), file=out)
    n = res["grid_evals"]
    summary = {"evals_to_95pct": res["evals_to_95pct"], "grid_evals": n,
               "median_evals_to_95pct": {k: _median(v, n) for k, v in res["per_seed"].items()},
               "seeds": args.seeds, "budget": args.budget, "surrogate": args.surrogate,
               "grid_hv": round(res["grid_hv"], 3)}
    s = summary["median_evals_to_95pct"]["search"]
    if res["grid_hv"] <= 0:  # every strategy "reaches 95 %" of nothing at once: no ranking
        summary["degenerate"] = True
        print("goal: not measurable on this grid: no measured point beats the ω = 0 point on "
              "the skills within the general floor (hypervolume 0)", file=out)
        print(json.dumps(summary, sort_keys=True), file=out)
        return 0
    print(f"goal (search ≤ {n / 3:.0f} evaluations to 95 %, beats random): "
          f"{'met' if s <= n / 3 and s < summary['median_evals_to_95pct']['random'] else 'NOT met'} "
          f"(medians over {args.seeds} seeds)", file=out)
    print(json.dumps(summary, sort_keys=True), file=out)
    return 0
