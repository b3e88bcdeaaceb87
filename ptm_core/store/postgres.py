"""The store's PostgreSQL backend (see backend.py), through psycopg 3.

What the contract rests on here (docs/store.md):
- Every write is one transaction (READ COMMITTED); the shared SQL checks the state it expects
  in every UPDATE, so two writers racing for a row change it once.
- Claims lock the row they take with SELECT ... FOR UPDATE SKIP LOCKED: two workers never take
  the same job and never wait on each other's claim.
- One active job per (key, experiment): the same partial unique index as SQLite; enqueue's
  INSERT ... ON CONFLICT DO NOTHING makes the loser of a race find the winner's job.
- First write wins: INSERT ... ON CONFLICT (key, experiment) DO NOTHING.
- A connection per thread and process (psycopg connections are not shared across a fork);
  one that broke (server restarted) is replaced on the next operation, and the operation is
  run again (`retried`) for up to `reconnect_s`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from typing import Any, Callable, Iterator, Sequence

from ptm_core.store.backend import StoreError, StoreUnavailable, retried
from ptm_core.store.location import redact

SCHEMA_VERSION = 3  # same tables and meaning as the SQLite schema of this version
_SCHEMA_LOCK = 0x70746D  # advisory lock: two processes opening a new database at once
_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE SEQUENCE IF NOT EXISTS results_rev;
CREATE TABLE IF NOT EXISTS results (
    key TEXT NOT NULL,
    experiment TEXT NOT NULL,
    point_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    skills TEXT NOT NULL,
    omega TEXT,
    label TEXT NOT NULL,
    data_size BIGINT,
    train_steps BIGINT,
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
    wall_s DOUBLE PRECISION,
    swap_s DOUBLE PRECISION,
    engine TEXT NOT NULL,
    versions TEXT NOT NULL,
    sampling TEXT NOT NULL,
    fingerprints TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL,
    intervals TEXT NOT NULL DEFAULT '{}',
    rev BIGINT NOT NULL DEFAULT nextval('results_rev'),
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
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id BIGSERIAL PRIMARY KEY,
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
    lease_expires DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION,
    progress_done BIGINT,
    progress_total BIGINT,
    progress_msg TEXT,
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active ON jobs(key, experiment)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, priority DESC, id);
CREATE INDEX IF NOT EXISTS jobs_by_experiment ON jobs(experiment, id);
CREATE TABLE IF NOT EXISTS job_events (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,
    worker TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events(job_id, id);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    job_id BIGINT,
    extra TEXT NOT NULL DEFAULT '{}',
    engine TEXT,
    jobs_done BIGINT NOT NULL DEFAULT 0,
    jobs_failed BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS imports (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    records INTEGER NOT NULL,
    imported_at DOUBLE PRECISION NOT NULL
)
"""

# A database made by an older ptm_core, brought up to this schema (idempotent; a column with a
# constant default rewrites no rows). Run under the schema's advisory lock, once.
_MIGRATIONS = (
    # 2 -> 3: workers record their engine and how many jobs they finished
    "ALTER TABLE workers ADD COLUMN IF NOT EXISTS engine TEXT",
    "ALTER TABLE workers ADD COLUMN IF NOT EXISTS jobs_done BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE workers ADD COLUMN IF NOT EXISTS jobs_failed BIGINT NOT NULL DEFAULT 0",
)


class PostgresSQL:
    """PostgreSQL's side of the statements whose dialects differ (backend.Dialect)."""

    def insert_result(self, columns: tuple[str, ...], replace: bool) -> str:
        head = (f"INSERT INTO results({','.join(columns)}) VALUES ({','.join('?' * len(columns))}) "
                "ON CONFLICT (key, experiment) ")
        if not replace:
            return head + "DO NOTHING"
        sets = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in ("key", "experiment"))
        return head + f"DO UPDATE SET {sets}, rev=nextval('results_rev')"

    insert_details = ("INSERT INTO result_details(key, details) VALUES (?, ?) "
                      "ON CONFLICT (key) DO UPDATE SET details=excluded.details")
    results_version = "COUNT(*), MAX(rev), MAX(created_at)"  # rev: a new value on every write
    skip_locked = " FOR UPDATE SKIP LOCKED"


class _Row(tuple):
    """A row readable by position and by column name, like sqlite3.Row."""

    __slots__ = ()
    names: dict[str, int] = {}

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, str):
            return tuple.__getitem__(self, self.names[i])
        return tuple.__getitem__(self, i)

    def keys(self) -> list[str]:
        return list(self.names)


_ROW_TYPES: dict[tuple[str, ...], type] = {}


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    cols = tuple(c.name for c in cursor.description or ())
    row_type = _ROW_TYPES.get(cols)
    if row_type is None:  # one class per column list (a handful in all)
        names = {c: i for i, c in enumerate(cols)}
        row_type = _ROW_TYPES.setdefault(cols, type("Row", (_Row,), {"__slots__": (), "names": names}))
    return row_type


class _Connection:
    """A psycopg connection that takes the shared SQL's `?` placeholders."""

    def __init__(self, con: Any):
        self.raw = con
        self.pid = os.getpid()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # the shared SQL has no literal '%' or '?' besides placeholders
        return self.raw.execute(sql.replace("?", "%s"), list(params) if params else None)


class PostgresDB:
    """A PostgreSQL database: a connection per thread, short write transactions, the schema
    created or checked on open. `clock` (seconds since the epoch) is injectable so tests can
    expire leases without sleeping."""

    sql = PostgresSQL()

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.time, reconnect_s: float = 60.0,
                 connect_timeout_s: float = 10.0):
        try:
            import psycopg  # noqa: F401 - the driver is needed only for this backend
        except ImportError:
            raise StoreError(f"store {redact(url)}: PostgreSQL needs the psycopg driver: "
                             "pip install 'psycopg[binary]' (it is in requirements.txt)") from None
        self.url = url
        self.path = redact(url)  # what messages and logs name
        self.busy_timeout_s = busy_timeout_s
        self.clock = clock
        self.reconnect_s = reconnect_s
        self.connect_timeout_s = connect_timeout_s
        self._local = threading.local()
        self._all: weakref.WeakSet = weakref.WeakSet()
        self._all_lock = threading.Lock()
        self._init_schema()

    # ---- connections -----------------------------------------------------------------------
    def _connect(self) -> _Connection:
        """This thread's connection: opened once, replaced after a fork or when it broke."""
        import psycopg

        local = self._local
        con = getattr(local, "con", None)
        if con is not None and con.pid == os.getpid() and not con.raw.closed and not con.raw.broken:
            return con
        try:
            raw = psycopg.connect(self.url, autocommit=True, row_factory=_row_factory,
                                  connect_timeout=max(1, int(self.connect_timeout_s)),
                                  options=f"-c lock_timeout={int(self.busy_timeout_s * 1000)}")
        except psycopg.OperationalError as e:
            msg = str(e)
            # refused for good (no such database or role, bad password): no point waiting
            if any(w in msg for w in ("does not exist", "authentication failed", "no password")):
                remedy = (" (create the database first, e.g. `createdb NAME` on the server)"
                          if "database" in msg else " (check the user and password in the URL)")
                raise StoreError(f"store {self.path}: could not connect: {msg.strip()}{remedy}") from None
            raise self._explain(e, "connect") from None
        con = _Connection(raw)
        local.con = con
        with self._all_lock:
            self._all.add(con)
        return con

    def close(self) -> None:
        """Close the connections this Store opened in this process (a forked child leaves its
        parent's alone: closing one would end the parent's session)."""
        with self._all_lock:
            for con in list(self._all):
                if con.pid == os.getpid():
                    with contextlib.suppress(Exception):
                        con.raw.close()
            self._all.clear()
        self._local = threading.local()

    def _explain(self, e: Exception, doing: str) -> StoreError:
        import psycopg
        from psycopg import errors

        msg = str(e).strip()
        transient = (isinstance(e, (errors.SerializationFailure, errors.DeadlockDetected,
                                    errors.AdminShutdown, errors.CannotConnectNow))
                     or (isinstance(e, psycopg.OperationalError)
                         and not isinstance(e, (errors.InsufficientPrivilege, errors.LockNotAvailable,
                                                errors.DiskFull, errors.InvalidCatalogName,
                                                errors.InvalidPassword,
                                                errors.InvalidAuthorizationSpecification))))
        if transient:
            return StoreUnavailable(f"store {self.path}: could not {doing}: {msg} (is the "
                                    "PostgreSQL server up and reachable?)")
        remedy = ""
        if isinstance(e, errors.DiskFull):
            remedy = " (free some disk space on the database server; nothing of this write was kept)"
        elif isinstance(e, errors.LockNotAvailable):
            remedy = " (another client held a lock for too long; try again)"
        elif isinstance(e, errors.InvalidCatalogName):
            remedy = " (create the database first, e.g. `createdb NAME` on the server)"
        return StoreError(f"store {self.path}: could not {doing}: {msg}{remedy}")

    def _broken(self, con: _Connection) -> None:
        """Free a connection that broke mid-operation (`_connect` opens another next time)."""
        if con.raw.broken:
            with contextlib.suppress(Exception):
                con.raw.close()

    # ---- transactions ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[_Connection]:
        import psycopg

        con = self._connect()
        try:
            with con.raw.transaction():
                yield con
        except psycopg.Error as e:
            self._broken(con)
            raise self._explain(e, doing) from e

    def _write(self, doing: str):
        """One short write transaction; any error rolls it back."""
        return self._transaction(doing)

    def _read(self):
        """A consistent snapshot for multi-statement reads (REPEATABLE READ)."""
        return self._snapshot()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[_Connection]:
        with self._transaction("read") as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield con

    @contextlib.contextmanager
    def _use(self) -> Iterator[_Connection]:
        import psycopg

        con = self._connect()
        try:
            yield con
        except psycopg.Error as e:
            self._broken(con)
            raise self._explain(e, "read") from e

    # ---- schema ----------------------------------------------------------------------------
    def _init_schema(self) -> None:
        retried(PostgresDB._create_schema)(self)  # a server that is still starting: wait for it

    def _create_schema(self) -> None:
        with self._write("create the schema") as con:
            con.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
            con.execute("CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, "
                        "value TEXT NOT NULL)")
            row = con.execute("SELECT value FROM store_meta WHERE name='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema version {version}, newer than "
                                 f"this ptm_core understands ({SCHEMA_VERSION}); upgrade ptm_core")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            if 0 < version < SCHEMA_VERSION:  # only then: ALTER TABLE locks the table whole
                for stmt in _MIGRATIONS:
                    con.execute(stmt)
            con.execute("INSERT INTO store_meta(name, value) VALUES ('schema_version', ?) "
                        "ON CONFLICT (name) DO UPDATE SET value=excluded.value",
                        (str(SCHEMA_VERSION),))

    def check(self) -> str:
        """'ok' when the schema is this ptm_core's and every job's state is consistent."""
        with self._use() as con:
            row = con.execute("SELECT value FROM store_meta WHERE name='schema_version'").fetchone()
            bad = con.execute("SELECT COUNT(*) FROM jobs WHERE status='running' AND worker IS NULL"
                              ).fetchone()[0]
        problems = []
        if row is None or int(row[0]) != SCHEMA_VERSION:
            problems.append(f"schema version {row[0] if row else None}, expected {SCHEMA_VERSION}")
        if bad:
            problems.append(f"{bad} running job(s) without a worker")
        return "\n".join(problems) or "ok"
