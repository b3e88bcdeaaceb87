"""Several processes on one store (a SQLite file, a PostgreSQL database): no duplicate runs, no
lost results, no corruption, and a killed worker's job comes back; on PostgreSQL, a server
restart mid-sweep loses nothing and runs nothing twice."""

import multiprocessing as mp
import os
import random
import signal
import time

import pytest

from ptm_core.store.db import Store
from ptm_core.store.frame import POINT_COLUMNS, results_frame
from ptm_core.store.jobs import record_for
from ptm_core.testing.store import (
    FakeBuilder, FakeEngine, fake_fingerprinter, fake_lab, fake_suite_resolver, ptm_specs,
)
from ptm_core.orchestrate.worker import run_worker

ctx = mp.get_context("fork")


def _worker_proc(path, specs, name, out_path, seed):
    """Enqueue every spec (in its own order) while working the queue, like the app and a
    worker at once; write down which jobs this process completed."""
    store = Store(path)
    rng = random.Random(seed)
    specs = list(specs)
    rng.shuffle(specs)
    half = len(specs) // 2
    store.enqueue_many(specs[:half])
    resolver = fake_suite_resolver()
    stats = run_worker(store, lambda e: FakeEngine(generate_delay_s=0.005), resolver,
                       once=True, builder=FakeBuilder(), fingerprinter=fake_fingerprinter,
                       lease_s=30, worker_id=name, max_jobs=5)
    for s in specs[half:]:
        store.enqueue(s)
    stats2 = run_worker(store, lambda e: FakeEngine(generate_delay_s=0.005), resolver,
                        once=True, builder=FakeBuilder(), fingerprinter=fake_fingerprinter,
                        lease_s=30, worker_id=name)
    with open(out_path, "w") as f:
        f.write("\n".join(str(i) for i in stats.job_ids + stats2.job_ids))


def _writer_proc(path, specs, tag):
    """Raw result writes racing with the other process (distinct experiments, no queue)."""
    store = Store(path)
    for i, s in enumerate(specs):
        r = record_for(s, metrics={"score": float(i % 100)}, counts={"score": 1}, wall_s=0.0,
                       swap_s=0.0, engine="fake", versions={})
        r.experiment = f"hammer-{tag}"
        store.put_result(r)
        store.worker_seen(f"writer-{tag}", "busy", i)


def test_two_workers_and_enqueuers_at_once_run_each_job_once(tmp_path, store_at):
    exp, _, resolver = fake_lab(tmp_path)
    path = store_at()
    store = Store(path)
    store.register_experiment(exp)
    specs = ptm_specs(exp, [i / 10 for i in range(11)], resolver=resolver)  # 11 points x 4 = 44
    keys = {s.key for s in specs}
    outs = [tmp_path / f"w{i}.txt" for i in range(2)]
    procs = [ctx.Process(target=_worker_proc, args=(path, specs, f"w{i}", outs[i], i)) for i in range(2)]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs):  # the app reading meanwhile
        df = results_frame(store, exp)  # the point columns, 5 axes and their interval bounds
        assert df.shape[1] == len(POINT_COLUMNS) + 5 + 2 * 5 and (df[["general", "science"]].fillna(0) <= 100).all().all()
        store.jobs(experiment=exp.name)
        reads += 1
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    done_ids = [int(x) for o in outs for x in o.read_text().split()]
    assert len(done_ids) == len(set(done_ids)) == len(keys)  # every job ran exactly once
    counts = store.queue_counts(exp.name)
    assert counts["done"] == len(keys) and counts["queued"] == counts["running"] == counts["failed"] == 0
    assert {r.key for r in store.results(exp.name)} == keys  # no lost results
    assert len(store.results(exp.name)) == len(keys)
    assert all(len(procs_done) > 0 for procs_done in (o.read_text().split() for o in outs)), \
        "both workers should have taken part"
    assert reads > 0
    assert store.check() == "ok"


def test_concurrent_writers_lose_nothing(tmp_path, store_at):
    exp, _, resolver = fake_lab(tmp_path)
    path = store_at()
    store = Store(path)
    specs = ptm_specs(exp, [i / 100 for i in range(50)], resolver=resolver)  # 200 specs
    procs = [ctx.Process(target=_writer_proc, args=(path, specs, t)) for t in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(store.results("hammer-a")) == len(store.results("hammer-b")) == len(specs)
    assert store.check() == "ok"


def _doomed_worker(path):
    store = Store(path)
    run_worker(store, lambda e: FakeEngine(generate_delay_s=60), fake_suite_resolver(),
               once=True, builder=FakeBuilder(), fingerprinter=fake_fingerprinter,
               lease_s=0.6, worker_id="doomed")


def test_job_of_a_killed_worker_returns_to_the_queue(tmp_path, store_at):
    exp, _, resolver = fake_lab(tmp_path)
    path = store_at()
    store = Store(path)
    store.register_experiment(exp)
    spec, = ptm_specs(exp, [0.5], axes=["science"], resolver=resolver)
    job_id = store.enqueue(spec).job_id
    p = ctx.Process(target=_doomed_worker, args=(path,))
    p.start()
    deadline = time.time() + 20
    while not (store.job(job_id).progress_msg or "").startswith("running"):
        assert time.time() < deadline, "the worker never started the job"
        time.sleep(0.02)
    time.sleep(0.3)  # it heartbeats while busy
    assert not store.job(job_id).stale
    os.kill(p.pid, signal.SIGKILL)  # killed mid-job: no cleanup at all
    p.join(10)
    while not store.job(job_id).stale:  # lease runs out
        assert time.time() < deadline
        time.sleep(0.05)
    assert store.results() == []  # nothing half-written
    stats = run_worker(store, lambda e: FakeEngine(), resolver, once=True, builder=FakeBuilder(),
                       fingerprinter=fake_fingerprinter, worker_id="rescuer")
    assert stats.done == 1
    row = store.job(job_id)
    assert row.status == "done" and row.worker == "rescuer" and row.attempts == 2
    events = [(e.status, e.worker) for e in store.job_events(job_id)]
    assert ("queued", "doomed") in events and events[-1] == ("done", "rescuer")
    assert store.get_result(spec.key, exp.name).metrics["score"] == pytest.approx(20 + 35 - 7.5)
    assert store.check() == "ok"


def _cli_worker(path):
    from ptm_core.orchestrate.worker import main
    raise SystemExit(main(["--store", str(path), "--no-cached", "--lease", "30", "--id", "cli"],
                          engine_factory=lambda e: FakeEngine(generate_delay_s=60),
                          suite_resolver=fake_suite_resolver(), builder=FakeBuilder(),
                          fingerprinter=fake_fingerprinter))


def test_sigterm_gives_the_running_job_back_at_once(tmp_path, store_at):
    exp, _, resolver = fake_lab(tmp_path)
    path = store_at()
    store = Store(path)
    store.register_experiment(exp)
    spec, = ptm_specs(exp, [0.5], axes=["science"], resolver=resolver)
    job_id = store.enqueue(spec).job_id
    p = ctx.Process(target=_cli_worker, args=(path,))
    p.start()
    deadline = time.time() + 20
    while not (store.job(job_id).progress_msg or "").startswith("running"):
        assert time.time() < deadline, "the worker never started the job"
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGTERM)
    p.join(10)
    assert p.exitcode == 128 + signal.SIGTERM
    row = store.job(job_id)  # back in the queue now, not after the 30 s lease
    assert row.status == "queued" and row.worker is None and row.attempts == 0
    assert store.job_events(job_id)[-1].message == "worker interrupted; back in the queue"
    assert store.workers()[0].state == "stopped"


def _sweep_worker(url, name, out_path):
    store = Store(url, reconnect_s=300)  # a loaded machine may take long to restart the server
    stats = run_worker(store, lambda e: FakeEngine(generate_delay_s=0.03), fake_suite_resolver(),
                       once=True, builder=FakeBuilder(), fingerprinter=fake_fingerprinter,
                       lease_s=60, worker_id=name)
    with open(out_path, "w") as f:
        f.write("\n".join(str(i) for i in stats.job_ids))
    raise SystemExit(0 if stats.failed == 0 else 3)


@pytest.mark.slow
def test_a_database_restart_mid_sweep_loses_nothing_and_runs_nothing_twice(tmp_path, pg_server):
    exp, _, resolver = fake_lab(tmp_path)
    url = pg_server.create_database()
    store = Store(url, reconnect_s=300)
    store.register_experiment(exp)
    specs = ptm_specs(exp, [i / 10 for i in range(11)], resolver=resolver)  # 44 jobs
    store.enqueue_many(specs)
    outs = [tmp_path / f"w{i}.txt" for i in range(2)]
    procs = [ctx.Process(target=_sweep_worker, args=(url, f"w{i}", outs[i])) for i in range(2)]
    for p in procs:
        p.start()
    deadline = time.time() + 300
    while store.queue_counts(exp.name)["done"] < 4:
        assert time.time() < deadline and all(p.is_alive() for p in procs), "the sweep never started"
        time.sleep(0.05)
    assert store.queue_counts(exp.name)["done"] < len(specs)  # the restart is mid-sweep
    pg_server.restart()  # every session is ended; the workers reconnect and go on
    for p in procs:
        p.join(600)
        assert p.exitcode == 0
    counts = store.queue_counts(exp.name)  # this process reconnects too
    assert counts["done"] == len(specs) and counts["queued"] == counts["running"] == counts["failed"] == 0
    done_ids = [int(x) for o in outs for x in o.read_text().split()]
    assert len(done_ids) == len(set(done_ids)) == len(specs)  # each job ran once
    assert {r.key for r in store.results(exp.name)} == {s.key for s in specs}
    assert store.check() == "ok"
