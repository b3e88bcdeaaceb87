"""The results store and job queue: one SQLite file shared by the app and the workers.

Concurrency rules (see docs/store.md):
- WAL journal: readers never block the writer and never see a half-committed transaction.
- Every write is one short `BEGIN IMMEDIATE` transaction (the write lock is taken up front, so
  two writers serialize instead of deadlocking on a lock upgrade); a busy timeout makes the
  other side wait instead of failing.
- A connection per operation: safe across threads (Streamlit sessions, the heartbeat thread)
  and processes; nothing holds a transaction open between calls.
- A result is inserted in the same transaction that marks its job done; on any error
  (including SQLITE_FULL) the transaction rolls back and nothing of it is visible.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ptm_core.errors import PTMError
from ptm_core.store.records import (
    EnqueueOutcome, Job, JobEvent, JobRow, JobSpec, ResultRecord, WorkerRow, utc_now_iso,
)

SCHEMA_VERSION = 2  # 2: results.intervals
ACTIVE = ("queued", "running")
_RESULT_COLUMNS = (
    "key", "experiment", "point_id", "kind", "skills", "omega", "label", "data_size",
    "train_steps", "method", "recipe_key", "recipe_yaml", "heuristic", "suite", "suite_version",
    "suite_options", "axes", "metrics", "counts", "wall_s", "swap_s", "engine", "versions",
    "sampling", "fingerprints", "source", "created_at", "intervals",
)
_JSON_COLUMNS = ("suite_options", "axes", "metrics", "counts", "versions", "sampling", "fingerprints",
                 "intervals")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT NOT NULL,
    experiment TEXT NOT NULL,
    point_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    skills TEXT NOT NULL,
    omega TEXT,
    label TEXT NOT NULL,
    data_size INTEGER,
    train_steps INTEGER,
    method TEXT NOT NULL,
    recipe_key TEXT,
    recipe_yaml TEXT,
    heuristic INTEGER NOT NULL DEFAULT 0,
    suite TEXT NOT NULL,
    suite_version TEXT NOT NULL,
    suite_options TEXT NOT NULL,
    axes TEXT NOT NULL,
    metrics TEXT NOT NULL,
    counts TEXT NOT NULL,
    wall_s REAL,
    swap_s REAL,
    engine TEXT NOT NULL,
    versions TEXT NOT NULL,
    sampling TEXT NOT NULL,
    fingerprints TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL,
    intervals TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (key, experiment)
);
CREATE INDEX IF NOT EXISTS results_by_experiment ON results(experiment, point_id);
CREATE TABLE IF NOT EXISTS result_details (
    key TEXT PRIMARY KEY,
    details TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    hash TEXT NOT NULL,
    source TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    experiment TEXT NOT NULL,
    suite_ref TEXT NOT NULL,
    recipe_key TEXT NOT NULL,
    label TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued','running','done','failed','cancelled')),
    priority INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_expires REAL,
    heartbeat_at REAL,
    progress_done INTEGER,
    progress_total INTEGER,
    progress_msg TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active ON jobs(key, experiment)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, priority DESC, id);
CREATE INDEX IF NOT EXISTS jobs_by_experiment ON jobs(experiment, id);
CREATE TABLE IF NOT EXISTS job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at REAL NOT NULL,
    status TEXT NOT NULL,
    worker TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events(job_id, id);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    state TEXT NOT NULL,
    job_id INTEGER,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS imports (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    records INTEGER NOT NULL,
    imported_at REAL NOT NULL
);
"""


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the C type cannot)."""


class StoreError(PTMError):
    """The store cannot be read or written (disk full, locked too long, newer schema...)."""


def _explain(e: sqlite3.Error, path: Path, doing: str) -> StoreError:
    """One message: what failed, SQLite's words, and what to do about it."""
    msg = str(e)
    return StoreError(f"store {path}: could not {doing}: {msg}{remedy(msg, path)}")


def remedy(msg: str, path: Path) -> str:
    """What the user can do about a store failure whose SQLite message is `msg`."""
    low = msg.lower()
    if "full" in low:
        return " (free some disk space; nothing of this write was kept)"
    if "locked" in low or "busy" in low:
        return (" (another process -- a worker or the app -- held the store's write lock for too "
                "long; stop it or try again)")
    if any(w in low for w in ("readonly", "read-only", "unable to open", "permission",
                              "cannot create", "read only")):
        return (" (the store file or its directory is not writable: make it writable, or set "
                "PTM_STORE to a writable file; the app still shows the shipped results in "
                "cached_runs/ without it)")
    if any(w in low for w in ("not a database", "malformed", "corrupt", "disk i/o", "no such table")):
        return (f" (the store file is damaged or truncated: move it aside, e.g. `mv {path} "
                f"{path}.broken` together with its -wal and -shm files; a new store is created on "
                "the next start and the shipped results are re-imported from cached_runs/; "
                "results measured only in the old store are lost unless exported)")
    return ""


def default_store_path() -> Path:
    """$PTM_STORE, else .ptm/store.sqlite at the repository root."""
    env = os.environ.get("PTM_STORE")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / ".ptm" / "store.sqlite"


def default_cached_dir() -> Path:
    env = os.environ.get("PTM_CACHED_RUNS")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "cached_runs"


class Store:
    """Results, jobs, experiments and workers in one SQLite file.

    `clock` (seconds since the epoch) is injectable so tests can expire leases without
    sleeping. With `cached_dir`, shipped results there are imported (idempotently) on open.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, busy_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.time,
                 cached_dir: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.busy_timeout_s = busy_timeout_s
        self.clock = clock
        self._local = threading.local()
        self._all: weakref.WeakSet = weakref.WeakSet()
        self._all_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"store {self.path}: cannot create its directory: {e}"
                             f"{remedy('cannot create', self.path)}") from None
        self._init_schema()
        self.import_report = None  # cached_runs import result (errors are shown by the app)
        if cached_dir is not None:
            from ptm_core.store.cached import import_cached
            self.import_report = import_cached(self, cached_dir)

    @classmethod
    def open_default(cls, **kw: Any) -> "Store":
        """The store the app and the CLI share, with cached_runs/ imported."""
        kw.setdefault("cached_dir", default_cached_dir())
        return cls(default_store_path(), **kw)

    # ---- connections -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """This thread's connection (opened once; reopened after a fork). Connections stay
        open because closing the last one checkpoints and deletes the WAL, which made every
        write cost a checkpoint."""
        local = self._local
        con = getattr(local, "con", None)
        if con is not None and getattr(local, "pid", None) == os.getpid():
            return con
        try:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                  check_same_thread=False, factory=_Connection)
            con.row_factory = sqlite3.Row
            # the first statements read the file: a corrupt or truncated store fails here
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            con.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: no corruption, commits ordered
            con.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            raise _explain(e, self.path, "open the database") from None
        local.con, local.pid = con, os.getpid()
        with self._all_lock:
            self._all.add(con)  # weak: a finished thread's connection is closed when collected
        return con

    @contextlib.contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        except sqlite3.Error as e:
            raise _explain(e, self.path, "read") from e

    def close(self) -> None:
        """Close every connection this Store opened (in this process)."""
        with self._all_lock:
            for con in list(self._all):
                with contextlib.suppress(sqlite3.Error):
                    con.close()
            self._all.clear()
        self._local = threading.local()

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One short write transaction; the write lock is taken at BEGIN (no upgrade races)."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except sqlite3.Error as e:
            _rollback(con)
            raise _explain(e, self.path, doing) from e
        except BaseException:
            _rollback(con)
            raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-statement reads (WAL: never blocks the writer)."""
        con = self._connect()
        try:
            con.execute("BEGIN")
            yield con
            con.execute("COMMIT")
        except sqlite3.Error as e:
            _rollback(con)
            raise _explain(e, self.path, "read") from e

    def _init_schema(self) -> None:
        con = self._connect()
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.Error as e:
            raise _explain(e, self.path, "enable WAL journaling") from e
        if str(mode).lower() != "wal":
            raise StoreError(f"store {self.path}: cannot use WAL journaling (got {mode}); "
                             "is it on a network file system?")
        with self._write("create the schema") as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema version {version}, newer than this "
                                 f"ptm_core understands ({SCHEMA_VERSION}); upgrade ptm_core")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            _migrate(con)
            if version < SCHEMA_VERSION:
                con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def check(self) -> str:
        """SQLite's integrity check: 'ok' when the file is sound."""
        with self._use() as con:
            return "\n".join(r[0] for r in con.execute("PRAGMA integrity_check"))

    # ---- experiments ---------------------------------------------------------------------
    def register_experiment(self, experiment: Any) -> None:
        """Remember an experiment (with absolute paths) so workers can rebuild it from the store."""
        spec = experiment.model_dump_json()
        with self._write("register the experiment") as con:
            con.execute(
                "INSERT INTO experiments(name, spec, hash, source, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, hash=excluded.hash, "
                "source=excluded.source, updated_at=excluded.updated_at",
                (experiment.name, spec, experiment.content_hash(), experiment.source, self.clock()))

    def get_experiment(self, name: str):
        from ptm_core.store.experiment import Experiment, ExperimentError
        with self._use() as con:
            row = con.execute("SELECT spec FROM experiments WHERE name=?", (name,)).fetchone()
        if row is None:
            raise ExperimentError(f"experiment {name!r} is not registered in store {self.path}")
        return Experiment.model_validate_json(row["spec"])

    def experiment_names(self) -> list[str]:
        with self._use() as con:
            names = {r[0] for r in con.execute("SELECT name FROM experiments")}
            names |= {r[0] for r in con.execute("SELECT DISTINCT experiment FROM results")}
        return sorted(names)

    # ---- results -------------------------------------------------------------------------
    def has_result(self, key: str, experiment: str | None = None) -> bool:
        with self._use() as con:
            if experiment is None:
                row = con.execute("SELECT 1 FROM results WHERE key=? LIMIT 1", (key,)).fetchone()
            else:
                row = con.execute("SELECT 1 FROM results WHERE key=? AND experiment=?",
                                  (key, experiment)).fetchone()
        return row is not None

    def existing_keys(self, keys: Iterable[str], experiment: str | None = None) -> set[str]:
        keys = list(dict.fromkeys(keys))
        found: set[str] = set()
        with self._read() as con:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                if experiment is None:
                    rows = con.execute(f"SELECT DISTINCT key FROM results WHERE key IN ({marks})", chunk)
                else:
                    rows = con.execute(f"SELECT key FROM results WHERE experiment=? AND key IN ({marks})",
                                       [experiment, *chunk])
                found.update(r[0] for r in rows)
        return found

    def put_result(self, record: ResultRecord, details: Sequence[dict] | None = None, *,
                   replace: bool = False) -> bool:
        """Write one result in one transaction. Returns False when (key, experiment) existed
        and `replace` is False (the first measurement is kept)."""
        record.validate()
        with self._write(f"write the result for {record.label!r} / {record.suite}") as con:
            return self._insert_result(con, record, details, replace=replace)

    def insert_results(self, records: Sequence[ResultRecord]) -> int:
        """Insert many records in one transaction (existing keys are kept). Returns how many
        were new."""
        for r in records:
            r.validate()
        with self._write(f"insert {len(records)} results") as con:
            return sum(self._insert_result(con, r, None) for r in records)

    def _insert_result(self, con: sqlite3.Connection, r: ResultRecord,
                       details: Sequence[dict] | None, *, replace: bool = False) -> bool:
        if not r.created_at:
            r.created_at = utc_now_iso(self.clock())
        values = []
        for c in _RESULT_COLUMNS:
            v = getattr(r, c)
            if c in _JSON_COLUMNS:
                v = json.dumps(v, sort_keys=True)
            elif c == "heuristic":
                v = int(bool(v))
            values.append(v)
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        cur = con.execute(f"{verb} INTO results({','.join(_RESULT_COLUMNS)}) "
                          f"VALUES ({','.join('?' * len(_RESULT_COLUMNS))})", values)
        if details is not None:
            con.execute("INSERT OR REPLACE INTO result_details(key, details) VALUES (?, ?)",
                        (r.key, json.dumps(list(details), default=str)))
        return cur.rowcount == 1

    def get_result(self, key: str, experiment: str | None = None) -> ResultRecord | None:
        with self._use() as con:
            if experiment is None:
                row = con.execute("SELECT * FROM results WHERE key=? ORDER BY created_at LIMIT 1",
                                  (key,)).fetchone()
            else:
                row = con.execute("SELECT * FROM results WHERE key=? AND experiment=?",
                                  (key, experiment)).fetchone()
        return _record(row) if row else None

    def results(self, experiment: str | None = None) -> list[ResultRecord]:
        with self._use() as con:
            if experiment is None:
                rows = con.execute("SELECT * FROM results ORDER BY experiment, point_id, suite").fetchall()
            else:
                rows = con.execute("SELECT * FROM results WHERE experiment=? ORDER BY point_id, suite",
                                   (experiment,)).fetchall()
        return [_record(r) for r in rows]

    def results_version(self, experiment: str | None = None) -> str:
        """Changes whenever results of `experiment` are added or replaced: a cheap cache key
        for the app's frame (one indexed query)."""
        with self._use() as con:
            if experiment is None:
                row = con.execute("SELECT COUNT(*), MAX(rowid), MAX(created_at) FROM results").fetchone()
            else:
                row = con.execute("SELECT COUNT(*), MAX(rowid), MAX(created_at) FROM results "
                                  "WHERE experiment=?", (experiment,)).fetchone()
        return f"{row[0]}:{row[1]}:{row[2]}"

    def result_details(self, key: str) -> list[dict]:
        with self._use() as con:
            row = con.execute("SELECT details FROM result_details WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else []

    def _copy_for(self, con: sqlite3.Connection, spec: JobSpec) -> bool:
        """If the measurement exists under another experiment, record it for this one too."""
        row = con.execute("SELECT * FROM results WHERE key=? ORDER BY created_at LIMIT 1",
                          (spec.key,)).fetchone()
        if row is None:
            return False
        if row["experiment"] != spec.experiment:
            src = _record(row)
            from ptm_core.store.jobs import record_for  # local: jobs imports records only
            rec = record_for(spec, metrics=src.metrics, counts=src.counts, wall_s=src.wall_s,
                             swap_s=src.swap_s, engine=src.engine, versions=src.versions,
                             source=src.source, created_at=src.created_at,
                             intervals=src.intervals)
            self._insert_result(con, rec, None)
        return True

    def adopt(self, specs: Sequence[JobSpec]) -> set[str]:
        """Keys of `specs` whose result is stored for their experiment, copying measurements
        made for another experiment (same key: same measurement). One transaction."""
        with self._write("look up cached results") as con:
            return {s.key for s in specs if self._copy_for(con, s)}

    # ---- jobs ----------------------------------------------------------------------------
    def enqueue(self, spec: JobSpec, *, priority: int = 0) -> EnqueueOutcome:
        return self.enqueue_many([spec], priority=priority)[0]

    def enqueue_many(self, specs: Sequence[JobSpec], *, priority: int = 0) -> list[EnqueueOutcome]:
        """Queue jobs, at most one active job per (result key, experiment); no job at all when
        the result is already stored. One transaction for the whole batch."""
        out: list[EnqueueOutcome] = []
        now = self.clock()
        with self._write(f"enqueue {len(specs)} job(s)") as con:
            for spec in specs:
                if self._copy_for(con, spec):
                    out.append(EnqueueOutcome(spec.key, "cached"))
                    continue
                row = con.execute(
                    "SELECT id, priority FROM jobs WHERE key=? AND experiment=? AND status IN ('queued','running')",
                    (spec.key, spec.experiment)).fetchone()
                if row is not None:
                    if priority > row["priority"]:
                        con.execute("UPDATE jobs SET priority=?, updated_at=? WHERE id=?",
                                    (priority, now, row["id"]))
                    out.append(EnqueueOutcome(spec.key, "existing", row["id"]))
                    continue
                cur = con.execute(
                    "INSERT INTO jobs(key, experiment, suite_ref, recipe_key, label, kind, spec, status, "
                    "priority, progress_msg, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,'queued',?,?,?,?)",
                    (spec.key, spec.experiment, spec.suite_ref, spec.point.recipe_key,
                     spec.point.label, spec.point.kind, spec.to_json(), priority, "queued", now, now))
                job_id = cur.lastrowid
                _event(con, job_id, now, "queued", None, None)
                out.append(EnqueueOutcome(spec.key, "queued", job_id))
        return out

    def claim(self, worker_id: str, *, lease_s: float = 60.0, max_attempts: int = 3,
              prefer_recipe: str | None = None) -> Job | None:
        """Take the next queued job (highest priority, oldest first; a job with the recipe the
        worker already has applied first). Jobs whose lease expired are requeued first."""
        now = self.clock()
        with self._write("claim a job") as con:
            self._expire(con, now, max_attempts)
            while True:
                row = None
                if prefer_recipe:
                    row = con.execute("SELECT * FROM jobs WHERE status='queued' AND recipe_key=? "
                                      "ORDER BY priority DESC, id LIMIT 1", (prefer_recipe,)).fetchone()
                    if row is not None:
                        top = con.execute("SELECT MAX(priority) FROM jobs WHERE status='queued'").fetchone()[0]
                        if top is not None and top > row["priority"]:
                            row = None
                if row is None:
                    row = con.execute("SELECT * FROM jobs WHERE status='queued' "
                                      "ORDER BY priority DESC, id LIMIT 1").fetchone()
                if row is None:
                    return None
                spec = JobSpec.from_json(row["spec"])
                if self._copy_for(con, spec):  # measured meanwhile (another experiment, cached_runs)
                    con.execute("UPDATE jobs SET status='done', finished_at=?, updated_at=?, "
                                "progress_msg='result already in the store' WHERE id=?",
                                (now, now, row["id"]))
                    _event(con, row["id"], now, "done", worker_id, "result already in the store")
                    continue
                lease = now + lease_s
                con.execute(
                    "UPDATE jobs SET status='running', worker=?, attempts=attempts+1, lease_expires=?, "
                    "heartbeat_at=?, started_at=?, updated_at=?, progress_done=0, progress_total=NULL, "
                    "progress_msg='claimed', error=NULL WHERE id=?",
                    (worker_id, lease, now, now, now, row["id"]))
                _event(con, row["id"], now, "running", worker_id,
                       f"attempt {row['attempts'] + 1}")
                return Job(id=row["id"], spec=spec, worker=worker_id,
                           attempts=row["attempts"] + 1, lease_expires=lease)

    def _expire(self, con: sqlite3.Connection, now: float, max_attempts: int) -> int:
        rows = con.execute("SELECT id, worker, attempts FROM jobs WHERE status='running' "
                           "AND lease_expires < ?", (now,)).fetchall()
        for r in rows:
            if r["attempts"] >= max_attempts:
                msg = (f"worker {r['worker']} stopped heartbeating (lease expired) on attempt "
                       f"{r['attempts']} of {max_attempts}; giving up. The job may crash its "
                       f"worker (out of memory?)")
                con.execute("UPDATE jobs SET status='failed', error=?, finished_at=?, updated_at=?, "
                            "lease_expires=NULL WHERE id=?", (msg, now, now, r["id"]))
                _event(con, r["id"], now, "failed", r["worker"], msg)
            else:
                msg = f"lease of worker {r['worker']} expired (worker gone?); back in the queue"
                con.execute("UPDATE jobs SET status='queued', worker=NULL, lease_expires=NULL, "
                            "updated_at=?, progress_msg=? WHERE id=?", (now, msg, r["id"]))
                _event(con, r["id"], now, "queued", r["worker"], msg)
        return len(rows)

    def requeue_expired(self, *, max_attempts: int = 3) -> int:
        """Requeue (or fail, after `max_attempts`) running jobs whose worker stopped heartbeating."""
        with self._write("requeue expired jobs") as con:
            return self._expire(con, self.clock(), max_attempts)

    def heartbeat(self, job_id: int, worker_id: str, *, lease_s: float = 60.0) -> bool:
        """Extend the lease. False when the job is no longer this worker's (lease lost)."""
        now = self.clock()
        with self._write("heartbeat") as con:
            cur = con.execute("UPDATE jobs SET lease_expires=?, heartbeat_at=?, updated_at=? "
                              "WHERE id=? AND worker=? AND status='running'",
                              (now + lease_s, now, now, job_id, worker_id))
            con.execute("UPDATE workers SET last_seen=? WHERE id=?", (now, worker_id))
            return cur.rowcount == 1

    def progress(self, job_id: int, worker_id: str, done: int | None, total: int | None,
                 message: str | None = None, *, lease_s: float | None = None) -> bool:
        now = self.clock()
        with self._write("record progress") as con:
            if lease_s is not None:
                cur = con.execute(
                    "UPDATE jobs SET progress_done=?, progress_total=?, progress_msg=?, heartbeat_at=?, "
                    "lease_expires=?, updated_at=? WHERE id=? AND worker=? AND status='running'",
                    (done, total, message, now, now + lease_s, now, job_id, worker_id))
            else:
                cur = con.execute(
                    "UPDATE jobs SET progress_done=?, progress_total=?, progress_msg=?, updated_at=? "
                    "WHERE id=? AND worker=? AND status='running'",
                    (done, total, message, now, job_id, worker_id))
            return cur.rowcount == 1

    def complete(self, job: Job, record: ResultRecord, details: Sequence[dict] | None = None) -> bool:
        """Store the result and mark the job done, in one transaction. The result is kept even
        when the job was meanwhile taken over by another worker (it is the same measurement);
        returns whether this worker still owned the job."""
        record.validate()
        now = self.clock()
        with self._write(f"write the result for {record.label!r} / {record.suite}") as con:
            self._insert_result(con, record, details)
            cur = con.execute(
                "UPDATE jobs SET status='done', finished_at=?, updated_at=?, lease_expires=NULL, "
                "progress_msg='done', error=NULL WHERE id=? AND worker=? AND status='running'",
                (now, now, job.id, job.worker))
            owned = cur.rowcount == 1
            _event(con, job.id, now, "done" if owned else "result", job.worker,
                   None if owned else "result written after the lease was lost")
            return owned

    def fail(self, job: Job, error: str) -> bool:
        now = self.clock()
        with self._write("record a job failure") as con:
            cur = con.execute(
                "UPDATE jobs SET status='failed', error=?, finished_at=?, updated_at=?, "
                "lease_expires=NULL, progress_msg='failed' WHERE id=? AND worker=? AND status='running'",
                (error, now, now, job.id, job.worker))
            if cur.rowcount:
                _event(con, job.id, now, "failed", job.worker, error[:2000])
            return cur.rowcount == 1

    def release(self, job: Job, reason: str = "worker stopped") -> bool:
        """Give a running job back to the queue at once (worker interrupted)."""
        now = self.clock()
        with self._write("release a job") as con:
            cur = con.execute(
                "UPDATE jobs SET status='queued', worker=NULL, lease_expires=NULL, updated_at=?, "
                "attempts=MAX(attempts-1, 0), progress_msg=? WHERE id=? AND worker=? AND status='running'",
                (now, reason, job.id, job.worker))
            if cur.rowcount:
                _event(con, job.id, now, "queued", job.worker, reason)
            return cur.rowcount == 1

    def cancel(self, *, job_ids: Sequence[int] | None = None, experiment: str | None = None) -> int:
        """Cancel queued jobs (running ones finish)."""
        now = self.clock()
        with self._write("cancel jobs") as con:
            q = "SELECT id FROM jobs WHERE status='queued'"
            args: list[Any] = []
            if experiment is not None:
                q += " AND experiment=?"
                args.append(experiment)
            ids = [r[0] for r in con.execute(q, args)]
            if job_ids is not None:
                ids = [i for i in ids if i in set(job_ids)]
            for i in ids:
                con.execute("UPDATE jobs SET status='cancelled', finished_at=?, updated_at=? WHERE id=?",
                            (now, now, i))
                _event(con, i, now, "cancelled", None, None)
            return len(ids)

    def retry_failed(self, *, experiment: str | None = None) -> int:
        """Queue failed jobs again (a new job each; the failed ones stay in the history)."""
        with self._use() as con:
            q = "SELECT spec, priority FROM jobs WHERE status='failed'"
            rows = con.execute(q + (" AND experiment=?" if experiment else ""),
                               (experiment,) if experiment else ()).fetchall()
        outs = self.enqueue_many([JobSpec.from_json(r["spec"]) for r in rows])
        return sum(o.status == "queued" for o in outs)

    def job(self, job_id: int) -> JobRow | None:
        with self._use() as con:
            row = con.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job_row(row, self.clock()) if row else None

    def job_spec(self, job_id: int) -> JobSpec | None:
        with self._use() as con:
            row = con.execute("SELECT spec FROM jobs WHERE id=?", (job_id,)).fetchone()
        return JobSpec.from_json(row[0]) if row else None

    def jobs(self, *, experiment: str | None = None, statuses: Sequence[str] | None = None,
             keys: Sequence[str] | None = None, limit: int = 500) -> list[JobRow]:
        """Newest first."""
        q, args = "SELECT * FROM jobs WHERE 1=1", []
        if experiment is not None:
            q += " AND experiment=?"
            args.append(experiment)
        if statuses:
            q += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        if keys is not None:
            keys = list(keys)[:900]
            q += f" AND key IN ({','.join('?' * len(keys))})" if keys else " AND 0"
            args += keys
        q += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        now = self.clock()
        with self._use() as con:
            return [_job_row(r, now) for r in con.execute(q, args)]

    def job_events(self, job_id: int) -> list[JobEvent]:
        with self._use() as con:
            rows = con.execute("SELECT * FROM job_events WHERE job_id=? ORDER BY id", (job_id,)).fetchall()
        return [JobEvent(r["job_id"], r["at"], r["status"], r["worker"], r["message"]) for r in rows]

    def queue_counts(self, experiment: str | None = None) -> dict[str, int]:
        q = "SELECT status, COUNT(*) FROM jobs"
        args: tuple = ()
        if experiment is not None:
            q += " WHERE experiment=?"
            args = (experiment,)
        with self._use() as con:
            counts = {r[0]: r[1] for r in con.execute(q + " GROUP BY status", args)}
        return {s: counts.get(s, 0) for s in ("queued", "running", "done", "failed", "cancelled")}

    # ---- workers -------------------------------------------------------------------------
    def worker_seen(self, worker_id: str, state: str, job_id: int | None = None,
                    extra: dict | None = None) -> None:
        now = self.clock()
        with self._write("record worker state") as con:
            con.execute(
                "INSERT INTO workers(id, host, pid, started_at, last_seen, state, job_id, extra) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET last_seen=excluded.last_seen, "
                "state=excluded.state, job_id=excluded.job_id, extra=excluded.extra",
                (worker_id, socket.gethostname(), os.getpid(), now, now, state, job_id,
                 json.dumps(extra or {})))

    def workers(self, *, seen_within_s: float | None = None) -> list[WorkerRow]:
        now = self.clock()
        with self._use() as con:
            rows = con.execute("SELECT * FROM workers ORDER BY last_seen DESC").fetchall()
        out = [WorkerRow(r["id"], r["host"], r["pid"], r["started_at"], r["last_seen"], r["state"],
                         r["job_id"], json.loads(r["extra"])) for r in rows]
        if seen_within_s is not None:
            out = [w for w in out if now - w.last_seen <= seen_within_s and w.state != "stopped"]
        return out

    # ---- cached_runs bookkeeping -----------------------------------------------------------
    def import_state(self, path: str) -> str | None:
        with self._use() as con:
            row = con.execute("SELECT sha256 FROM imports WHERE path=?", (path,)).fetchone()
        return row[0] if row else None

    def import_records(self, path: str, sha256: str, records: Sequence[ResultRecord]) -> int:
        """Insert a cached_runs file's records and remember its hash, in one transaction."""
        for r in records:
            r.validate()
        with self._write(f"import {path}") as con:
            new = sum(self._insert_result(con, r, None) for r in records)
            con.execute("INSERT INTO imports(path, sha256, records, imported_at) VALUES (?,?,?,?) "
                        "ON CONFLICT(path) DO UPDATE SET sha256=excluded.sha256, "
                        "records=excluded.records, imported_at=excluded.imported_at",
                        (path, sha256, len(records), self.clock()))
            return new


def _rollback(con: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if con.in_transaction:
            con.execute("ROLLBACK")


def _event(con: sqlite3.Connection, job_id: int, at: float, status: str, worker: str | None,
           message: str | None) -> None:
    con.execute("INSERT INTO job_events(job_id, at, status, worker, message) VALUES (?,?,?,?,?)",
                (job_id, at, status, worker, message))


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a store made by an older ptm_core up to this schema (idempotent)."""
    have = {r[1] for r in con.execute("PRAGMA table_info(results)")}
    if "intervals" not in have:  # schema 1: results had no intervals
        con.execute("ALTER TABLE results ADD COLUMN intervals TEXT NOT NULL DEFAULT '{}'")


def _record(row: sqlite3.Row) -> ResultRecord:
    d = {c: row[c] for c in _RESULT_COLUMNS}
    for c in _JSON_COLUMNS:
        d[c] = json.loads(d[c])
    d["heuristic"] = bool(d["heuristic"])
    # records stored before intervals existed get the ones their scores determine
    return ResultRecord(**d).with_derived_intervals()


def _job_row(r: sqlite3.Row, now: float) -> JobRow:
    return JobRow(
        id=r["id"], key=r["key"], experiment=r["experiment"], label=r["label"], kind=r["kind"],
        suite_ref=r["suite_ref"], status=r["status"], priority=r["priority"], worker=r["worker"],
        attempts=r["attempts"], created_at=r["created_at"], started_at=r["started_at"],
        finished_at=r["finished_at"], heartbeat_at=r["heartbeat_at"],
        lease_expires=r["lease_expires"], progress_done=r["progress_done"],
        progress_total=r["progress_total"], progress_msg=r["progress_msg"], error=r["error"],
        stale=r["status"] == "running" and r["lease_expires"] is not None and r["lease_expires"] < now,
    )
