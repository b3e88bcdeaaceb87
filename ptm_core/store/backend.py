"""What a store backend provides to `ResultsTable` and `JobQueue`: one contract, two
implementations (`sqlite.py`, `postgres.py`).

A backend gives
- `_write(doing)`: one short write transaction (a context manager yielding a connection);
  on any error it rolls back and nothing of it is visible;
- `_read()`: a consistent snapshot for multi-statement reads; `_use()`: single reads;
- connections whose `execute(sql, params)` takes `?` placeholders and returns a cursor whose
  rows are read by position or by column name (`fetchone`, `fetchall`, iteration, `rowcount`);
- `sql`: the statements whose dialects differ (`Dialect`); everything else is shared SQL;
- `path` (where the store is, for messages; a URL without its password), `clock`, `close()`,
  `check()` ('ok' when sound).

A backend raises `StoreError` for what the user must fix and `StoreUnavailable` when the
database could not be reached mid-operation (the server restarted): the transaction did not
commit, or its outcome is unknown; `retried` calls the whole operation again, which every
operation is written to allow (first write wins; state changes check ownership).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Protocol, TypeVar

from ptm_core.errors import PTMError

F = TypeVar("F", bound=Callable[..., Any])


class StoreError(PTMError):
    """The store cannot be read or written (disk full, locked too long, newer schema...)."""


class StoreUnavailable(StoreError):
    """The database server went away during an operation (nothing of it is assumed written)."""


class Dialect(Protocol):
    """The statements that differ between backends."""

    def insert_result(self, columns: tuple[str, ...], replace: bool) -> str:
        """Insert one results row; without `replace` an existing (key, experiment) is kept."""

    insert_details: str  # upsert of result_details(key, details)
    results_version: str  # COUNT, a value that changes on every insert or replace, MAX(created_at)
    skip_locked: str  # appended to SELECTs of rows a claim will update ('' where writes serialize)


def retried(fn: F) -> F:
    """Run a store operation again while its backend reports the server unavailable, for up
    to the store's `reconnect_s` (then the last StoreUnavailable is raised)."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kw):
        deadline = None
        delay = 0.05
        while True:
            try:
                return fn(self, *args, **kw)
            except StoreUnavailable:
                now = time.monotonic()
                deadline = deadline or now + getattr(self, "reconnect_s", 0.0)
                if now >= deadline:
                    raise
                time.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, 1.0)

    return wrapper  # type: ignore[return-value]
