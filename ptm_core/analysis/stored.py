"""An experiment's stored results as `Results` (the store's frame, the experiment's skill order
and heuristic ω): what the app's store-backed sources and `lab report` read."""

from __future__ import annotations

from typing import Any

from ptm_core.analysis.results import Results
from ptm_core.store.current import CurrentModels, Fingerprints
from ptm_core.store.experiment import Experiment
from ptm_core.store.frame import results_frame


def stored_results(store: Any, exp: Experiment, *, version: str | None = None,
                   current: Fingerprints | CurrentModels | None = None) -> Results:
    """`current`: the models as they are now (`ptm_core.merge.fingerprint.current_fingerprints`),
    so results of models rebuilt since are left out (`results_frame`)."""
    return results_of(results_frame(store, exp, current=current), store, exp, version=version)


def results_of(frame: Any, store: Any, exp: Experiment, *, version: str | None = None) -> Results:
    """`Results` of an experiment's results frame (`results_frame`), for a caller that also reads
    the frame itself (its `attrs["stale_records"]`)."""
    return Results.from_frame(frame, name=exp.name,
                              version=version if version is not None else str(store.results_version(exp.name)),
                              skills=list(exp.skills),
                              heuristics={s: float(exp.heuristic_omega(s)) for s in exp.skills})
