"""Results store and job queue (SQLite): records, keys, experiments, the results frame,
estimates. It imports nothing upstream (no merge, engine, evals, app or world); the worker
and sweeps that fill it are `ptm_core.orchestrate`.

Light to import: pandas (frame) and numpy (estimate) load only with their modules.
"""

from ptm_core.store.db import Store, StoreError, default_cached_dir, default_store_path
from ptm_core.store.experiment import Experiment, ExperimentError, PathEscapeError, confine
from ptm_core.store.keys import result_key
from ptm_core.store.point import Point
from ptm_core.store.records import EnqueueOutcome, Job, JobRow, JobSpec, ResultRecord

__all__ = [
    "Store", "StoreError", "default_store_path", "default_cached_dir", "Experiment",
    "ExperimentError", "PathEscapeError", "confine", "result_key", "Point", "EnqueueOutcome",
    "Job", "JobRow", "JobSpec", "ResultRecord",
]
