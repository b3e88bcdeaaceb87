"""Results store and job queue (SQLite), experiments, worker, sweeps, estimates.

Light to import: pandas (frame) and numpy (estimate) load only with their modules, and nothing
here imports torch or vLLM (the worker's default wiring imports the engine lazily).
"""

from ptm_core.store.db import Store, StoreError, default_cached_dir, default_store_path
from ptm_core.store.experiment import Experiment, ExperimentError, PathEscapeError, confine
from ptm_core.store.keys import result_key
from ptm_core.store.points import Point
from ptm_core.store.records import EnqueueOutcome, Job, JobRow, JobSpec, ResultRecord

__all__ = [
    "Store", "StoreError", "default_store_path", "default_cached_dir", "Experiment",
    "ExperimentError", "PathEscapeError", "confine", "result_key", "Point", "EnqueueOutcome",
    "Job", "JobRow", "JobSpec", "ResultRecord",
]
