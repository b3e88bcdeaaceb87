"""The store and job queue in one process, on each backend (SQLite, PostgreSQL): dedupe, leases,
failures, history, atomicity; and what is particular to each backend."""

import sqlite3

import pytest

from ptm_core.store.db import SCHEMA_VERSION, Store, StoreError
from ptm_core.store.jobs import record_for
from ptm_core.testing.store import fake_lab, ptm_specs


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def _lab(tmp_path, location):
    exp, builder, resolver = fake_lab(tmp_path)
    clock = Clock()
    store = Store(location, clock=clock)
    store.register_experiment(exp)
    return store, exp, clock


@pytest.fixture
def lab(tmp_path, store_at):
    return _lab(tmp_path, store_at())


@pytest.fixture
def sqlite_lab(tmp_path):
    return _lab(tmp_path, tmp_path / "store.sqlite")


def rec(spec, value=50.0, **kw):
    return record_for(spec, metrics={"score": value}, counts={"score": 4}, wall_s=0.1, swap_s=0.0,
                      engine="fake", versions={"ptm_core": "test"}, **kw)


def test_wal_and_schema(sqlite_lab):
    store, _, _ = sqlite_lab
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert store.check() == "ok"


def test_same_job_twice_is_queued_once_and_cached_results_make_no_job(lab):
    store, exp, _ = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    a = store.enqueue(spec)
    b = store.enqueue(spec)
    assert a.status == "queued" and b.status == "existing" and a.job_id == b.job_id
    assert store.queue_counts(exp.name)["queued"] == 1
    job = store.claim("w1")
    assert store.enqueue(spec).status == "existing"  # running counts as active too
    assert store.complete(job, rec(spec))
    out = store.enqueue(spec)
    assert out.status == "cached" and out.job_id is None
    assert store.queue_counts(exp.name) == {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0}


def test_a_result_measured_for_another_experiment_is_reused(lab, tmp_path):
    store, exp, _ = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.put_result(rec(spec, 42.0))
    other = exp.model_copy(update={"name": "copy"})
    spec2, = ptm_specs(other, [0.3], axes=["general"])
    assert spec2.key == spec.key  # the experiment name is not part of the key
    assert store.enqueue(spec2).status == "cached"
    copied = store.get_result(spec.key, "copy")
    assert copied.metrics == {"score": 42.0} and copied.experiment == "copy"


def test_claim_order_priority_then_fifo(lab):
    store, exp, _ = lab
    s1, s2, s3 = ptm_specs(exp, [0.1, 0.2, 0.3], axes=["general"])
    store.enqueue(s1)
    store.enqueue(s2)
    store.enqueue(s3, priority=5)
    assert [store.claim("w").spec.key for _ in range(3)] == [s3.key, s1.key, s2.key]
    assert store.claim("w") is None


def test_expired_lease_returns_the_job_to_the_queue(lab):
    store, exp, clock = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.enqueue(spec)
    dead = store.claim("dead-worker", lease_s=10)
    clock.t += 5
    assert store.claim("w2", lease_s=10) is None  # still leased
    assert store.heartbeat(dead.id, "dead-worker", lease_s=10)  # alive: lease now ends at +15
    clock.t += 8  # +13
    assert store.claim("w2", lease_s=10) is None
    clock.t += 20  # no heartbeat for 20 s: the worker is gone
    row = store.job(dead.id)
    assert row.status == "running" and row.stale  # the app can show it as stalled
    job = store.claim("w2", lease_s=10)
    assert job is not None and job.id == dead.id and job.attempts == 2
    assert not store.heartbeat(dead.id, "dead-worker")  # the old worker lost it
    assert not store.fail(dead, "late failure")  # and cannot fail it any more
    assert store.complete(job, rec(spec))
    hist = [(e.status, e.worker) for e in store.job_events(job.id)]
    assert hist == [("queued", None), ("running", "dead-worker"), ("queued", "dead-worker"),
                    ("running", "w2"), ("done", "w2")]


def test_a_job_that_keeps_killing_workers_fails_after_max_attempts(lab):
    store, exp, clock = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.enqueue(spec)
    for i in range(3):
        assert store.claim(f"w{i}", lease_s=1, max_attempts=3) is not None
        clock.t += 2
    assert store.claim("w9", lease_s=1, max_attempts=3) is None
    row = store.jobs(experiment=exp.name)[0]
    assert row.status == "failed" and "lease expired" in row.error and "attempt 3 of 3" in row.error


def test_late_result_from_a_worker_that_lost_its_lease_is_kept_once(lab):
    store, exp, clock = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.enqueue(spec)
    slow = store.claim("slow", lease_s=1)
    clock.t += 5
    fast = store.claim("fast", lease_s=60)
    assert store.complete(fast, rec(spec, 10.0))
    assert not store.complete(slow, rec(spec, 99.0))  # not the owner any more
    assert store.get_result(spec.key, exp.name).metrics == {"score": 10.0}  # first write kept
    assert len(store.results(exp.name)) == 1
    assert store.job(fast.id).status == "done"


def test_failure_is_recorded_and_retry_makes_a_new_job(lab):
    store, exp, _ = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.enqueue(spec)
    job = store.claim("w")
    assert store.fail(job, "RuntimeError: the suite file lacks column 'prompt'")
    row = store.job(job.id)
    assert row.status == "failed" and "lacks column" in row.error and row.finished_at is not None
    assert store.retry_failed(experiment=exp.name) == 1
    rows = store.jobs(experiment=exp.name)
    assert [r.status for r in rows] == ["queued", "failed"]  # the failure stays in the history


def test_progress_is_readable_by_the_app(lab):
    store, exp, clock = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.enqueue(spec)
    job = store.claim("w", lease_s=10)
    clock.t += 8
    assert store.progress(job.id, "w", 3, 10, "generated 3/10", lease_s=10)
    row = store.job(job.id)
    assert (row.progress_done, row.progress_total, row.progress_msg) == (3, 10, "generated 3/10")
    assert row.lease_expires == clock.t + 10  # progress also proves the worker is alive
    assert not store.progress(job.id, "intruder", 4, 10, "x")


def test_cancel_only_touches_queued_jobs(lab):
    store, exp, _ = lab
    s1, s2 = ptm_specs(exp, [0.1, 0.2], axes=["general"])
    store.enqueue_many([s1, s2])
    running = store.claim("w")
    assert store.cancel(experiment=exp.name) == 1
    assert store.job(running.id).status == "running"
    assert store.queue_counts(exp.name)["cancelled"] == 1
    assert store.enqueue(s2).status == "queued"  # a cancelled job can be asked for again


def test_invalid_metrics_are_refused_before_anything_is_written(lab):
    store, exp, _ = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.enqueue(spec)
    job = store.claim("w")
    with pytest.raises(Exception, match="not a number in 0-100"):
        store.complete(job, rec(spec, 140.0))
    assert store.results() == [] and store.job(job.id).status == "running"


def test_full_disk_leaves_the_store_consistent(sqlite_lab, monkeypatch):
    """A real SQLITE_FULL: cap the file at its current size, then write a large result."""
    store, exp, _ = sqlite_lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.enqueue(spec)
    job = store.claim("w")
    connect = Store._connect

    def capped(self):
        con = connect(self)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count={pages}")
        return con

    monkeypatch.setattr(Store, "_connect", capped)
    big = [{"prompt": "p" * 1000, "outputs": ["o" * 1000]}] * 200  # ~400 KB of details
    with pytest.raises(StoreError, match="database or disk is full.*nothing of this write was kept"):
        store.complete(job, rec(spec), details=big)
    monkeypatch.undo()
    store.close()  # drop the capped connection
    assert store.results() == [] and store.result_details(spec.key) == []
    assert store.job(job.id).status == "running"  # unchanged: the transaction rolled back
    assert store.fail(job, "could not write the result: disk full")
    assert store.job(job.id).status == "failed"
    assert store.check() == "ok"


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path)
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=99")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_workers_registry(lab):
    store, _, clock = lab
    store.worker_seen("w1", "idle")
    clock.t += 100
    store.worker_seen("w2", "busy", 7)
    assert [w.id for w in store.workers(seen_within_s=30)] == ["w2"]
    store.worker_seen("w2", "stopped")
    assert store.workers(seen_within_s=30) == []


def test_workers_record_their_host_engine_and_jobs_finished(lab):
    """What the Runs page shows of each worker: host and pid (of the process that registered
    it), the engine of its last result, jobs done and failed, counted with the result."""
    import os
    import socket

    store, exp, clock = lab
    a, b, c = ptm_specs(exp, [0.2, 0.4, 0.6], axes=["general"])
    store.enqueue_many([a, b, c])
    store.worker_seen("w1", "idle")
    j1 = store.claim("w1")
    store.worker_seen("w1", "busy", j1.id)
    w, = store.workers()
    assert (w.host, w.pid, w.state, w.job_id) == (socket.gethostname(), os.getpid(), "busy", j1.id)
    assert (w.engine, w.jobs_done, w.jobs_failed) == (None, 0, 0)  # no result yet
    clock.t += 5
    assert store.complete(j1, rec(j1.spec))
    w, = store.workers()
    assert (w.engine, w.jobs_done, w.jobs_failed, w.last_seen) == ("fake", 1, 0, clock.t)
    j2 = store.claim("w1")
    assert store.fail(j2, "boom")
    assert not store.fail(j2, "boom again")  # no longer running: counted once
    j3 = store.claim("w1", lease_s=1)
    clock.t += 10  # w1's lease on j3 expires; w2 takes it over and finishes it first
    store.worker_seen("w2", "idle")
    j3b = store.claim("w2")
    assert j3b.id == j3.id
    assert store.complete(j3b, rec(j3b.spec))
    assert not store.complete(j3, rec(j3.spec))  # w1's late result: kept, not counted
    rows = {w.id: w for w in store.workers()}
    assert (rows["w1"].jobs_done, rows["w1"].jobs_failed) == (1, 1)
    assert (rows["w2"].jobs_done, rows["w2"].jobs_failed, rows["w2"].engine) == (1, 0, "fake")


def test_a_replaced_result_changes_the_results_version(lab):
    store, exp, _ = lab
    spec, = ptm_specs(exp, [0.3], axes=["general"])
    store.put_result(rec(spec, 10.0))
    before = store.results_version(exp.name)
    assert not store.put_result(rec(spec, 20.0))  # first write wins
    assert store.results_version(exp.name) == before
    assert store.put_result(rec(spec, 30.0, created_at=before.split(":", 2)[2]), replace=True)
    assert store.results_version(exp.name) != before  # same count and time: the version still moves
    assert store.get_result(spec.key, exp.name).metrics == {"score": 30.0}


def test_threads_racing_to_claim_and_enqueue_take_each_job_once(lab):
    """Many threads (each its own connection) enqueue the same specs and claim at once: one
    job per key, each claimed by one thread (PostgreSQL: ON CONFLICT and SKIP LOCKED; SQLite:
    one writer at a time)."""
    import threading

    store, exp, _ = lab
    specs = ptm_specs(exp, [i / 10 for i in range(6)], axes=["general"])
    start = threading.Barrier(6)
    claimed, outcomes, errors = [], [], []

    def go(i):
        try:
            start.wait()
            outcomes.extend(store.enqueue_many(specs))
            while (job := store.claim(f"t{i}")) is not None:
                claimed.append(job.id)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(o.status == "queued" for o in outcomes) == len(specs)
    assert {o.job_id for o in outcomes} == set(claimed)
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == len(specs)
    assert store.queue_counts(exp.name)["running"] == len(specs)


def test_a_schema_2_store_gets_the_workers_columns(sqlite_lab):
    """Schema 2 -> 3 (workers.engine, jobs_done, jobs_failed): a store made before is migrated
    on open, its workers and their rows kept, the new counts starting at 0."""
    store, _, _ = sqlite_lab
    store.worker_seen("old", "stopped")
    store.close()
    con = sqlite3.connect(store.path)
    for column in ("engine", "jobs_done", "jobs_failed"):
        con.execute(f"ALTER TABLE workers DROP COLUMN {column}")
    con.execute("PRAGMA user_version=2")
    con.commit()
    con.close()
    again = Store(store.path)
    w, = again.workers()
    assert (w.id, w.state, w.engine, w.jobs_done, w.jobs_failed) == ("old", "stopped", None, 0, 0)
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 3
    assert again.check() == "ok"


def test_a_schema_2_postgres_store_gets_the_workers_columns(pg_server):
    import psycopg

    url = pg_server.create_database()
    store = Store(url)
    store.worker_seen("old", "stopped")
    store.close()
    with psycopg.connect(url, autocommit=True) as con:
        for column in ("engine", "jobs_done", "jobs_failed"):
            con.execute(f"ALTER TABLE workers DROP COLUMN {column}")
        con.execute("UPDATE store_meta SET value='2' WHERE name='schema_version'")
    again = Store(url)
    w, = again.workers()
    assert (w.id, w.state, w.engine, w.jobs_done, w.jobs_failed) == ("old", "stopped", None, 0, 0)
    assert again.check() == "ok"
    again.close()
    Store(url).close()  # opened again: nothing left to migrate


def test_newer_postgres_schema_is_refused(pg_server):
    url = pg_server.create_database()
    Store(url).close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute("UPDATE store_meta SET value='99' WHERE name='schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(url)


def test_a_missing_postgres_database_is_a_clear_error(pg_server):
    with pytest.raises(StoreError, match="does not exist.*createdb"):
        Store(pg_server.url("no_such_db"))


@pytest.mark.parametrize("bad", ["mysql://x/db", "postgres:/x", "sqlite://x", "PostgreSQL:x"])
def test_a_location_that_is_neither_a_path_nor_a_supported_url_is_refused(bad, tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"neither a file path nor a supported URL.*postgresql://"):
        Store(bad)
    monkeypatch.setenv("PTM_STORE", bad)
    with pytest.raises(StoreError, match="postgres://"):
        Store.open_default(cached_dir=None)
    assert list(tmp_path.iterdir()) == []  # no stray SQLite file named after it


def test_ptm_store_names_a_postgres_url_or_a_path(monkeypatch, tmp_path):
    from ptm_core.store.db import default_store_path
    from ptm_core.store.location import redact

    monkeypatch.setenv("PTM_STORE", "postgresql://u:secret@db.example:5433/ptm")
    assert default_store_path() == "postgresql://u:secret@db.example:5433/ptm"
    assert redact(default_store_path()) == "postgresql://u:***@db.example:5433/ptm"
    monkeypatch.setenv("PTM_STORE", str(tmp_path / "a:b.sqlite"))  # colons later in a path are fine
    assert default_store_path() == tmp_path / "a:b.sqlite"
