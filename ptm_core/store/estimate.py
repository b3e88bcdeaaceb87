"""Estimates of a score at an ω that has not been measured yet (pure).

Two models, chosen by how many points are measured:

- **quadratic surrogate** (as in MAP): least squares of the score on 1, ω_k, ω_k² and, for
  several skills, the cross terms ω_j ω_k. Used once there are at least twice as many distinct
  measured ω as coefficients (≥ 6 for one skill, ≥ 12 for two, ≥ 20 for three) and the design
  has full rank.
- **interpolation** otherwise: for one skill, linear between the nearest measured ω below and
  above (the nearest endpoint's value outside the measured range, marked `extrapolated`); for
  several skills, linear along one skill's axis when the measured points bracket the query on
  that axis with the other ω equal, else inverse-distance weighting of the nearest d + 1 points.

Every estimate says it is one (`is_estimate`), which model made it, which measured points it
used, and is clipped to [0, 100]. A query at a measured ω returns the measurement itself
(`model == "measured"`, `is_estimate` False).

Both read ω as one number per skill: a point with a per-layer ω (a gradient list) is on no such
curve, so it is never an input, and an estimate of one is not made (`estimate_point`: None).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ptm_core import catalogue
from ptm_core.store.point import is_gradient

Omega = Mapping[str, float]
MeasuredPoint = tuple[Omega, float]  # (ω per skill, score 0-100)
_TOL = 1e-9


@dataclass(frozen=True)
class Estimate:
    value: float  # clipped to [0, 100]
    model: str  # measured | interpolation | quadratic | nearest | idw
    inputs: tuple[tuple[tuple[tuple[str, float], ...], float], ...]  # the measured points used
    is_estimate: bool = True
    extrapolated: bool = False
    raw_value: float | None = None  # before clipping
    coefficients: dict[str, float] = field(default_factory=dict)  # quadratic terms
    rmse: float | None = None  # of the quadratic fit on its inputs

    def describe(self) -> str:
        if not self.is_estimate:
            return "measured"
        what = {"quadratic": "quadratic fit", "interpolation": "linear interpolation",
                "nearest": "nearest measured point", "idw": "inverse-distance weighting"}[self.model]
        return f"estimate ({what} over {len(self.inputs)} measured point(s)" + \
            (", extrapolated" if self.extrapolated else "") + ")"


class EstimateError(ValueError):
    pass


def _scalar(omega: Mapping) -> bool:
    """Every ω one number (no per-layer ω, which is a list)."""
    return not any(is_gradient(v) for v in omega.values())


def _vec(omega: Omega, skills: Sequence[str]) -> tuple[float, ...]:
    return tuple(float(omega[s]) for s in skills)


def _pack(skills: Sequence[str], pts: Sequence[tuple[tuple[float, ...], float]]):
    return tuple((tuple(zip(skills, x)), float(y)) for x, y in pts)


def _clip(v: float) -> float:
    return min(100.0, max(0.0, v))


def quadratic_terms(skills: Sequence[str]) -> list[str]:
    names = ["1"] + [f"{s}" for s in skills] + [f"{s}^2" for s in skills]
    names += [f"{a}*{b}" for a, b in itertools.combinations(skills, 2)]
    return names


def _features(x: Sequence[float]) -> list[float]:
    d = len(x)
    f = [1.0] + list(x) + [v * v for v in x]
    f += [x[i] * x[j] for i, j in itertools.combinations(range(d), 2)]
    return f


def min_points_for_quadratic(n_skills: int) -> int:
    return 2 * len(quadratic_terms([str(i) for i in range(n_skills)]))


@dataclass(frozen=True)
class QuadraticFit:
    skills: tuple[str, ...]
    coefficients: tuple[float, ...]
    rmse: float
    n: int

    def predict(self, omega: Omega) -> float:
        return float(np.dot(_features(_vec(omega, self.skills)), self.coefficients))

    def named(self) -> dict[str, float]:
        return dict(zip(quadratic_terms(self.skills), self.coefficients))


def _dedupe(points: Sequence[MeasuredPoint], skills: Sequence[str]) -> list[tuple[tuple[float, ...], float]]:
    """Average repeated measurements of the same ω (e.g. two suite versions)."""
    acc: dict[tuple[float, ...], list[float]] = {}
    for om, y in points:
        if set(om) != set(skills):
            raise EstimateError(f"measured point has skills {sorted(om)}, expected {sorted(skills)}")
        if y is None or not math.isfinite(y):
            continue
        acc.setdefault(tuple(round(v, 9) for v in _vec(om, skills)), []).append(float(y))
    return [(x, sum(ys) / len(ys)) for x, ys in sorted(acc.items())]


def fit_quadratic(points: Sequence[MeasuredPoint], skills: Sequence[str] | None = None,
                  *, min_points: int | None = None) -> QuadraticFit | None:
    """Least-squares quadratic surrogate; None when there are too few points or the ω do not
    determine every coefficient."""
    if not points:
        return None
    skills = tuple(skills or sorted(points[0][0]))
    pts = _dedupe(points, skills)
    need = min_points if min_points is not None else min_points_for_quadratic(len(skills))
    if len(pts) < need:
        return None
    X = np.array([_features(x) for x, _ in pts], dtype=float)
    y = np.array([v for _, v in pts], dtype=float)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return None
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    rmse = float(np.sqrt(np.mean((X @ coef - y) ** 2)))
    return QuadraticFit(skills, tuple(float(c) for c in coef), rmse, len(pts))


def estimate(points: Sequence[MeasuredPoint], omega: Omega, *,
             min_quadratic_points: int | None = None) -> Estimate:
    """Estimate the score at `omega` from measured (ω, score) points of one curve (same kind,
    same skills, same axis)."""
    skills = tuple(sorted(omega))
    if not skills:
        raise EstimateError("ω names no skill")
    q = _vec(omega, skills)
    if any(not math.isfinite(v) for v in q):
        raise EstimateError(f"ω must be finite, got {dict(omega)}")
    pts = _dedupe(points, skills)
    if not pts:
        raise EstimateError("no measured points to estimate from")
    for x, y in pts:
        if all(abs(a - b) <= _TOL for a, b in zip(x, q)):
            return Estimate(_clip(y), "measured", _pack(skills, [(x, y)]), is_estimate=False,
                            raw_value=y)
    lo = [min(x[i] for x, _ in pts) for i in range(len(skills))]
    hi = [max(x[i] for x, _ in pts) for i in range(len(skills))]
    outside = any(v < lo[i] - _TOL or v > hi[i] + _TOL for i, v in enumerate(q))

    fit = fit_quadratic(points, skills, min_points=min_quadratic_points)
    if fit is not None:
        raw = fit.predict(omega)
        return Estimate(_clip(raw), "quadratic", _pack(skills, pts), extrapolated=outside,
                        raw_value=raw, coefficients=fit.named(), rmse=fit.rmse)
    if len(skills) == 1:
        return _interp_1d(skills, pts, q[0])
    return _interp_nd(skills, pts, q, outside)


def _interp_1d(skills, pts, w: float) -> Estimate:
    below = [(x, y) for x, y in pts if x[0] < w]
    above = [(x, y) for x, y in pts if x[0] > w]
    if below and above:
        (x0, y0), (x1, y1) = max(below), min(above)
        t = (w - x0[0]) / (x1[0] - x0[0])
        raw = y0 + t * (y1 - y0)
        return Estimate(_clip(raw), "interpolation", _pack(skills, [(x0, y0), (x1, y1)]), raw_value=raw)
    x, y = max(below) if below else min(above)
    return Estimate(_clip(y), "nearest", _pack(skills, [(x, y)]), extrapolated=True, raw_value=y)


def _interp_nd(skills, pts, q, outside: bool) -> Estimate:
    d = len(skills)
    for i in range(d):  # a line through the query parallel to one skill's axis
        line = [(x, y) for x, y in pts
                if all(abs(x[j] - q[j]) <= _TOL for j in range(d) if j != i)]
        below = [(x, y) for x, y in line if x[i] < q[i]]
        above = [(x, y) for x, y in line if x[i] > q[i]]
        if below and above:
            (x0, y0) = max(below, key=lambda p: p[0][i])
            (x1, y1) = min(above, key=lambda p: p[0][i])
            t = (q[i] - x0[i]) / (x1[i] - x0[i])
            raw = y0 + t * (y1 - y0)
            return Estimate(_clip(raw), "interpolation", _pack(skills, [(x0, y0), (x1, y1)]),
                            raw_value=raw)
    near = sorted(pts, key=lambda p: math.dist(p[0], q))[: d + 1]
    ws = [1.0 / math.dist(x, q) ** 2 for x, _ in near]
    raw = sum(w * y for w, (_, y) in zip(ws, near)) / sum(ws)
    return Estimate(_clip(raw), "idw", _pack(skills, near), extrapolated=outside, raw_value=raw)


def _curve_rows(frame, kind: str, skills: str | Sequence[str]):
    wanted = set(skills.split("+")) if isinstance(skills, str) else set(skills)
    same = frame["skills"].map(lambda s: isinstance(s, str) and set(s.split("+")) == wanted)
    return frame[(frame["kind"] == kind) & same]


def estimate_from_frame(frame, *, kind: str, skills: str | Sequence[str], axis: str, omega: Omega,
                        min_quadratic_points: int | None = None) -> Estimate:
    """Estimate one axis for one curve of `results_frame` (rows of that kind and the same set
    of skills, in any order)."""
    import json

    rows = _curve_rows(frame, kind, skills)
    points = []
    for om, y in zip(rows["omega"], rows[axis]):
        if not isinstance(om, str) or y is None or (isinstance(y, float) and math.isnan(y)):
            continue
        om = json.loads(om)
        if not _scalar(om):  # a per-layer ω: not a point of the one-number curve
            continue
        points.append((om, float(y)))
    return estimate(points, omega, min_quadratic_points=min_quadratic_points)


def estimate_axes(frame, kind: str, omega: Omega, axes: Sequence[str] | None = None, *,
                  min_quadratic_points: int | None = None) -> dict[str, Estimate]:
    """Estimates of every axis (default: every score column of the frame) for
    the curve of `kind` over the skills named in `omega`. Axes with no measured point on that
    curve are left out."""
    from ptm_core.store.frame import score_columns

    axes = list(axes) if axes is not None else score_columns(frame)
    out = {}
    for axis in axes:
        try:
            out[axis] = estimate_from_frame(frame, kind=kind, skills=list(omega), axis=axis,
                                            omega=omega, min_quadratic_points=min_quadratic_points)
        except EstimateError:
            continue
    return out


def estimate_scores(frame, kind: str, omega: Omega) -> dict[str, float]:
    """Plain {axis: value} of `estimate_axes` (the app marks them as estimates itself; use
    `estimate_axes` for the model and the inputs behind each value)."""
    return {axis: e.value for axis, e in estimate_axes(frame, kind, omega).items()}


def estimate_point(frame, kind: str, omega: Omega, *, axes: Sequence[str],
                   general: Mapping[str, float] | None = None) -> dict[str, float] | None:
    """The scores of an unmeasured merge, {axis: value}, the one estimate every page shows.

    ω = 0 everywhere is θ_G (`general`). Otherwise the curve of `kind` over the skills with
    ω ≠ 0 (`estimate` above); a kind with no curve of its own (TIES, DARE) is read on task
    arithmetic's (not an unweighted one, whose ω = 1 only marks a skill merged in); several skills with no measured merge of that set add each skill's change
    from θ_G (no interference assumed). None when nothing is measured to estimate from.
    Estimated rows in `frame` (shipped estimates) are not used as measurements.
    """
    if kind not in catalogue.merge_kinds() or not _scalar(omega):  # per-layer ω: no curve
        return None
    active = {k: float(v) for k, v in omega.items() if float(v) != 0.0}
    if not active:
        return dict(general) if general else None
    if "estimated" in frame.columns:
        frame = frame[~frame["estimated"].fillna(False).astype(bool)]
    cols = [c for c in frame.columns if c in ("kind", "skills", "omega") or c in axes]
    frame = frame[cols]

    def curve(om: Omega) -> dict[str, float]:
        out = {a: e.value for a, e in estimate_axes(frame, kind, om, axes).items()}
        # an unweighted kind (Model Stock, SCE, Karcher: ω only marks membership) has no
        # counterpart on task arithmetic's curve
        if not out and catalogue.curve_of(kind) != kind and catalogue.KINDS[kind].weighted:
            out = {a: e.value for a, e in estimate_axes(frame, catalogue.curve_of(kind), om, axes).items()}
        return out

    out = curve(active)
    if out or len(active) == 1 or not general:
        return out or None
    singles = [curve({s: w}) for s, w in active.items()]
    if not all(singles):
        return None
    return {a: _clip(g + sum(est.get(a, g) - g for est in singles)) for a, g in general.items()}
