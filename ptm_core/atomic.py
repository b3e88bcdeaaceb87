"""Atomic outputs: write to a temporary sibling, then rename, so readers never see half a file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _writer_pid(name: str, marker: str) -> int | None:
    """The pid in a staging name ".<final>.partial-<pid>-<random>" (marker "partial" / "old")."""
    try:
        return int(name.rsplit(f".{marker}-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def _is_stale(pid: int | None) -> bool:
    return pid is not None and pid != os.getpid() and not _pid_alive(pid)


def remove_stale_partials(final: Path) -> list[Path]:
    """Clean up after a writer of `final` that was killed (SIGKILL, power loss: no cleanup ran).

    Staging names carry the writer's pid; live writers are left alone. A half-written
    ".partial-" directory is removed. An ".old-" directory means the writer died while
    replacing `final`: if `final` is missing, the previous version is put back, since the
    new one was never known to be complete."""
    removed = []
    for p in final.parent.glob(f".{glob_escape(final.name)}.old-*"):
        if _is_stale(_writer_pid(p.name, "old")):
            if not final.exists() and (p / "x").exists():
                os.replace(p / "x", final)
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for p in final.parent.glob(f".{glob_escape(final.name)}.partial-*"):
        if _is_stale(_writer_pid(p.name, "partial")):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def remove_stale_partials_in(directory: Path) -> list[Path]:
    """`remove_stale_partials` for every output in `directory` that a killed writer left."""
    finals = {p.name[1:].rsplit(marker, 1)[0]
              for marker in (".partial-", ".old-")
              for p in Path(directory).glob(f".*{marker}*")}
    return [r for name in sorted(finals) for r in remove_stale_partials(Path(directory) / name)]


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def staging_dir(final: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside `final`; on success it replaces `final`.

    On any exception (including KeyboardInterrupt) the temporary directory is removed and
    `final` is left exactly as it was. Temporary directories of killed writers are removed
    first.
    """
    final = Path(final)
    if final.is_symlink():  # replacing it would swap the link, not what it points to: refuse
        raise FileExistsError(f"{final} is a symbolic link; refusing to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            if not force:
                raise FileExistsError(f"{final} already exists")
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-",
                                        dir=final.parent))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
