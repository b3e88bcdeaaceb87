"""The ω space: a lattice of candidate points in range, and a seeded initial design on it.

Suggestions are lattice points (step 0.05 by default, 0.1 in the benchmark): a suggestion is then
a short, repeatable ω whose result is cached like any sweep point. Pure.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ptm_core.errors import PTMError

MAX_CANDIDATES = 50_000  # 21^3 = 9,261 at step 0.05 for three skills; 4+ skills need a coarser step


def lattice(k: int, lo: float = 0.0, hi: float = 1.0, step: float = 0.05) -> np.ndarray:
    """Every point of {lo, lo+step, ..., hi}^k, rows in natural (first skill slowest) order."""
    if k < 1:
        raise PTMError("search: choose at least one skill")
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise PTMError(f"search: ω range {lo}..{hi} is empty")
    if not (math.isfinite(step) and step > 0):
        raise PTMError(f"search: step {step} must be positive")
    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
    if n ** k > MAX_CANDIDATES:
        raise PTMError(f"search: {n}^{k} = {n ** k} candidate points; use a coarser --step "
                       f"(at most {MAX_CANDIDATES})")
    axis = [round(lo + i * step, 6) for i in range(n)]
    return np.array(list(itertools.product(axis, repeat=k)), dtype=float)


def initial_design(candidates: np.ndarray, n: int, seed: int) -> list[int]:
    """n distinct candidate indices: the origin (θ_G's own weights, the constraint's anchor) when
    it is a candidate, then a scrambled Sobol sample snapped to the nearest unused candidate."""
    from scipy.stats import qmc

    m, k = candidates.shape
    n = min(n, m)
    chosen: list[int] = []
    origin = np.flatnonzero(np.all(candidates == candidates.min(axis=0), axis=1))
    if len(origin) and np.all(candidates.min(axis=0) == 0):
        chosen.append(int(origin[0]))
    lo, hi = candidates.min(axis=0), candidates.max(axis=0)
    sample = qmc.Sobol(d=k, scramble=True, seed=seed).random(max(1, 2 ** math.ceil(math.log2(max(n, 2)))))
    for s in lo + sample * (hi - lo):
        if len(chosen) >= n:
            break
        d = np.linalg.norm(candidates - s, axis=1)
        d[chosen] = np.inf
        chosen.append(int(np.argmin(d)))
    return chosen
