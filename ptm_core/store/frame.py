"""The tidy results table the app consumes: one row per evaluated model, one column per axis."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from ptm_core.catalogue import kind_order
from ptm_core.store.current import CurrentModels, Fingerprints, current_records
from ptm_core.store.experiment import Experiment
from ptm_core.store.jobs import subsample_of
from ptm_core.store.records import ResultRecord
from ptm_core.store.keys import engine_key

POINT_COLUMNS = ["experiment", "kind", "skills", "omega", "label", "data_size", "train_steps",
                 "recipe_key", "point_id", "method", "heuristic", "source", "preliminary",
                 "subsample_n"]


INTERVAL_SUFFIXES = ("_lo", "_hi")


def interval_columns(axis: str) -> tuple[str, str]:
    """The frame's columns of an axis's 95 % interval."""
    return axis + INTERVAL_SUFFIXES[0], axis + INTERVAL_SUFFIXES[1]


def score_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's axis columns: neither point columns nor an axis's interval bounds."""
    cols = set(frame.columns)
    return [c for c in frame.columns if c not in POINT_COLUMNS
            and not (c.endswith(INTERVAL_SUFFIXES) and c[:-3] in cols)]


def axis_metric(exp: Experiment, axis: str, record: ResultRecord) -> str | None:
    """The metric of `axis` in a suite record: the axis's metric, else the suite's only
    top-level metric, else 'score' (None when the record has none of them)."""
    metrics = record.metrics
    metric = exp.axes[axis].metric
    if metric is None:
        top = [k for k in metrics if "/" not in k]
        metric = top[0] if len(top) == 1 else "score"
    return metric if metric in metrics else None


def axis_value(exp: Experiment, axis: str, record: ResultRecord) -> float | None:
    """The score of `axis` in a suite record (see `axis_metric`)."""
    metric = axis_metric(exp, axis, record)
    return None if metric is None else record.metrics[metric]


def axis_interval(exp: Experiment, axis: str, record: ResultRecord) -> tuple[float, float]:
    """The 95 % interval of `axis`'s score in a record; NaN when the record has none."""
    iv = record.intervals.get(axis_metric(exp, axis, record) or "")
    return (float(iv[0]), float(iv[1])) if iv else (math.nan, math.nan)


def _serves(exp: Experiment, axis: str, r: ResultRecord) -> bool:
    if r.axes:
        return axis in r.axes
    return r.suite == exp.axes[axis].suite  # records from elsewhere: match by suite name


def _preference(exp: Experiment, r: ResultRecord) -> tuple:
    # a full run over a subsample, then the experiment's engine, then the newest measurement
    return (subsample_of(r.suite_options) is None,
            r.engine == engine_key(exp.engine, exp.engine_options), r.created_at)


def results_frame(store: Any, experiment: Experiment | str, *,
                  current: Fingerprints | CurrentModels | None = None) -> pd.DataFrame:
    """Rows: every point with at least one measured axis, plus imported reference scores.

    `current`: the experiment's models as they are now (`ptm_core.merge.fingerprint.
    current_fingerprints`; what the app and the reports pass): records of models rebuilt since
    are left out, and so are older-scheme duplicates (store/current.py, docs/store.md "Current
    results"); models it does not name (not materialized here) are not checked. None: every
    stored record counts. `frame.attrs["stale_records"]` is the number left out as stale.

    Columns: experiment, kind, skills, omega (JSON {skill: ω} or None; a per-layer ω is a list
    of its gradient's anchors, kept as is), label, data_size,
    train_steps, recipe_key, point_id, method, heuristic, source, then one float column per
    axis of the experiment (NaN where not measured yet), then `<axis>_lo` and `<axis>_hi` for
    every axis: the score's 95 % interval (NaN where the record has none). When a point has
    several records for one axis, a full run beats a subsample run (the app's quick first
    pass), then the experiment's engine, then the newest wins, for the score and its interval
    alike. `preliminary` is True where some axis still shows a subsample run, and
    `subsample_n` is then the smallest subsample behind the row (<NA> otherwise).
    """
    exp = store.get_experiment(experiment) if isinstance(experiment, str) else experiment
    axes = list(exp.axes)
    split = current_records(store.results(exp.name), current)
    by_point: dict[str, list[ResultRecord]] = {}
    for r in split.current:
        by_point.setdefault(r.point_id, []).append(r)
    rows: list[dict[str, Any]] = []
    for pid, recs in by_point.items():
        first = max(recs, key=lambda r: r.created_at)
        row: dict[str, Any] = {
            "experiment": exp.name, "kind": first.kind, "skills": first.skills,
            "omega": first.omega, "label": first.label, "data_size": first.data_size,
            "train_steps": first.train_steps, "recipe_key": first.recipe_key, "point_id": pid,
            "method": first.method, "heuristic": first.heuristic,
            "source": "cached" if all(r.source == "cached" for r in recs) else "computed",
        }
        shown: list[int] = []  # subsample sizes of the records the row shows
        for axis in axes:
            cands = [r for r in recs if _serves(exp, axis, r)]
            vals = [(r, axis_value(exp, axis, r)) for r in sorted(cands, key=lambda r: _preference(exp, r),
                                                                  reverse=True)]
            vals = [(r, v) for r, v in vals if v is not None]
            row[axis] = float(vals[0][1]) if vals else math.nan
            lo, hi = axis_interval(exp, axis, vals[0][0]) if vals else (math.nan, math.nan)
            row.update(zip(interval_columns(axis), (lo, hi)))
            k = subsample_of(vals[0][0].suite_options) if vals else None
            if k is not None:
                shown.append(k)
        row["preliminary"] = bool(shown)
        row["subsample_n"] = min(shown) if shown else None
        rows.append(row)
    for i, ref in enumerate(exp.references):
        if ref.scores is None:
            continue
        row = {
            "experiment": exp.name, "kind": ref.kind, "omega": None,
            "skills": "+".join(s for s in exp.skills if s in ref.skills),
            "label": ref.display_label(), "data_size": ref.data_size, "train_steps": ref.train_steps,
            "recipe_key": None, "point_id": f"imported:{i}", "method": "imported",
            "heuristic": False, "source": "imported", "preliminary": False, "subsample_n": None,
        }
        for axis in axes:
            row[axis] = float(ref.scores[axis]) if axis in ref.scores else math.nan
            row.update(dict.fromkeys(interval_columns(axis), math.nan))  # a reference has none
        rows.append(row)
    bounds = [c for a in axes for c in interval_columns(a)]
    df = pd.DataFrame(rows, columns=POINT_COLUMNS + axes + bounds)
    if df.empty:
        df = df.astype({a: "float64" for a in axes + bounds})
        df.attrs["stale_records"] = len(split.stale)
        return df
    order = {k: i for i, k in enumerate(kind_order())}
    df["_k"] = df["kind"].map(lambda k: order.get(k, len(order)))
    df["_w"] = df["omega"].map(_omega_sort_key)
    df = df.sort_values(["_k", "skills", "_w", "data_size", "label"], na_position="first")
    df = df.drop(columns=["_k", "_w"]).reset_index(drop=True)
    df["data_size"] = df["data_size"].astype("Int64")
    df["train_steps"] = df["train_steps"].astype("Int64")
    df["heuristic"] = df["heuristic"].astype(bool)
    df["preliminary"] = df["preliminary"].astype(bool)
    df["subsample_n"] = df["subsample_n"].astype("Int64")
    for a in axes + bounds:
        df[a] = df[a].astype("float64")
    df.attrs["stale_records"] = len(split.stale)
    return df


def _omega_sort_key(o) -> str:
    """Rows of a curve in ω order; a per-layer ω (a list) by its anchors, after the number
    equal to its first anchor."""
    if not isinstance(o, str) or not o:
        return ""
    def one(v) -> str:
        return "/".join(f"{x:+016.6f}" for x in v) if isinstance(v, list) else f"{v:+016.6f}"
    return ",".join(one(v) for _, v in sorted(json.loads(o).items()))


def omega_of(row_omega: str | None, skill: str) -> float | list[float] | None:
    """ω of one skill from the frame's omega column: a number, or a per-layer ω's list."""
    if not isinstance(row_omega, str) or not row_omega:
        return None
    return json.loads(row_omega).get(skill)
