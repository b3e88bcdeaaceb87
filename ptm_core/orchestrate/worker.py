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
from dataclasses import dataclass, field
from typing import Sequence

from ptm_core.orchestrate.evaluate import EngineFactory, Evaluator, ProgressFn, describe_error
from ptm_core.orchestrate.jobs import worker_id_default
from ptm_core.orchestrate.points import RecipeBuilder
from ptm_core.orchestrate.wiring import default_engine_factory, default_suite_resolver
from ptm_core.store.db import Store, StoreError, default_cached_dir, default_store_path
from ptm_core.store.jobs import Fingerprinter, SuiteResolver
from ptm_core.store.records import Job, RecordError

log = logging.getLogger("ptm_core.orchestrate.worker")


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


def add_loop_arguments(ap: argparse.ArgumentParser) -> None:
    """The worker loop's options, shared with `python -m ptm_core workers` (ray_workers.py)."""
    ap.add_argument("--store", default=None, help=f"SQLite file or postgresql:// URL "
                                                  f"(default: $PTM_STORE or {default_store_path()})")
    ap.add_argument("--once", action="store_true", help="exit when the queue is empty")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between polls when idle")
    ap.add_argument("--lease", type=float, default=60.0,
                    help="seconds without a heartbeat before a job returns to the queue")
    ap.add_argument("--max-jobs", type=int, default=None)
    ap.add_argument("--no-cached", action="store_true", help="do not import cached_runs/")


def main(argv: Sequence[str] | None = None, *, engine_factory: EngineFactory | None = None,
         suite_resolver: SuiteResolver | None = None, builder: RecipeBuilder | None = None,
         fingerprinter: Fingerprinter | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptm_core worker",
                                 description="Claim evaluation jobs from the store and run them "
                                             "on a warm engine.")
    add_loop_arguments(ap)
    ap.add_argument("--id", default=None, help="worker id (default host:pid)")
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
