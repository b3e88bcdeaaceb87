"""`python -m ptm_core bench live`: an uncached point as the app sees it.

The app queues an uncached point (`enqueue_points`, a subsample of every suite first); a warm
worker (here a thread running the real `run_worker` loop on the experiment's own engine and
suites) measures it; the app's frame shows it. Measured from the enqueue until the point's row
has every axis, first on the subsample (`first_s`, marked preliminary) and then in full
(`full_s`). The engine and the suites are built before the clock starts: the app's worker keeps
them warm after its first job (their start is printed beside, `engine_start_s`). Beside it, in
the same run, the same path without the subsample pass on another uncached point (`--no-baseline`
skips it). The store is a fresh temporary one (nothing cached); the worker polls every
`--poll` seconds as the launcher's does. Not counted: the browser's own refresh (the Merge page
polls every second). The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "data" / "lab" / "lab.yml"
# off the shipped grid (cached_runs/lab.jsonl), so a point is new whatever the store holds
OMEGAS = (0.4375, 0.5625)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _row(frame: Any, point_id: str):
    rows = frame[frame["point_id"] == point_id]
    return None if rows.empty else rows.iloc[0]


def measure_point(store: Any, exp: Any, point: Any, resolver: Callable, *, subsample: int | None,
                  poll_s: float, timeout_s: float, builder: Any,
                  fingerprinter: Callable | None = None) -> dict[str, Any]:
    """Enqueue one point as the app does and watch the results frame until it is complete."""
    from ptm_core.orchestrate.jobs import enqueue_points
    from ptm_core.store.frame import results_frame, score_columns

    t0 = time.perf_counter()
    outs = enqueue_points(store, exp, [point], resolver, fingerprinter, builder=builder,
                          subsample=subsample)
    enqueue_s = time.perf_counter() - t0
    first = full = first_axis = None
    version = None
    while time.perf_counter() - t0 < timeout_s:
        v = store.results_version(exp.name)
        if v != version:
            version = v
            frame = results_frame(store, exp)
            row = _row(frame, point.point_id)
            if row is not None and first_axis is None:
                first_axis = time.perf_counter() - t0
            if row is not None and all(not math.isnan(row[a]) for a in score_columns(frame)):
                now = time.perf_counter() - t0
                first = now if first is None else first
                if not bool(row["preliminary"]):
                    full = now
                    break
        time.sleep(poll_s / 4)
    failed = [j for j in store.jobs(experiment=exp.name, statuses=["failed"])]
    if failed:
        raise RuntimeError("; ".join(f"{j.suite_ref}: {j.error}" for j in failed[:3]))
    jobs = []
    by_key = {r.key: r for r in store.results(exp.name)}
    for o in outs:
        r = by_key.get(o.key)
        if r is not None:
            jobs.append({"suite": r.suite, "subsample": r.suite_options.get("subsample"),
                         "items": max(r.counts.values()) if r.counts else None,
                         "wall_s": round(r.wall_s or 0.0, 3), "swap_s": round(r.swap_s or 0.0, 3)})
    return {"label": point.label, "enqueue_s": round(enqueue_s, 3),
            "first_axis_s": None if first_axis is None else round(first_axis, 2),
            "first_s": None if first is None else round(first, 2),
            "full_s": None if full is None else round(full, 2), "jobs": jobs}


def run(experiment: Path, subsample: int, *, baseline: bool = True, poll_s: float = 0.2,
        timeout_s: float = 600.0, engine_factory: Callable | None = None,
        suite_resolver: Callable | None = None, builder: Any = None,
        fingerprinter: Callable | None = None) -> dict[str, Any]:
    """Both cases on one warm engine; the wiring is the worker's default unless given (tests)."""
    from ptm_core.orchestrate.points import MergeKitBuilder, method_point
    from ptm_core.orchestrate.wiring import default_engine_factory, default_suite_resolver
    from ptm_core.orchestrate.worker import run_worker
    from ptm_core.store.db import Store
    from ptm_core.store.experiment import Experiment

    exp = Experiment.load(experiment)
    skill = next(iter(exp.skills))
    builder = builder or MergeKitBuilder()
    load_before = uptime()
    t = time.perf_counter()
    engine = (engine_factory or default_engine_factory)(exp)
    engine_start_s = time.perf_counter() - t
    t = time.perf_counter()
    resolve = suite_resolver or default_suite_resolver
    suites = {ref: resolve(exp, ref) for ref in exp.suite_groups()}
    suites_s = time.perf_counter() - t
    out: dict[str, Any] = {"experiment": exp.name, "subsample": subsample, "warm_worker": True,
                           "engine_start_s": round(engine_start_s, 2),
                           "suites_build_s": round(suites_s, 2), "poll_s": poll_s}
    with tempfile.TemporaryDirectory(prefix="ptm-bench-live-") as tmp:
        store = Store(Path(tmp) / "store.sqlite", cached_dir=None)
        stop = threading.Event()
        worker = threading.Thread(target=run_worker, daemon=True, name="bench-worker", kwargs=dict(
            store=store, engine_factory=lambda e: engine, suite_resolver=lambda e, ref: suites[ref],
            poll_s=poll_s, lease_s=120.0, builder=builder, fingerprinter=fingerprinter, stop=stop))
        worker.start()
        try:
            cases = [("live", OMEGAS[0], subsample)] + ([("full_only", OMEGAS[1], None)] if baseline else [])
            for name, omega, k in cases:
                point = method_point(exp, builder, "task_arithmetic", {skill: omega})
                out[name] = measure_point(store, exp, point, lambda e, ref: suites[ref],
                                          subsample=k, poll_s=poll_s, timeout_s=timeout_s,
                                          builder=builder, fingerprinter=fingerprinter)
                out[name]["load_after"] = uptime()
        finally:
            stop.set()
            worker.join(timeout=60)
            close = getattr(engine, "close", None)
            if callable(close):
                close()
    out["load_before"] = load_before
    out["first_s"] = out["live"]["first_s"]
    out["full_s"] = out["live"]["full_s"]
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out


def report(r: dict[str, Any]) -> str:
    lines = [f"bench live on {r['experiment']}: warm worker (engine start {r['engine_start_s']} s "
             f"and suites {r['suites_build_s']} s not counted), worker poll {r['poll_s']} s",
             f"load before: {r['load_before']}"]
    cases = [c for c in ("live", "full_only") if c in r]
    lines.append(f"{'':<28}" + "".join(f"{c:>24}" for c in cases))
    for name, key in (("first axis s", "first_axis_s"),
                      ("first answer (all axes) s", "first_s"), ("full suites s", "full_s"),
                      ("enqueue s", "enqueue_s")):
        lines.append(f"{name:<28}" + "".join(f"{str(r[c][key]):>24}" for c in cases))
    for c in cases:
        lines.append(f"{c} ({r[c]['label']}), load after: {r[c]['load_after']}")
        for j in r[c]["jobs"]:
            k = f"n={j['items']}" + (" (subsample)" if j["subsample"] else "")
            lines.append(f"    {j['suite']:<18} {k:<18} wall {j['wall_s']:>7.2f} s   swap {j['swap_s']:.2f} s")
    goal = (r["first_s"] is not None and r["first_s"] <= 3.0, r["full_s"] is not None and r["full_s"] <= 15.0)
    lines.append(f"goals: first <= 3 s {'met' if goal[0] else 'NOT met'}; full <= 15 s "
                 f"{'met' if goal[1] else 'NOT met'} (at the load shown)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptm_core bench live", description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=str(LAB), help="experiment file (default: the lab)")
    ap.add_argument("--subsample", type=int, default=None,
                    help="items per suite in the first pass (default: the app's, PTM_APP_SUBSAMPLE or 10)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the full-only comparison")
    ap.add_argument("--poll", type=float, default=0.2, help="worker poll interval (s)")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    from ptm_core.orchestrate.jobs import LIVE_SUBSAMPLE
    k = args.subsample if args.subsample is not None else int(os.environ.get("PTM_APP_SUBSAMPLE",
                                                                             LIVE_SUBSAMPLE))
    r = run(Path(args.experiment), k, baseline=not args.no_baseline, poll_s=args.poll,
            timeout_s=args.timeout)
    print(report(r))
    print(json.dumps(r))
    return 0
