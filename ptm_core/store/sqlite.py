"""The store's SQLite backend (see backend.py): connections, transactions, the schema (the
tables are described here; `ResultsTable` and `JobQueue` read and write them).

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
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Callable, Iterator

from ptm_core.store.backend import StoreError

SCHEMA_VERSION = 3  # 2: results.intervals; 3: workers.engine, jobs_done, jobs_failed
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
    extra TEXT NOT NULL DEFAULT '{}',
    engine TEXT,
    jobs_done INTEGER NOT NULL DEFAULT 0,
    jobs_failed INTEGER NOT NULL DEFAULT 0
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


class SQLiteSQL:
    """SQLite's side of the statements whose dialects differ (backend.Dialect)."""

    def insert_result(self, columns: tuple[str, ...], replace: bool) -> str:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        return f"{verb} INTO results({','.join(columns)}) VALUES ({','.join('?' * len(columns))})"

    insert_details = "INSERT OR REPLACE INTO result_details(key, details) VALUES (?, ?)"
    results_version = "COUNT(*), MAX(rowid), MAX(created_at)"  # a replace is a new rowid
    skip_locked = ""  # BEGIN IMMEDIATE: one writer at a time, nothing to skip


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


class SQLiteFile:
    """One SQLite file in WAL mode: a connection per thread, short write transactions, the
    schema created or checked on open. `clock` (seconds since the epoch) is injectable so
    tests can expire leases without sleeping."""

    sql = SQLiteSQL()
    reconnect_s = 0.0  # a file does not go away and come back

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path).expanduser()
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


def _rollback(con: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if con.in_transaction:
            con.execute("ROLLBACK")


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a store made by an older ptm_core up to this schema (idempotent)."""
    have = {r[1] for r in con.execute("PRAGMA table_info(results)")}
    if "intervals" not in have:  # schema 1: results had no intervals
        con.execute("ALTER TABLE results ADD COLUMN intervals TEXT NOT NULL DEFAULT '{}'")
    have = {r[1] for r in con.execute("PRAGMA table_info(workers)")}
    for column, decl in _WORKER_COLUMNS_3:  # schema 2: workers had no engine or counts
        if column not in have:
            con.execute(f"ALTER TABLE workers ADD COLUMN {column} {decl}")


# added to `workers` by schema 3 (a column with a constant default: ALTER TABLE rewrites nothing)
_WORKER_COLUMNS_3 = (("engine", "TEXT"), ("jobs_done", "INTEGER NOT NULL DEFAULT 0"),
                     ("jobs_failed", "INTEGER NOT NULL DEFAULT 0"))
