"""`python -m ptm_core bench workers`: sweep throughput with 1 and with N warm workers (Ray
actors, `python -m ptm_core workers`) draining the same queue, SQLite and PostgreSQL side by side.

    python -m ptm_core bench workers [--workers 1,2] [--jobs 24] [--source auto|lab|fake]

The queue: task-arithmetic points of one lab skill at distinct ω, one suite each, on the lab's
own engine and suites (`--source lab`, the default when data/lab is built), or fake-engine jobs
that each cost `--job-s` seconds (`--source fake`). Each run starts from a fresh store holding
only that queue; the actors are started before the clock starts, their engines warm up inside
it, so `steady_jobs_per_s` counts only the jobs finished after every worker finished its first.
PostgreSQL runs on a throwaway local server (ptm_core/testing/pgserver.py), skipped without one.

Then the store alone: zero-cost fake jobs drained by the largest worker count, at least 10x the
job rate one engine gave (`store_ceiling_jobs_per_s`), and the model of what N engines give:
N x (one engine's measured rate), until that ceiling. `uptime` is printed before and after (the
load of anything else on the machine is in every figure). The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ptm_core.errors import PTMError

REPO = Path(__file__).resolve().parents[2]
LAB_EXPERIMENT = REPO / "data" / "lab" / "lab.yml"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# ---- the queues -------------------------------------------------------------------------------
def lab_available() -> bool:
    if not LAB_EXPERIMENT.exists():
        return False
    from ptm_core.store.experiment import Experiment

    exp = Experiment.load(LAB_EXPERIMENT)
    return all(os.path.isdir(m) for m in (exp.base, exp.general.model,
                                           *(s.model for s in exp.skills.values())))


def lab_queue(n_jobs: int, skill: str | None) -> tuple[Any, list, Any]:
    """(experiment, job specs, wiring): the lab's points at distinct ω on its own engine."""
    from ptm_core.orchestrate.jobs import default_fingerprinter, plan_jobs
    from ptm_core.orchestrate.points import MergeKitBuilder, ptm_point
    from ptm_core.orchestrate.ray_workers import Wiring
    from ptm_core.orchestrate.wiring import default_suite_resolver
    from ptm_core.store.experiment import Experiment

    exp = Experiment.load(LAB_EXPERIMENT)
    skill = skill or next(iter(exp.skills))
    b = MergeKitBuilder()
    points = [ptm_point(exp, b, {skill: round(i / n_jobs, 4)}) for i in range(n_jobs)]
    specs = plan_jobs(exp, points, default_suite_resolver, default_fingerprinter(), axes=[skill],
                      builder=b)
    return exp, specs, Wiring()


def fake_queue(n_jobs: int, job_s: float, workdir: Path) -> tuple[Any, list, Any]:
    """(experiment, job specs, wiring): fake-engine jobs of `job_s` seconds each."""
    from ptm_core.orchestrate.ray_workers import Wiring
    from ptm_core.testing.store import (
        FakeBuilder, FakeEngineFactory, fake_fingerprinter, fake_lab, fake_suite_resolver,
        ptm_specs,
    )

    exp, _, resolver = fake_lab(workdir / "fake")
    specs = ptm_specs(exp, [round(i / n_jobs, 6) for i in range(n_jobs)], axes=["science"],
                      resolver=resolver)
    return exp, specs, Wiring(FakeEngineFactory(generate_delay_s=job_s), fake_suite_resolver(),
                              FakeBuilder(), fake_fingerprinter)


# ---- one run ------------------------------------------------------------------------------------
def drain(location: Any, exp: Any, specs: list, wiring: Any, n: int, *,
          cpus_per_worker: float, gpus_per_worker: float, lease_s: float) -> dict:
    """A fresh store holding `specs`, drained by `n` actors. Fails unless every job ran once."""
    from ptm_core.orchestrate.ray_workers import RayWorkers
    from ptm_core.orchestrate.worker import WorkerStats
    from ptm_core.store.db import Store

    store = Store(location)
    store.register_experiment(exp)
    store.enqueue_many(specs)
    pool = RayWorkers(location, n, wiring, cpus_per_worker=cpus_per_worker,
                      gpus_per_worker=gpus_per_worker, max_restarts=0)
    try:
        pool.worker_ids(timeout_s=900)  # actors up (not timed); engines start inside the clock
        t0 = time.time()
        pool.start(once=True, lease_s=lease_s, poll_s=0.05)
        results = pool.wait()
        t1 = time.time()
    finally:
        pool.close()
    dead = [r for r in results if not isinstance(r, WorkerStats)]
    done_ids = [j for r in results if isinstance(r, WorkerStats) for j in r.job_ids]
    failed = sum(r.failed for r in results if isinstance(r, WorkerStats))
    if dead or failed or len(done_ids) != len(set(done_ids)) or len(done_ids) != len(specs):
        raise PTMError(f"bench workers: {n} workers did {len(done_ids)} of {len(specs)} jobs "
                       f"({failed} failed, {len(dead)} died: {dead[:1]})")
    rows = [r for r in store.jobs(experiment=exp.name, limit=len(specs) + 10) if r.status == "done"]
    by_worker: dict[str, list[float]] = {}
    for r in rows:
        by_worker.setdefault(r.worker, []).append(r.finished_at)
    warm = max(min(ts) for ts in by_worker.values())  # every worker has finished one job
    after = sorted(t for t in (r.finished_at for r in rows) if t > warm)
    steady = len(after) / (after[-1] - warm) if len(after) >= 2 and after[-1] > warm else None
    wall = t1 - t0
    return {"workers": n, "jobs": len(specs), "drain_s": round(wall, 3),
            "jobs_per_s": round(len(specs) / wall, 3),
            "steady_jobs_per_s": round(steady, 3) if steady else None,
            "jobs_per_worker": sorted(len(ts) for ts in by_worker.values())}


def backends(workdir: Path, want: list[str]) -> tuple[dict[str, Callable[[str], Any]], dict, Any]:
    """name -> make(name) giving a fresh store location; skipped backends with the reason; the
    PostgreSQL server to stop (or None)."""
    makers: dict[str, Callable[[str], Any]] = {}
    skipped: dict[str, str] = {}
    server = None
    if "sqlite" in want:
        makers["sqlite"] = lambda name: str(workdir / f"{name}.sqlite")
    if "postgres" in want:
        from ptm_core.testing.pgserver import PGServer, find_bindir

        bindir = find_bindir()
        try:
            import psycopg  # noqa: F401
        except ImportError:
            bindir, skipped["postgres"] = None, "psycopg is not installed"
        if bindir is None:
            skipped.setdefault("postgres", "PostgreSQL is not installed (make postgres)")
        else:
            server = PGServer(bindir).start()
            makers["postgres"] = lambda name: server.create_database()
    return makers, skipped, server


# ---- the command --------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptm_core bench workers",
                                description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--jobs", type=int, default=24, help="jobs in the queue (default 24)")
    p.add_argument("--source", choices=["auto", "lab", "fake"], default="auto",
                   help="lab points on the lab's engine, or fake-engine jobs (auto: lab when built)")
    p.add_argument("--skill", default=None, help="the lab skill whose ω varies (default: the first)")
    p.add_argument("--job-s", type=float, default=0.25, help="seconds per fake job (default 0.25)")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--ceiling-jobs", type=int, default=None,
                   help="zero-cost jobs for the store's ceiling (default: enough for 10x one "
                        "engine's rate over ~2 s, at least 50); 0 skips it")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--lease", type=float, default=120.0)
    p.add_argument("--address", default=None, help="a Ray cluster to use (default: a local Ray)")
    p.add_argument("--workdir", type=Path, default=None)
    a = p.parse_args(argv)
    counts = sorted({int(x) for x in a.workers.split(",") if x.strip()})
    if not counts or counts[0] < 1:
        raise PTMError(f"bench workers: --workers needs counts >= 1 (got {a.workers!r})")
    source = a.source if a.source != "auto" else ("lab" if lab_available() else "fake")

    from ptm_core.orchestrate.ray_workers import connect

    load_before = uptime()
    print(f"uptime before: {load_before}", flush=True)
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="ptm-bench-workers-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    ray, started = connect(a.address, num_cpus=None if a.address else
                           max(cpus, int(counts[-1] * a.cpus_per_worker + 0.999)))
    makers, skipped, server = backends(workdir, [b.strip() for b in a.backends.split(",")])
    try:
        exp, specs, wiring = (lab_queue(a.jobs, a.skill) if source == "lab"
                              else fake_queue(a.jobs, a.job_s, workdir))
        what = ("lab points, one suite each" if source == "lab" else f"fake jobs of {a.job_s:g} s")
        print(f"{len(specs)} {what}; Ray {'at ' + a.address if a.address else 'local'}; "
              f"{cpus} CPUs on this machine", flush=True)
        if counts[-1] * a.cpus_per_worker > cpus and not a.address:
            print(f"note: {counts[-1]} workers x {a.cpus_per_worker:g} CPU > {cpus} CPUs: they "
                  "share cores", flush=True)
        runs = []
        print(f"{'backend':<9} {'workers':>7} {'drain s':>8} {'jobs/s':>8} {'steady/s':>9} "
              f"{'speedup':>8}  jobs per worker", flush=True)
        for backend, make in makers.items():
            base = None
            for n in counts:
                r = {"backend": backend, **drain(make(f"{backend}-{n}"), exp, specs, wiring, n,
                                                 cpus_per_worker=a.cpus_per_worker,
                                                 gpus_per_worker=a.gpus_per_worker,
                                                 lease_s=a.lease)}
                base = base or r["jobs_per_s"]
                r["speedup"] = round(r["jobs_per_s"] / base, 2)
                runs.append(r)
                steady = f"{r['steady_jobs_per_s']:.2f}" if r["steady_jobs_per_s"] else "-"
                print(f"{backend:<9} {n:>7} {r['drain_s']:>8.2f} {r['jobs_per_s']:>8.2f} "
                      f"{steady:>9} {r['speedup']:>7.2f}x  {r['jobs_per_worker']}", flush=True)
        for backend, why in skipped.items():
            print(f"{backend:<9} skipped: {why}", flush=True)
        one = {r["backend"]: r["steady_jobs_per_s"] or r["jobs_per_s"] for r in runs
               if r["workers"] == counts[0]}  # one engine's rate (the first count's, per engine)
        one = {b: v / counts[0] for b, v in one.items()}
        ceiling = store_ceiling(a, one, makers, counts[-1], workdir)
        model = {}
        for backend, c in ceiling.items():
            if one.get(backend):
                model[backend] = {"one_engine_jobs_per_s": one[backend],
                                  "engines_before_the_store_limits": int(c / one[backend])}
                print(f"model ({backend}): N engines give N x {one[backend]:.2f} jobs/s until "
                      f"the store's {c:.1f} jobs/s, i.e. up to ~{int(c / one[backend])} engines",
                      flush=True)
    finally:
        if server is not None:
            server.stop()
        if started:
            ray.shutdown()
        if a.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = uptime()
    print(f"uptime after: {load_after}", flush=True)
    print(json.dumps({"source": source, "jobs": len(specs), "workers": counts,
                      "job_s": a.job_s if source == "fake" else None, "runs": runs,
                      "skipped": skipped, "store_ceiling_jobs_per_s": ceiling, "model": model,
                      "uptime_before": load_before, "uptime_after": load_after}))
    return 0


def store_ceiling(a: Any, one: dict[str, float], makers: dict, n: int, workdir: Path) -> dict:
    """Zero-cost fake jobs drained by `n` workers on each backend: what the store (and the
    loop around it) sustains, against `one` engine's job rate per backend (>= 10x is the aim)."""
    if a.ceiling_jobs == 0 or not one:
        return {}
    jobs = a.ceiling_jobs or max(50, int(10 * max(one.values()) * 2))
    exp, specs, wiring = fake_queue(jobs, 0.0, workdir / "ceiling")
    out = {}
    for backend, make in makers.items():
        r = drain(make(f"ceiling-{backend}"), exp, specs, wiring, n,
                  cpus_per_worker=a.cpus_per_worker, gpus_per_worker=0.0, lease_s=a.lease)
        rate = r["steady_jobs_per_s"] or r["jobs_per_s"]
        out[backend] = rate
        print(f"store ceiling ({backend}): {rate:.1f} jobs/s with {n} workers on {jobs} zero-cost "
              f"jobs = {rate / one[backend]:.1f}x one engine's {one[backend]:.2f} jobs/s", flush=True)
    return out
