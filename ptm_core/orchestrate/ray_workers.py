"""Many warm engines: N Ray actors, each one worker loop (`worker.run_worker`) with its own warm
engine, all claiming from one store.

    python -m ptm_core workers [N] [--address HOST:6379] [--store postgresql://...] [--once]

Without `--address` a private Ray instance is started on this machine, bound to 127.0.0.1, with
no dashboard; with it the actors join an existing cluster (`ray start --head` on one machine,
`ray start --address=HEAD:6379` on the others; docs/distributed.md). Every actor opens the store
itself, so the store must be one every node reaches: a PostgreSQL URL across machines (a SQLite
file is refused on a cluster of several nodes), a SQLite file on one machine.

What each guarantee rests on:
- each job runs once: the store's claim (one transaction) and leases, as for hand-started workers;
- a crashed actor: Ray restarts it (`--max-restarts`) and re-runs its loop in the new process
  (a new worker id); the job it held comes back through the store's lease, whoever claims it;
- Ctrl-C / SIGTERM: every actor is killed, then the jobs they held go back to the queue at
  once (`release_pool_jobs`), not after their lease.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ptm_core.errors import PTMError
from ptm_core.orchestrate.evaluate import EngineFactory
from ptm_core.orchestrate.jobs import worker_id_default
from ptm_core.orchestrate.points import RecipeBuilder
from ptm_core.orchestrate.wiring import default_engine_factory, default_suite_resolver
from ptm_core.orchestrate.worker import WorkerStats, add_loop_arguments, run_worker
from ptm_core.store.db import Store, StoreError, default_cached_dir, default_store_path
from ptm_core.store.jobs import Fingerprinter, SuiteResolver
from ptm_core.store.location import parse_location, redact
from ptm_core.store.records import Job

# Ray turns 127.0.0.1 into the machine's address unless it believes it runs where multi-node
# clusters are unsupported; this variable, which Ray names to its users and reads once when ray
# is imported, keeps a local instance on loopback. `python -m ptm_core workers` sets it before
# anything imports ray (ptm_core/__main__.py:RAY_LOOPBACK_ENV, the same name).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class Wiring:
    """What each actor builds its worker loop from (pickled to the actors: module-level
    functions or picklable objects)."""

    engine_factory: EngineFactory = default_engine_factory
    suite_resolver: SuiteResolver = default_suite_resolver
    builder: RecipeBuilder | None = None
    fingerprinter: Fingerprinter | None = None
    log_level: int = logging.INFO  # the loop's log lines, forwarded to the driver by Ray


# ---- Ray ------------------------------------------------------------------------------------
def ray_module() -> Any:
    """`ray`, or a PTMError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise PTMError("the workers command needs Ray (`pip install ray==2.60.0`; it is in "
                       f"requirements.txt): {e}") from e
    return ray


def connect(address: str | None = None, *, num_cpus: float | None = None,
            num_gpus: float | None = None, start_attempts: int = 3) -> tuple[Any, bool]:
    """Join the cluster at `address`, or start a private local Ray (loopback only, no
    dashboard; tried again when its start times out, as it can on a loaded machine). Returns
    (`ray`, whether this call connected: then it is this caller's to shut down); an already
    initialised Ray is used as it is."""
    imported_before = "ray" in sys.modules
    if address is None:
        os.environ.setdefault(_LOOPBACK_ENV, "0")  # the command line set it already
    ray = ray_module()
    if ray.is_initialized():
        return ray, False
    if address is None and imported_before and os.environ[_LOOPBACK_ENV] == "0":
        _loopback_fallback()
    if address is None:
        for attempt in range(1, start_attempts + 1):
            try:
                with _local_ray_environment():
                    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                             configure_logging=False)
                break
            except Exception as e:  # Ray waits 30 s (fixed) for its raylet to register
                if attempt == start_attempts or "timed out during startup" not in str(e):
                    raise
                print(f"workers: Ray's local start timed out (a loaded machine?); attempt "
                      f"{attempt + 1} of {start_attempts}", file=sys.stderr, flush=True)
                with contextlib.suppress(Exception):
                    ray.shutdown()
    else:
        ray.init(address=address, configure_logging=False)
    return ray, True


def _loopback_fallback() -> None:
    """Only for a process that imported ray before the variable was set (a library caller, the
    tests, anything that imported vLLM first): Ray has read it already, so its private constant
    is set instead. Ray's own processes, started after, read the variable themselves. A Ray
    without that constant starts as it would (on the machine's address) and says so."""
    try:
        from ray._private import ray_constants
        if ray_constants.ENABLE_RAY_CLUSTER:
            ray_constants.ENABLE_RAY_CLUSTER = False
    except (ImportError, AttributeError) as e:
        print(f"workers: ray was imported before {_LOOPBACK_ENV}=0 was set and this Ray has no "
              f"constant to set instead ({e}); the local Ray may listen on this machine's "
              "address, not 127.0.0.1 only", file=sys.stderr)


@contextlib.contextmanager
def _local_ray_environment() -> Iterator[None]:
    """What the local Ray's processes inherit at `ray.init`: this checkout first on their
    PYTHONPATH, so the actors import the driver's ptm_core and not another install (on a
    cluster every node runs its own install: docs/distributed.md); and 5 minutes, not Ray's
    60 s, for a worker process to register (the actors' processes start slowly on a loaded
    machine; Ray reads RAY_<setting> from the environment)."""
    root = str(Path(__file__).resolve().parents[2])
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_worker_register_timeout_seconds")}
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [saved["PYTHONPATH"]])])
    os.environ.setdefault("RAY_worker_register_timeout_seconds", "300")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cluster_nodes(ray: Any) -> int:
    return sum(1 for n in ray.nodes() if n.get("Alive"))


# ---- one actor --------------------------------------------------------------------------------
class EngineWorker:
    """One Ray actor: its own store connection, one warm engine, the worker loop. Threaded
    (max_concurrency=2), so `stop` reaches it while `run` works."""

    def __init__(self, location: str, name: str, wiring: Wiring):
        # the loop's log lines (job done, failed, lease lost) reach the driver through Ray
        logging.basicConfig(level=wiring.log_level,
                            format="%(asctime)s %(levelname)s %(message)s")
        self.store = Store(parse_location(location))
        self.id = f"{worker_id_default()}/{name}"  # host:pid/ray-TAG-i: the pool's workers
        self.wiring = wiring
        self.stop_event = threading.Event()

    def worker_id(self) -> str:
        return self.id

    def run(self, loop: dict) -> WorkerStats:
        w = self.wiring
        return run_worker(self.store, w.engine_factory, w.suite_resolver, worker_id=self.id,
                          stop=self.stop_event, builder=w.builder, fingerprinter=w.fingerprinter,
                          **loop)

    def stop(self) -> None:
        self.stop_event.set()


# ---- the pool ---------------------------------------------------------------------------------
def pool_marker(tag: str) -> str:
    return f"/ray-{tag}-"


class RayWorkers:
    """N `EngineWorker` actors over the store at `location` (a path every node sees, or a
    postgresql:// URL). `start(**loop)` runs the loop on each; `wait()` returns each actor's
    `WorkerStats` (or the error that ended it); `shutdown(store)` kills them and gives their
    running jobs back."""

    def __init__(self, location: str | os.PathLike, n: int, wiring: Wiring | None = None, *,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                 max_restarts: int = 3):
        if n < 1:
            raise PTMError(f"workers: need at least one worker (got {n})")
        self.ray = ray_module()
        self.location = str(location)
        self.tag = uuid.uuid4().hex[:6]
        actor = self.ray.remote(EngineWorker).options(
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_concurrency=2,
            # a restarted actor re-runs the `run` it was in: its loop goes on in the new process
            max_restarts=max_restarts, max_task_retries=max_restarts)
        self.actors = [actor.remote(self.location, f"ray-{self.tag}-{i}", wiring or Wiring())
                       for i in range(n)]
        self.refs: list[Any] = []

    def worker_ids(self, timeout_s: float | None = None) -> list[str]:
        """Each actor's worker id (waits until every actor has started). An actor that cannot
        start (its store unreachable, ptm_core missing on its node) is a PTMError saying why."""
        try:
            return self.ray.get([a.worker_id.remote() for a in self.actors], timeout=timeout_s)
        except self.ray.exceptions.RayError as e:  # died, or could not be scheduled
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            raise PTMError(f"workers: an actor could not start: {lines[-1] if lines else e}") from e

    def start(self, **loop: Any) -> None:
        """`loop`: run_worker's options (once, poll_s, lease_s, max_jobs, max_attempts, ...)."""
        self.refs = [a.run.remote(loop) for a in self.actors]

    def wait(self, timeout_s: float | None = None, tick_s: float = 0.5) -> list[Any]:
        """Each actor's WorkerStats, or the exception that ended it. Wakes every `tick_s` so
        Ctrl-C is seen at once. Raises TimeoutError after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = list(self.refs)
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(self.refs)} workers still running")
            _, pending = self.ray.wait(pending, num_returns=len(pending), timeout=tick_s)
        out = []
        for ref in self.refs:
            try:
                out.append(self.ray.get(ref))
            except Exception as e:  # RayActorError: the actor died for good
                out.append(e)
        return out

    def stop(self) -> None:
        """Ask every loop to end after its current job (no new claims)."""
        for a in self.actors:
            with contextlib.suppress(Exception):
                a.stop.remote()

    def kill(self, index: int, *, restart: bool) -> None:
        """End actor `index` at once, as a crash would (`restart`: let Ray start it again)."""
        self.ray.kill(self.actors[index], no_restart=not restart)

    def close(self) -> None:
        """Kill every actor (their engines go with them; a finished loop has no job)."""
        for a in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(a, no_restart=True)

    def shutdown(self, store: Any, *, wait_s: float = 30.0) -> int:
        """Kill every actor, wait for them to be gone, give their running jobs back to the
        queue and mark them stopped. Returns how many jobs went back."""
        self.close()
        if self.refs:
            self.ray.wait(self.refs, num_returns=len(self.refs), timeout=wait_s)
        return release_pool_jobs(store, self.tag)


def release_pool_jobs(store: Any, tag: str,
                      reason: str = "worker pool stopped; back in the queue") -> int:
    """Running jobs of this pool's (dead) workers go back to the queue now, not after their
    lease; the workers are marked stopped."""
    marker, released = pool_marker(tag), 0
    for row in store.jobs(statuses=["running"], limit=100_000):
        if row.worker and marker in row.worker:
            spec = store.job_spec(row.id)
            job = Job(id=row.id, spec=spec, worker=row.worker, attempts=row.attempts,
                      lease_expires=row.lease_expires or 0.0)
            with contextlib.suppress(StoreError):
                released += bool(store.release(job, reason))
    for w in store.workers():
        if marker in w.id and w.state != "stopped":
            with contextlib.suppress(StoreError):
                store.worker_seen(w.id, "stopped")
    return released


# ---- the command ------------------------------------------------------------------------------
def _store_location(value: str | None, ray: Any) -> str:
    loc = parse_location(value or default_store_path())
    if isinstance(loc, str):
        return loc
    if cluster_nodes(ray) > 1:
        raise PTMError(f"store {loc}: a SQLite file is one machine's; workers on a cluster of "
                       f"{cluster_nodes(ray)} nodes need --store postgresql://USER@HOST/DB "
                       "(docs/distributed.md)")
    return str(Path(loc).expanduser().resolve())  # the actors' working directory may differ


def worker_count(n: int | None, gpus: float, cpus: float, gpus_per_worker: float | None,
                 cpus_per_worker: float | None) -> tuple[int, float, float]:
    """(workers, GPUs each, CPUs each): N as asked; else one per GPU of the cluster (or per
    `gpus_per_worker` GPUs); without GPUs, one per `cpus_per_worker` cores when that was given
    (an engine per C cores), else 1 (one CPU engine already uses every core it can get)."""
    per_gpu = gpus_per_worker if gpus_per_worker is not None else (1.0 if gpus else 0.0)
    per_cpu = cpus_per_worker if cpus_per_worker is not None else 1.0
    if n is None:
        if per_gpu:
            n = int(gpus // per_gpu)
        elif cpus_per_worker:
            n = int(cpus // cpus_per_worker)
        n = max(1, n or 1)
    return n, per_gpu, per_cpu


def _sigterm_interrupts() -> None:
    """ray.init installs its own SIGTERM handler; SIGTERM must unwind like Ctrl-C."""
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, on_term)


def main(argv: Sequence[str] | None = None, *, engine_factory: EngineFactory | None = None,
         suite_resolver: SuiteResolver | None = None, builder: RecipeBuilder | None = None,
         fingerprinter: Fingerprinter | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ptm_core workers",
                                 description="Run N evaluation workers, each with a warm engine, "
                                             "as Ray actors claiming from one store.")
    ap.add_argument("n", type=int, nargs="?", default=None,
                    help="how many workers (default: one per GPU of the cluster; without GPUs, "
                         "one per --cpus-per-worker cores when that is given, else 1)")
    ap.add_argument("--address", default=None,
                    help="a Ray cluster to join (HOST:6379 of `ray start --head`, or 'auto'); "
                         "default: a private Ray on this machine, bound to 127.0.0.1")
    ap.add_argument("--gpus-per-worker", type=float, default=None,
                    help="GPUs each engine takes (default: 1 when the cluster has GPUs, else 0)")
    ap.add_argument("--cpus-per-worker", type=float, default=None,
                    help="CPU cores each worker takes (default 1); on a cluster without GPUs, "
                         "giving it makes the default N one worker per that many cores")
    ap.add_argument("--num-cpus", type=int, default=None,
                    help="CPUs the private local Ray may use (default: all)")
    ap.add_argument("--max-restarts", type=int, default=3,
                    help="how often Ray restarts a crashed worker")
    add_loop_arguments(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    ray, started = connect(args.address, num_cpus=args.num_cpus)
    _sigterm_interrupts()
    try:
        location = _store_location(args.store, ray)
        store = Store(parse_location(location),  # the driver imports cached_runs/ once
                      cached_dir=None if args.no_cached else default_cached_dir())
        resources = ray.cluster_resources()
        n, per_gpu, per_cpu = worker_count(args.n, float(resources.get("GPU", 0)),
                                           float(resources.get("CPU", 0)),
                                           args.gpus_per_worker, args.cpus_per_worker)
        wiring = Wiring(engine_factory or default_engine_factory,
                        suite_resolver or default_suite_resolver, builder, fingerprinter)
        pool = RayWorkers(location, n, wiring, cpus_per_worker=per_cpu,
                          gpus_per_worker=per_gpu, max_restarts=args.max_restarts)
        try:
            ids = pool.worker_ids()
            where = f"cluster {args.address}" if args.address else "a local Ray (127.0.0.1)"
            print(f"workers: {n} on {where}, store {redact(location)}: {', '.join(ids)}",
                  flush=True)
            pool.start(once=args.once, poll_s=args.poll, lease_s=args.lease,
                       max_jobs=args.max_jobs)
            results = pool.wait()
        except KeyboardInterrupt:
            back = pool.shutdown(store)
            print(f"workers: stopped; {back} running job(s) back in the queue", file=sys.stderr)
            return 130
        finally:
            pool.close()
        return _report(ids, results)
    finally:
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()


def _report(ids: list[str], results: list[Any]) -> int:
    dead = 0
    for wid, r in zip(ids, results):
        if isinstance(r, WorkerStats):
            print(f"  {wid}: {r.done} done, {r.failed} failed")
        else:
            dead += 1
            print(f"  {wid}: died: {str(r).splitlines()[0] if str(r) else type(r).__name__}")
    stats = [r for r in results if isinstance(r, WorkerStats)]
    print(f"workers: {sum(s.done for s in stats)} done, {sum(s.failed for s in stats)} failed"
          + (f", {dead} worker(s) died" if dead else ""))
    return 1 if dead else 0
