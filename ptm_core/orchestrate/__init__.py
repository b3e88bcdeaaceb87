"""Orchestration above the store: building points and jobs from an experiment, the default
engine/suite wiring, evaluating a job, the worker loop and sweeps (`python -m ptm_core worker`,
`python -m ptm_core sweep`). Everything heavy (engines, suites, merges) is imported lazily."""
