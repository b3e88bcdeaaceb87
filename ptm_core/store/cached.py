"""Shipped results: `cached_runs/<experiment>.jsonl`, one result record per line.

The format (described for users in cached_runs/README.md):
- UTF-8 JSON Lines; each line one object with `"format": "ptm-result/1"` and the fields of
  `ResultRecord` (key, experiment, kind, skills, omega, label, metrics, counts, ...).
- Keys sorted within a line and lines sorted by (kind, skills, omega, label, suite, key), so a
  re-export of the same results is byte-identical and a new point is a one-line diff.
- Per-item outputs (`details`) are not exported.

Import is idempotent: each file's sha256 is remembered, unchanged files are skipped, and records
whose (key, experiment) is already stored are left alone. A malformed line stops the import of
that file (nothing of it is written) with an error naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ptm_core.atomic import write_text
from ptm_core.errors import PTMError
from ptm_core.store.current import (  # noqa: F401 - is_current: re-exported
    CurrentModels, Fingerprints, current_records, is_current,
)
from ptm_core.store.records import RECORD_FORMAT, RecordError, ResultRecord

SUFFIX = ".jsonl"


class CachedRunsError(PTMError):
    """A cached_runs file is malformed (the message names the file and line)."""


@dataclass
class ImportReport:
    files: list[str] = field(default_factory=list)  # imported (new or changed)
    skipped: list[str] = field(default_factory=list)  # unchanged since the last import
    new_records: int = 0
    errors: list[str] = field(default_factory=list)


def _sort_key(r: ResultRecord) -> tuple:
    return (r.kind, r.skills, r.omega or "", r.label, r.suite, r.suite_version, r.key)


def dumps_records(records: Sequence[ResultRecord]) -> str:
    lines = []
    for r in sorted(records, key=_sort_key):
        d: dict[str, Any] = {"format": RECORD_FORMAT, **r.to_dict()}
        d["source"] = "cached"
        lines.append(json.dumps(d, sort_keys=True, ensure_ascii=False, allow_nan=False))
    return "".join(line + "\n" for line in lines)


def loads_records(text: str, source: str = "<cached_runs>") -> list[ResultRecord]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise CachedRunsError(f"{source}:{i}: not valid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(d, dict):
            raise CachedRunsError(f"{source}:{i}: expected a JSON object")
        fmt = d.get("format")
        if fmt != RECORD_FORMAT:
            raise CachedRunsError(f"{source}:{i}: unknown format {fmt!r} (expected {RECORD_FORMAT!r})")
        try:
            rec = ResultRecord.from_dict(d)
        except (RecordError, TypeError) as e:
            raise CachedRunsError(f"{source}:{i}: {e}") from None
        rec.source = "cached"
        out.append(rec)
    return out


def export_experiment(store: Any, experiment: str, directory: str | os.PathLike,
                      engine: str | None = None,
                      fingerprints: Fingerprints | CurrentModels | None = None) -> Path:
    """Write the store's results for one experiment to DIR/<experiment>.jsonl, atomically.
    `engine` (an engine key, e.g. "vllm:dtype=float32") keeps only that engine's results, and
    `fingerprints` (the models as they are now: `merge.fingerprint.current_fingerprints`)
    drops results of models rebuilt since (store/current.py), so earlier measurements are not
    shipped beside the current ones; models it does not name are not checked."""
    records = store.results(experiment)
    if engine is not None:
        records = [r for r in records if r.engine == engine]
    records = current_records(records, fingerprints).current
    if not records:
        which = f" from engine {engine!r}" if engine is not None else ""
        raise CachedRunsError(f"store {store.path} has no results{which} for experiment "
                              f"{experiment!r}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{experiment}{SUFFIX}"
    write_text(path, dumps_records(records))
    return path


def import_file(store: Any, path: str | os.PathLike, *, force: bool = False) -> int | None:
    """Import one file; None when it is unchanged since the last import."""
    p = Path(path)
    data = p.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    ident = str(p.resolve())
    if not force and store.import_state(ident) == sha:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CachedRunsError(f"{p}: not UTF-8: {e}") from None
    records = loads_records(text, str(p))
    return store.import_records(ident, sha, records)


def import_cached(store: Any, directory: str | os.PathLike, *, strict: bool = False) -> ImportReport:
    """Import every *.jsonl under `directory` (missing directory: nothing to do). A bad file is
    reported in `errors` (or raised with `strict`) and the others still load."""
    rep = ImportReport()
    d = Path(directory)
    if not d.is_dir():
        return rep
    for p in sorted(d.glob(f"*{SUFFIX}")):
        try:
            n = import_file(store, p)
        except CachedRunsError as e:
            if strict:
                raise
            rep.errors.append(str(e))
            continue
        if n is None:
            rep.skipped.append(p.name)
        else:
            rep.files.append(p.name)
            rep.new_records += n
    return rep
