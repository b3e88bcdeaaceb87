"""Many warm engines as Ray actors (ptm_core/orchestrate/ray_workers.py) on a local Ray the tests
start (2 CPUs, no dashboard, loopback): two actors over the fake engine drain a queue exactly
once on SQLite and on PostgreSQL; an actor killed mid-job is restarted and its job comes back
through the lease; shutting the pool down gives running jobs back at once."""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import re
import socket
import time
from contextlib import redirect_stdout

import pytest

from ptm_core.errors import PTMError
from ptm_core.orchestrate import ray_workers
from ptm_core.orchestrate.ray_workers import RayWorkers, Wiring, pool_marker
from ptm_core.orchestrate.worker import WorkerStats
from ptm_core.store.db import Store
from ptm_core.testing.store import (
    FakeBuilder, FakeEngineFactory, fake_fingerprinter, fake_lab, fake_suite_resolver, ptm_specs,
)

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (it is in requirements.txt)")


@pytest.fixture(scope="module")
def ray_local():
    ray, started = ray_workers.connect(num_cpus=2)  # ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    if started:
        ray.shutdown()


def wiring(delay_s: float = 0.0) -> Wiring:
    return Wiring(FakeEngineFactory(generate_delay_s=delay_s), fake_suite_resolver(),
                  FakeBuilder(), fake_fingerprinter, log_level=logging.WARNING)


def queue(tmp_path, location, omegas, axes=None):
    exp, _, resolver = fake_lab(tmp_path)
    store = Store(location)
    store.register_experiment(exp)
    specs = ptm_specs(exp, omegas, axes=axes, resolver=resolver)
    store.enqueue_many(specs)
    return store, exp, specs


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while not (value := condition()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@needs_ray
@pytest.mark.slow
def test_two_actors_drain_the_queue_exactly_once(tmp_path, store_at, ray_local):
    loc = store_at()
    store, exp, specs = queue(tmp_path, loc, [i / 10 for i in range(6)])  # 6 points x 4 = 24 jobs
    pool = RayWorkers(loc, 2, wiring(delay_s=0.05), max_restarts=0)  # 1.2 s for one
    try:
        ids = pool.worker_ids(timeout_s=300)
        pool.start(once=True, lease_s=30, poll_s=0.1)
        results = pool.wait(timeout_s=300)
    finally:
        pool.close()
    assert all(isinstance(r, WorkerStats) for r in results), results
    done = [j for r in results for j in r.job_ids]
    assert len(done) == len(set(done)) == len(specs)  # each job ran once, none was lost
    assert all(r.done > 0 and r.failed == 0 for r in results), "both actors should take part"
    counts = store.queue_counts(exp.name)
    assert counts["done"] == len(specs) and counts["queued"] == counts["running"] == 0
    assert sorted(r.key for r in store.results(exp.name)) == sorted(s.key for s in specs)
    # every actor is a worker of the store, with its host, stopped when its loop ended
    rows = {w.id: w for w in store.workers()}
    assert set(ids) <= set(rows) and len(set(ids)) == 2
    assert all(rows[i].host == socket.gethostname() and rows[i].state == "stopped" for i in ids)
    assert store.check() == "ok"
    # the private local Ray is on loopback only
    assert {n["NodeManagerAddress"] for n in ray_local.nodes()} == {"127.0.0.1"}


@needs_ray
@pytest.mark.slow
def test_an_actor_killed_mid_job_is_restarted_and_its_job_reclaimed(tmp_path, store_at, ray_local):
    loc = store_at()
    store, exp, specs = queue(tmp_path, loc, [0.2, 0.4, 0.6], axes=["science"])  # 3 slow jobs
    pool = RayWorkers(loc, 2, wiring(delay_s=1.5), max_restarts=1)
    try:
        ids = pool.worker_ids(timeout_s=300)
        pool.start(once=False, lease_s=1.0, poll_s=0.1)
        running = wait_for(lambda: [r for r in store.jobs(statuses=["running"])
                                    if (r.progress_msg or "").startswith("running")], 300,
                           "a job to start")[0]
        victim = running.worker
        pool.kill(ids.index(victim), restart=True)  # as a crash: no cleanup in the actor
        wait_for(lambda: store.queue_counts(exp.name)["done"] == len(specs), 300,
                 "the queue to drain")
        # Ray started the killed actor again: a new process, so a new worker id of the pool
        slot = victim.rsplit("/", 1)[1]
        wait_for(lambda: [w for w in store.workers() if w.id.endswith("/" + slot) and w.id != victim],
                 300, "the restarted actor to claim")
    finally:
        pool.close()
    row = store.job(running.id)
    assert row.status == "done" and row.worker != victim and row.attempts == 2
    events = store.job_events(running.id)
    assert any(e.status == "queued" and e.worker == victim and "lease" in e.message for e in events)
    for s in store.jobs(experiment=exp.name):  # nothing done twice
        assert [e.status for e in store.job_events(s.id)].count("done") == 1
    assert len(store.results(exp.name)) == len(specs)
    assert store.check() == "ok"


@needs_ray
@pytest.mark.slow
def test_shutdown_gives_running_jobs_back_at_once(tmp_path, ray_local):
    store, exp, specs = queue(tmp_path, tmp_path / "store.sqlite", [0.5], axes=["science"])
    pool = RayWorkers(tmp_path / "store.sqlite", 1, wiring(delay_s=60), max_restarts=0)
    pool.worker_ids(timeout_s=300)
    pool.start(once=True, lease_s=60, poll_s=0.1)
    job = wait_for(lambda: [r for r in store.jobs(statuses=["running"])
                            if (r.progress_msg or "").startswith("running")], 300,
                   "the job to start")[0]
    assert pool.shutdown(store) == 1
    row = store.job(job.id)  # back in the queue now, not after the 60 s lease
    assert row.status == "queued" and row.worker is None and row.attempts == 0
    assert store.job_events(job.id)[-1].message == "worker pool stopped; back in the queue"
    assert all(w.state == "stopped" for w in store.workers() if pool_marker(pool.tag) in w.id)


@needs_ray
@pytest.mark.slow
def test_the_workers_command_drains_the_queue_and_reports(tmp_path, ray_local):
    path = tmp_path / "store.sqlite"
    store, exp, specs = queue(tmp_path, path, [0.1, 0.9], axes=["general", "science"])
    out = io.StringIO()
    with redirect_stdout(out):
        rc = ray_workers.main(["2", "--once", "--store", str(path), "--no-cached",
                               "--max-restarts", "0"],
                              engine_factory=FakeEngineFactory(), suite_resolver=fake_suite_resolver(),
                              builder=FakeBuilder(), fingerprinter=fake_fingerprinter)
    text = out.getvalue()
    assert rc == 0, text
    assert "workers: 2 on a local Ray (127.0.0.1)" in text
    assert f"workers: {len(specs)} done, 0 failed" in text.splitlines()[-1]
    assert store.queue_counts(exp.name)["done"] == len(specs)
    assert ray_local.is_initialized()  # it used the running Ray and left it running


@pytest.mark.parametrize("argv, loopback", [
    (["workers", "2", "--once"], True),
    (["bench", "workers", "--jobs", "4"], True),
    (["workers", "--address", "head:6379"], False),
    (["workers", "--address=auto"], False),
    (["bench", "workers", "--address", "head:6379"], False),
    (["worker", "--once"], False),
    (["bench", "merge"], False),
])
def test_the_command_line_keeps_a_private_local_ray_on_loopback(argv, loopback, monkeypatch):
    """Set before anything imports ray (Ray reads it once, on import), by the variable Ray names,
    not its private constant; a joined cluster is left alone, and so is a user's own setting."""
    from ptm_core import __main__ as cli

    assert cli.RAY_LOOPBACK_ENV == ray_workers._LOOPBACK_ENV
    monkeypatch.delenv(cli.RAY_LOOPBACK_ENV, raising=False)
    cli.prepare_environment(argv[0], argv[1:])
    assert os.environ.get(cli.RAY_LOOPBACK_ENV) == ("0" if loopback else None)
    monkeypatch.setenv(cli.RAY_LOOPBACK_ENV, "1")
    cli.prepare_environment(argv[0], argv[1:])
    assert os.environ[cli.RAY_LOOPBACK_ENV] == "1"


@needs_ray
def test_the_command_line_sets_it_before_ray_is_imported(tmp_path):
    """`python -m ptm_core workers` in a fresh interpreter: ray, imported after the command line
    set the variable, reads it itself (no private constant set); the private Ray is on loopback."""
    import subprocess
    import sys

    code = ("import sys, ptm_core.__main__ as cli\n"
            "cli.prepare_environment('workers', [])\n"
            "assert 'ray' not in sys.modules\n"
            "from ray._private import ray_constants\n"
            "print(ray_constants.ENABLE_RAY_CLUSTER)\n")
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != ray_workers._LOOPBACK_ENV}
    env["PYTHONPATH"] = str(Path(ray_workers.__file__).resolve().parents[2])  # this checkout
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args, expected", [
    ((None, 4.0, 32.0, None, None), (4, 1.0, 1.0)),      # one engine per GPU
    ((None, 8.0, 32.0, 2.0, None), (4, 2.0, 1.0)),       # an engine over 2 GPUs
    ((None, 0.0, 16.0, None, None), (1, 0.0, 1.0)),      # CPUs only: one engine
    ((None, 0.0, 16.0, None, 4.0), (4, 0.0, 4.0)),       # one per 4 cores
    ((None, 0.0, 2.0, None, 4.0), (1, 0.0, 4.0)),        # fewer cores than one engine's
    ((3, 4.0, 32.0, None, None), (3, 1.0, 1.0)),         # N as asked
])
def test_the_default_worker_count_is_one_per_gpu_or_per_n_cores(args, expected):
    assert ray_workers.worker_count(*args) == expected


class _TwoNodes:
    @staticmethod
    def nodes():
        return [{"Alive": True}, {"Alive": True}]


def test_a_sqlite_store_is_refused_on_a_cluster_of_several_nodes(tmp_path):
    with pytest.raises(PTMError, match="SQLite file is one machine's.*postgresql://"):
        ray_workers._store_location(str(tmp_path / "s.sqlite"), _TwoNodes())
    url = "postgresql://u@db.example:5432/ptm"
    assert ray_workers._store_location(url, _TwoNodes()) == url


def test_one_node_gets_an_absolute_sqlite_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = type("One", (), {"nodes": staticmethod(lambda: [{"Alive": True}, {"Alive": False}])})
    assert ray_workers._store_location("rel.sqlite", one) == str(tmp_path / "rel.sqlite")


@needs_ray
@pytest.mark.slow
def test_bench_workers_runs_on_a_tiny_configuration(tmp_path, ray_local, capsys):
    """`python -m ptm_core bench workers` on fake jobs (here, to share this module's Ray): 1 and
    2 workers and the store's ceiling, on SQLite (its PostgreSQL runs are the same `drain` on a
    URL, as the pool tests above; each pool costs an actor start, seconds on a loaded machine);
    figures side by side, JSON last."""
    import json

    from ptm_core.bench import workers_bench

    rc = workers_bench.main(["--source", "fake", "--jobs", "6", "--job-s", "0.05",
                             "--workers", "1,2", "--ceiling-jobs", "10", "--lease", "30",
                             "--backends", "sqlite",
                             "--workdir", str(tmp_path / "bench")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    out = json.loads(lines[-1])
    assert lines[0].startswith("uptime before:") and "load average" in lines[0]
    assert any(ln.startswith("uptime after:") for ln in lines)
    assert [(r["backend"], r["workers"]) for r in out["runs"]] == [("sqlite", 1), ("sqlite", 2)]
    for r in out["runs"]:
        assert r["jobs"] == 6 and r["jobs_per_s"] > 0 and sum(r["jobs_per_worker"]) == 6
    assert set(out["store_ceiling_jobs_per_s"]) == {"sqlite"} and out["model"]["sqlite"]
    table = "\n".join(lines)
    assert re.search(r"^sqlite +1 ", table, re.M) and re.search(r"^sqlite +2 ", table, re.M)
    assert "store ceiling (sqlite)" in table and "model (sqlite)" in table
    assert ray_local.is_initialized()
