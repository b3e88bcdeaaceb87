"""Read prompt sets from CSV, JSONL or JSON files, with errors that name the file and column."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Sequence

from ptm_core.errors import PTMError


def read_records(path: str | Path, required: Sequence[str] = ("prompt",)) -> list[dict]:
    """Rows of a .csv (header row), .jsonl (one object a line) or .json (a list of objects)
    file; every row must have a non-empty value in each `required` column."""
    path = Path(path)
    if not path.is_file():
        raise PTMError(f"prompt file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        elif suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise PTMError(f"prompt file {path}: unknown format {suffix!r} (use .csv, .jsonl or .json)")
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as e:
        raise PTMError(f"prompt file {path} cannot be parsed: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PTMError(f"prompt file {path} must hold a list of records (objects / CSV rows)")
    if not rows:
        raise PTMError(f"prompt file {path} holds no records")
    for column in required:
        if column not in rows[0]:
            have = ", ".join(map(repr, rows[0])) or "none"
            raise PTMError(f"prompt file {path} has no column {column!r} (columns: {have})")
        for i, row in enumerate(rows):
            if row.get(column) in (None, ""):
                raise PTMError(f"prompt file {path}, record {i + 1}: column {column!r} is empty")
    return rows


def file_digest(path: str | Path) -> str:
    """Short content hash: part of a file-based suite's version, so edits invalidate caches."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
