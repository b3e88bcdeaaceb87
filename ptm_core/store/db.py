"""The results store and job queue: one SQLite file shared by the app and the workers.

`Store` is the file (`sqlite.py`), its results tables (`results_table.py`) and its job queue
(`queue.py`).

The concurrency rules are in `sqlite.py` (and docs/store.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ptm_core.store.queue import JobQueue
from ptm_core.store.results_table import ResultsTable
from ptm_core.store.sqlite import SCHEMA_VERSION, SQLiteFile, StoreError  # noqa: F401 - re-exported


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


class Store(JobQueue, ResultsTable, SQLiteFile):
    """Results, jobs, experiments and workers in one SQLite file.

    `clock` (seconds since the epoch) is injectable so tests can expire leases without
    sleeping. With `cached_dir`, shipped results there are imported (idempotently) on open.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, busy_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.time,
                 cached_dir: str | os.PathLike | None = None):
        super().__init__(path if path is not None else default_store_path(),
                         busy_timeout_s=busy_timeout_s, clock=clock)
        self.import_report = None  # cached_runs import result (errors are shown by the app)
        if cached_dir is not None:
            from ptm_core.store.cached import import_cached
            self.import_report = import_cached(self, cached_dir)

    @classmethod
    def open_default(cls, **kw: Any) -> "Store":
        """The store the app and the CLI share, with cached_runs/ imported."""
        kw.setdefault("cached_dir", default_cached_dir())
        return cls(default_store_path(), **kw)
