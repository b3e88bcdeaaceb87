"""Full-content sha256 of a file, computed once and remembered while the file is unchanged.

A checkpoint's cache identity must change with an edit anywhere in it, so every byte is hashed
(a sample of blocks misses an edit between them). The digest is remembered in a small JSON file
keyed by the path and the file's (size, mtime_ns, ctime_ns, inode, device): ctime cannot be set
from user space, so an edit that restores the old mtime still changes the key. The cache is an
optimisation only: when it is missing, damaged or unwritable, the file is simply hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

from ptm_core import safe_json
from ptm_core.atomic import write_text

_CHUNK = 1 << 20
_MAX_ENTRIES = 4096
_MAX_CACHE_BYTES = 4 << 20


def cache_path() -> Path:
    """$PTM_CACHE_DIR/file-hashes.json, else the user's cache dir ($XDG_CACHE_HOME or ~/.cache)."""
    base = os.environ.get("PTM_CACHE_DIR")
    if base:
        return Path(base).expanduser() / "file-hashes.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "ptm" / "file-hashes.json"


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = safe_json.loads(f.read(_MAX_CACHE_BYTES + 1), max_depth=4,
                                   max_bytes=_MAX_CACHE_BYTES)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _valid(entry: object) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("stamp"), list)
            and isinstance(entry.get("sha256"), str) and isinstance(entry.get("used"), (int, float)))


def _remember(key: str, stamp: list[int], digest: str) -> None:
    path = cache_path()
    entries = {k: v for k, v in _load(path).items() if _valid(v)}  # re-read: keep others' work
    entries[key] = {"stamp": stamp, "sha256": digest, "used": time.time()}
    if len(entries) > _MAX_ENTRIES:  # drop the least recently used
        keep = sorted(entries, key=lambda k: entries[k]["used"])[-_MAX_ENTRIES:]
        entries = {k: entries[k] for k in keep}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(entries, separators=(",", ":")))
    except OSError:
        pass  # read-only home: hash again next time


def _hash_stream(f) -> str:  # noqa: ANN001 - a binary file object
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's bytes (read once per change of the file; see module doc)."""
    key = str(Path(path).resolve())
    fd = os.open(key, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block: refused below
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{key} is not a regular file")
        before = _stamp(st)
        entry = _load(cache_path()).get(key)
        if _valid(entry) and entry["stamp"] == before:
            return entry["sha256"]
        digest = _hash_stream(f)
        after = _stamp(os.fstat(f.fileno()))
    if after == before:  # not written to while we read it: safe to remember
        _remember(key, before, digest)
    return digest
