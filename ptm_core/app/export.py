"""Exporting a merge from the app: the checkpoint and its card under the export directory, and
a zip of it for the browser."""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Mapping

from ptm_core.app.requests import MergeRequest
from ptm_core.app.settings import Settings, export_path, settings
from ptm_core.app.sources import ExperimentSource


@dataclass
class ExportResult:
    path: Path
    bytes: int
    seconds: float


def export_merge(source: ExperimentSource, req: MergeRequest, name: str,
                 scores: Mapping[str, float] | None, cfg: Settings | None = None,
                 force: bool = False) -> ExportResult:
    """Write the merged checkpoint and its card under the export directory (the one disk
    operation the app triggers; it runs the merge package's streaming exporter)."""
    cfg = cfg or settings()
    out = export_path(name, cfg.export_dir)
    cfg.export_dir.mkdir(parents=True, exist_ok=True)
    recipe = source.recipe(req)
    from ptm_core.merge.export import export  # lazy: torch
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"force": force}
    if scores:
        kwargs["scores"] = {k: float(v) for k, v in scores.items()}
    path = export(recipe, out, **kwargs)
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return ExportResult(Path(path), size, time.perf_counter() - t0)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def zip_dir(path: Path) -> bytes:
    """A zip of an exported checkpoint (stored, not deflated: weights do not compress)."""
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                z.write(f, arcname=f"{path.name}/{f.relative_to(path)}")
    return buf.getvalue()
