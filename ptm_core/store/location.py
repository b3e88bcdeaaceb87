"""Where the store is: `--store` / `$PTM_STORE` is a file path (SQLite) or a
`postgresql://` URL. Anything else that looks like a URL is refused here, before a stray
SQLite file named after it could be created."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ptm_core.store.backend import StoreError

POSTGRES_SCHEMES = ("postgresql", "postgres")  # libpq accepts both
# "scheme:" at the start: a URL, or a typo of one (`postgres:/x`); a file whose name has a
# colon in its first component is written ./name:with:colons
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def is_postgres_url(location: str | os.PathLike) -> bool:
    return isinstance(location, str) and parse_location(location) == location


def parse_location(value: str | os.PathLike) -> Path | str:
    """A Path for a SQLite file, the URL (a str) for PostgreSQL; StoreError otherwise."""
    if isinstance(value, Path):
        return value.expanduser()
    text = os.fspath(value)
    m = _SCHEME.match(text)
    if m is None:
        return Path(text).expanduser()
    scheme = m.group(1).lower()
    if scheme in POSTGRES_SCHEMES and text[m.end():].startswith("//"):
        return text
    raise StoreError(
        f"store {redact(text)!r} is neither a file path nor a supported URL: use a path to a "
        f"SQLite file, or postgresql://USER@HOST:PORT/DATABASE (schemes: "
        f"{', '.join(s + '://' for s in POSTGRES_SCHEMES)}); a file whose name starts with "
        "'NAME:' is written ./NAME:...")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def for_environment(value: str) -> str:
    """What a launcher puts into $PTM_STORE for its children: an absolute path, or the URL."""
    loc = parse_location(value)
    return str(loc.resolve()) if isinstance(loc, Path) else loc
