"""The app's one door to results, jobs, estimates and exports.

Pages never touch SQLite, the merge engine or the worker directly: they open an
:class:`ExperimentSource` here and call its methods. Three kinds of source:

- ``lab`` (the default) and any experiment YAML file: the results store (``ptm_core.store``),
  with a job queue served by ``python -m ptm_core worker``;
- ``paper``: the paper's reference numbers (``data/paper/*.csv``), read-only;
- a results CSV (the results-frame columns; optional ``models.json`` beside it naming the
  checkpoints by role): read-only results, export works when the checkpoints exist.

Everything heavy is imported lazily, so a page that only draws charts never imports torch.
User-given paths (experiment files, export names) are confined to configured directories.

The pieces, one job each: `settings.py` (environment, path checks), `requests.py` (what a page
asks for), `sources.py` (the sources), `export.py` (writing a merge), `suggest.py` (the predicted front and the next ω, via
`ptm_core.search`); this module is the door.
"""

from __future__ import annotations

from ptm_core.app.errors import AppDataError
from ptm_core.app.export import ExportResult, dir_size, export_merge, zip_dir
from ptm_core.app.requests import MergeRequest, Progress, Submission, WorkerState, method_menu
from ptm_core.app.suggest import (
    FrontRequest, FrontView, front_view, lattice_step, plot_axes, suggest,
)
from ptm_core.app.settings import (
    REPO, WORLDS, Settings, confine, confine_any, export_path, settings, world_file,
)
from ptm_core.app.sources import (
    JOB_COLUMNS, WIRING, WORKER_COLUMNS, ExperimentSource, FrameFileSource, PaperSource,
    StoreSource, jobs_frame, open_source, workers_frame,
)
from ptm_core.store.point import format_omega, resample  # a per-layer ω's label and anchors

__all__ = [
    "AppDataError", "ExportResult", "dir_size", "export_merge", "zip_dir", "MergeRequest",
    "Progress", "Submission", "WorkerState", "method_menu", "REPO", "Settings", "confine",
    "confine_any", "export_path", "settings", "WORLDS", "world_file", "JOB_COLUMNS", "WIRING", "WORKER_COLUMNS", "workers_frame", "ExperimentSource",
    "FrameFileSource", "PaperSource", "StoreSource", "jobs_frame", "open_source",
    "FrontRequest", "FrontView", "front_view", "lattice_step", "plot_axes", "suggest",
    "format_omega", "resample",
]
