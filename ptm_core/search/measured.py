"""The measured points a search starts from, read from a results frame (the store's
`results_frame`, or the app's). Pure.

A row counts when it is a merge of the searched method whose ω names only searched skills and
whose every modelled axis is scored. For plain task arithmetic, θ_G + Σ ω_k τ_k with a skill left
out is the same model as that skill at ω = 0, so single-skill (and other sub-set) merges count as
points with the missing ω at 0, and θ_G itself is the point ω = 0. Other methods (TIES, DARE)
count only merges over exactly the searched skills: a model at weight 0 may still change their
sign election or drop pattern.

With G layer groups a point has G coordinates per skill (gradient anchors, `space.Space`): a
number ω counts as G equal anchors, a per-layer ω as its anchors when a gradient of G anchors is
the same per-layer ω (`space.as_groups`: 2 anchors count in 3 or 4 groups, 3 in 2 do not); with
G = 1 a per-layer ω never counts.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np
import pandas as pd

from ptm_core import catalogue
from ptm_core.search.space import as_groups

ZERO_EQUIVALENT = ("task_arithmetic",)  # methods where a skill left out equals its ω = 0


def _omega(value) -> dict[str, float | list[float]] | None:
    def one(v):
        return [float(x) for x in v] if isinstance(v, (list, tuple)) else float(v)
    if isinstance(value, dict):
        return {str(k): one(v) for k, v in value.items()}
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        d = json.loads(str(value))
    except (TypeError, ValueError):
        return None
    return {str(k): one(v) for k, v in d.items()} if isinstance(d, dict) and d else None


def measured_points(frame: pd.DataFrame, method: str, skills: Sequence[str],
                    metrics: Sequence[str], groups: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """ω (n, len(skills) · groups, skill by skill) and each metric's scores (n,) of the frame's
    measured points of `method` over `skills` (rules above). Estimated rows never count."""
    kind = catalogue.method(method).kind
    subsets = method in ZERO_EQUIVALENT
    want = set(skills)
    X, rows = [], []
    if frame is None or frame.empty or any(m not in frame.columns for m in metrics):
        A = np.zeros((0, len(metrics)))
        return np.zeros((0, len(skills) * groups)), {m: A[:, j] for j, m in enumerate(metrics)}
    for r in frame.to_dict("records"):
        est = r.get("estimated")
        if est is not None and not pd.isna(est) and bool(est):
            continue
        if subsets and r.get("kind") == "general":
            om: dict[str, float] | None = {}
        else:
            if r.get("kind") != kind:
                continue
            rm = r.get("method")
            if isinstance(rm, str) and rm and rm != method:
                continue
            om = _omega(r.get("omega"))
            if om is None or not set(om) <= want or (not subsets and set(om) != want):
                continue
        vals = [r.get(m) for m in metrics]
        if any(v is None or pd.isna(v) for v in vals):  # an axis not measured yet
            continue
        x = [as_groups(om.get(s, 0.0), groups) for s in skills]
        if any(a is None for a in x):  # a per-layer ω these groups cannot hold
            continue
        X.append([w for a in x for w in a])
        rows.append([float(v) for v in vals])
    A = np.array(rows, dtype=float).reshape(-1, len(metrics))
    return (np.array(X, dtype=float).reshape(-1, len(skills) * groups),
            {m: A[:, j] for j, m in enumerate(metrics)})
