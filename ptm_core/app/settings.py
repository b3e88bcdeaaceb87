"""Where the app looks and writes: the settings read from the environment, and the checks that
keep user-given paths (experiment files, export names) inside the configured directories."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ptm_core.app.errors import AppDataError

REPO = Path(__file__).resolve().parents[2]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


# Shipped worlds the picker offers by name besides the lab: name -> (label, experiment file in
# the repository, the command that materializes its checkpoints).
WORLDS: dict[str, tuple[str, str, str]] = {
    "smollm2": ("SmolLM2-135M: a real model", "data/smollm2/smollm2.yml",
                "python -m ptm_core smollm2 materialize"),
}


def world_file(name: str) -> Path | None:
    """The experiment file of a shipped world, when this checkout has it."""
    path = REPO / WORLDS[name][1]
    return path if path.is_file() else None


# --- settings --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    root: Path  # experiment files and result CSVs must lie under one of `roots`
    roots: tuple[Path, ...]
    export_dir: Path
    lab: Path | None  # the lab's experiment file
    store_path: Path | str | None  # a file or a postgresql:// URL; None: the store's default
    default_experiment: str
    zip_limit_bytes: int
    worker_stale_s: float
    # an uncached point is measured on this many items of each suite first (0: full only)
    live_subsample: int = 10


def settings() -> Settings:
    """Read from the environment on every call (cheap), so tests can change it."""
    env = os.environ
    root = Path(env.get("PTM_APP_ROOT", REPO)).expanduser().resolve()
    extra = [Path(p).expanduser().resolve() for p in env.get("PTM_APP_ROOTS", "").split(os.pathsep) if p]
    from ptm_core.lab.experiment import find_lab_experiment
    lab_path = find_lab_experiment()
    return Settings(
        root=root,
        roots=tuple(dict.fromkeys([root, *extra])),
        export_dir=Path(env.get("PTM_EXPORT_DIR", REPO / "exports")).expanduser().resolve(),
        lab=lab_path,
        store_path=_store_location(env.get("PTM_STORE")),
        default_experiment=env.get("PTM_APP_EXPERIMENT", "lab"),
        zip_limit_bytes=int(float(env.get("PTM_ZIP_LIMIT_MB", "200")) * 1024 * 1024),
        worker_stale_s=float(env.get("PTM_WORKER_STALE_S", "30")),
        live_subsample=_live_subsample(env.get("PTM_APP_SUBSAMPLE")),
    )


def _live_subsample(value: str | None) -> int:
    if value is None:
        from ptm_core.orchestrate.jobs import LIVE_SUBSAMPLE  # lazy: the store's models
        return LIVE_SUBSAMPLE
    return max(0, int(value))


def _store_location(value: str | None) -> Path | str | None:
    """$PTM_STORE as the store reads it (a Path, or a URL kept whole: Path() would fold its
    '//'); a malformed one is left for the store to refuse when the app opens it."""
    if not value:
        return None
    from ptm_core.store.location import parse_location
    from ptm_core.store.backend import StoreError
    try:
        return parse_location(value)
    except StoreError:
        return value


def confine(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """``path`` (relative to ``root``) resolved, or AppDataError when it leaves ``root``
    (the store's confinement, ptm_core.store.experiment.confine, as the app's error)."""
    from ptm_core.store.experiment import PathEscapeError, confine as store_confine
    try:
        return store_confine(path, root)
    except PathEscapeError as e:
        raise AppDataError(str(e)) from None


def confine_any(path: str | os.PathLike, roots) -> Path:
    last: Exception | None = None
    for r in roots:
        try:
            return confine(path, r)
        except AppDataError as e:
            last = e
    raise AppDataError(f"{str(path)!r} is outside the allowed directories "
                       f"({', '.join(str(r) for r in roots)})") from last


def export_path(name: str, export_dir: str | os.PathLike) -> Path:
    """Where an export named ``name`` goes: a plain name, directly under the export directory."""
    name = (name or "").strip()
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise AppDataError("export name must be 1-100 letters, digits, '_', '-' or '.', starting "
                           f"with a letter or digit (got {name[:100]!r})")
    if (Path(export_dir) / name).is_symlink():  # confine() would resolve it to its target
        raise AppDataError(f"export {name!r} is a symbolic link in {export_dir}; refusing to "
                           "replace what it points to")
    return confine(Path(export_dir) / name, export_dir)
