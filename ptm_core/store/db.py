"""The results store and job queue shared by the app and the workers: a SQLite file (the
default, no server) or a PostgreSQL database (`--store postgresql://...`, for workers on
several machines).

`Store` is a backend (`sqlite.py` or `postgres.py`, one contract: `backend.py`) with its
results tables (`results_table.py`) and its job queue (`queue.py`). `Store(location)` picks the
backend from the location (`location.py`).

The concurrency rules are in the backends' modules (and docs/store.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ptm_core.store.backend import StoreError, StoreUnavailable  # noqa: F401 - re-exported
from ptm_core.store.location import parse_location
from ptm_core.store.postgres import PostgresDB  # psycopg is imported only when one is opened
from ptm_core.store.queue import JobQueue
from ptm_core.store.results_table import ResultsTable
from ptm_core.store.sqlite import SCHEMA_VERSION, SQLiteFile  # noqa: F401 - re-exported


def default_store_path() -> Path | str:
    """$PTM_STORE (a path, or a postgresql:// URL), else .ptm/store.sqlite at the repository root."""
    env = os.environ.get("PTM_STORE")
    if env:
        return parse_location(env)
    return Path(__file__).resolve().parents[2] / ".ptm" / "store.sqlite"


def default_cached_dir() -> Path:
    env = os.environ.get("PTM_CACHED_RUNS")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "cached_runs"


def _import_cached(store: Any, cached_dir: str | os.PathLike | None) -> None:
    store.import_report = None  # cached_runs import result (errors are shown by the app)
    if cached_dir is not None:
        from ptm_core.store.cached import import_cached
        store.import_report = import_cached(store, cached_dir)


class Store(JobQueue, ResultsTable, SQLiteFile):
    """Results, jobs, experiments and workers in one SQLite file, or (given a postgresql://
    URL) a `PostgresStore` with the same contract.

    `clock` (seconds since the epoch) is injectable so tests can expire leases without
    sleeping. With `cached_dir`, shipped results there are imported (idempotently) on open.
    """

    def __new__(cls, path: str | os.PathLike | None = None, **kw: Any):
        location = parse_location(path if path is not None else default_store_path())
        if cls is Store and isinstance(location, str):
            # not a Store subclass, so Python does not run Store.__init__ on it as well
            return PostgresStore(location, **kw)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike | None = None, *, busy_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.time,
                 cached_dir: str | os.PathLike | None = None):
        super().__init__(parse_location(path if path is not None else default_store_path()),
                         busy_timeout_s=busy_timeout_s, clock=clock)
        _import_cached(self, cached_dir)

    @classmethod
    def open_default(cls, **kw: Any) -> "Store":
        """The store the app and the CLI share, with cached_runs/ imported."""
        kw.setdefault("cached_dir", default_cached_dir())
        return cls(default_store_path(), **kw)


class PostgresStore(JobQueue, ResultsTable, PostgresDB):
    """The same store on a PostgreSQL database (URL: postgresql://USER@HOST:PORT/DATABASE)."""

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.time,
                 cached_dir: str | os.PathLike | None = None, reconnect_s: float = 60.0):
        super().__init__(url, busy_timeout_s=busy_timeout_s, clock=clock, reconnect_s=reconnect_s)
        _import_cached(self, cached_dir)
