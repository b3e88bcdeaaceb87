"""Hypervolume of a set of points (maximisation) above a reference point: exact, pure.

2-D is a sweep; higher dimensions slice along the last objective (HSO), exact and fine for the
few objectives and tens of points a merge search has.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _clip(points, ref) -> np.ndarray:
    p = np.asarray(points, dtype=float).reshape(-1, len(ref))
    return p[np.all(p > np.asarray(ref, dtype=float), axis=1)]  # only the region above ref counts


def _hv2(p: np.ndarray, ref: Sequence[float]) -> float:
    hv, best_y = 0.0, float(ref[1])
    for x, y in p[np.argsort(-p[:, 0], kind="stable")]:
        if y > best_y:  # each point adds the strip above everything with a larger x
            hv += (x - ref[0]) * (y - best_y)
            best_y = y
    return float(hv)


def _hv(p: np.ndarray, ref: np.ndarray) -> float:
    d = p.shape[1]
    if len(p) == 0:
        return 0.0
    if d == 1:
        return float(p[:, 0].max() - ref[0])
    if d == 2:
        return _hv2(p, ref)
    p = p[np.argsort(-p[:, -1], kind="stable")]
    hv = 0.0
    for i in range(len(p)):  # slab between this point's last coordinate and the next lower one
        low = p[i + 1, -1] if i + 1 < len(p) else ref[-1]
        if p[i, -1] > low:
            hv += (p[i, -1] - low) * _hv(p[: i + 1, :-1], ref[:-1])
    return float(hv)


def hypervolume(points, ref: Sequence[float]) -> float:
    """Volume dominated by `points` (rows, maximised) and bounded below by `ref`."""
    ref_a = np.asarray(ref, dtype=float)
    return _hv(_clip(points, ref_a), ref_a)


def pareto_mask(points) -> np.ndarray:
    """True for rows no other row dominates (≥ everywhere, > somewhere); duplicates both kept."""
    p = np.asarray(points, dtype=float)
    if p.ndim != 2 or len(p) == 0:
        return np.zeros(len(p), dtype=bool)
    ge = np.all(p[:, None, :] >= p[None, :, :], axis=2)
    gt = np.any(p[:, None, :] > p[None, :, :], axis=2)
    dominated = np.any(ge & gt, axis=0)  # column j dominated by some row i
    return ~dominated
