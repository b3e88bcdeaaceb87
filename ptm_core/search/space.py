"""The ω space: a lattice of candidate points in range, and a seeded initial design on it.

Suggestions are lattice points (step 0.05 by default, 0.1 in the benchmark): a suggestion is then
a short, repeatable ω whose result is cached like any sweep point. Pure.

With G layer groups (`Space.groups`, 2–4) each skill has G dimensions, the anchors of a MergeKit
gradient list (ω at the first layer, ..., at the last, interpolated between), so a point has
k·G coordinates, skill by skill. When the lattice of k·G dimensions would pass MAX_CANDIDATES,
the candidates are a seeded sample of it: every point with one ω per skill (the G = 1 lattice,
each anchor equal) plus distinct lattice points drawn uniformly, MAX_CANDIDATES in all; the step
is kept (a coarser --step keeps the whole lattice).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ptm_core.errors import PTMError
from ptm_core.store.point import exact_resample, format_omega, omega_value

MAX_CANDIDATES = 50_000  # 21^3 = 9,261 at step 0.05 for three skills; 4+ skills need a coarser step
MAX_GROUPS = 4  # layer groups per skill (MergeKit gradient anchors)


def axis_size(lo: float, hi: float, step: float) -> int:
    """Values of one lattice axis, {lo, lo+step, ..., ≤ hi}."""
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise PTMError(f"search: ω range {lo}..{hi} is empty")
    if not (math.isfinite(step) and step > 0):
        raise PTMError(f"search: step {step} must be positive")
    return int(math.floor((hi - lo) / step + 1e-9)) + 1


def lattice(k: int, lo: float = 0.0, hi: float = 1.0, step: float = 0.05) -> np.ndarray:
    """Every point of {lo, lo+step, ..., hi}^k, rows in natural (first skill slowest) order."""
    if k < 1:
        raise PTMError("search: choose at least one skill")
    n = axis_size(lo, hi, step)
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


def check_groups(groups: Any) -> int:
    """Layer groups per skill: 1 (one ω per skill) to MAX_GROUPS, else a clear error."""
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) \
            or not 1 <= groups <= MAX_GROUPS:
        raise PTMError(f"layer groups {groups!r}: choose 1 (one ω per skill) or 2 to {MAX_GROUPS} "
                       "(a per-layer ω: MergeKit gradient anchors from the first layer to the last)")
    return int(groups)


def as_groups(w: Any, groups: int) -> tuple[float, ...] | None:
    """A stored ω (a number or a gradient list) as exactly `groups` anchors, or None when no
    gradient of that many anchors is the same per-layer ω (a bent 3-anchor gradient in 2
    groups): `store.point.exact_resample`."""
    return exact_resample(w, groups)


@dataclass(frozen=True)
class Space:
    """The searched ω: k skills × `groups` anchors each, on a lattice of `step` in [lo, hi]."""

    skills: tuple[str, ...]
    groups: int = 1
    lo: float = 0.0
    hi: float = 1.0
    step: float = 0.05
    seed: int = 0

    def __post_init__(self):
        check_groups(self.groups)
        if not self.skills:
            raise PTMError("search: choose at least one skill")

    @property
    def dims(self) -> int:
        return len(self.skills) * self.groups

    @property
    def lattice_size(self) -> int:
        return axis_size(self.lo, self.hi, self.step) ** self.dims

    @property
    def sampled(self) -> bool:
        """The lattice is too big to score whole: candidates are a sample of it (above)."""
        return self.groups > 1 and self.lattice_size > MAX_CANDIDATES

    def candidates(self) -> np.ndarray:
        """(m, dims) candidate points: the whole lattice (natural order) or, when `sampled`,
        the one-ω-per-skill points first, then a seeded uniform sample of the rest."""
        k, g = len(self.skills), self.groups
        if not self.sampled:
            return lattice(self.dims, self.lo, self.hi, self.step)
        n = axis_size(self.lo, self.hi, self.step)
        lattice(k, self.lo, self.hi, self.step)  # the one-ω-per-skill points must fit
        diag = np.repeat(np.array(list(itertools.product(range(n), repeat=k))), g, axis=1)
        seen = {tuple(r) for r in diag}
        want = MAX_CANDIDATES - len(diag)
        rng = np.random.default_rng(self.seed)
        total = n ** self.dims
        picked: list[tuple[int, ...]] = []
        while len(picked) < want:
            if total <= 4 * MAX_CANDIDATES:  # small enough to enumerate: a seeded permutation
                rows = np.array(np.unravel_index(rng.permutation(total), (n,) * self.dims)).T
            else:  # draws collide at most 1 in 4 times: redraw the few
                rows = rng.integers(0, n, size=(2 * (want - len(picked)), self.dims))
            for r in map(tuple, rows.tolist()):
                if r not in seen:
                    seen.add(r)
                    picked.append(r)
                    if len(picked) == want:
                        break
        axis = np.array([round(self.lo + i * self.step, 6) for i in range(n)])
        return axis[np.vstack([diag, np.array(picked, dtype=int).reshape(-1, self.dims)])]

    def describe(self) -> str:
        """What the candidates are, for the command's first line and the page's caption."""
        what = f"step {self.step:g}"
        if self.groups > 1:
            what = f"{self.groups} layer groups per skill, {self.dims} dimensions, " + what
        if self.sampled:
            n = axis_size(self.lo, self.hi, self.step)
            return (f"{MAX_CANDIDATES:,} candidates sampled from the {n}^{self.dims} lattice, {what}: "
                    "every point with one ω per skill, then a seeded uniform sample")
        return f"{self.lattice_size:,} lattice points, {what}"

    def columns(self) -> list[str]:
        """A point's coordinates by name: ω_<skill>, or ω_<skill>[1..G] (first layer to last)."""
        if self.groups == 1:
            return [f"ω_{s}" for s in self.skills]
        return [f"ω_{s}[{i + 1}]" for s in self.skills for i in range(self.groups)]

    def omegas(self, x: Sequence[float]) -> dict[str, Any]:
        """A point as ω per skill: a number, or a gradient tuple, in its shortest form (equal
        anchors: that number; `store.point.omega_value`)."""
        x = [float(v) for v in x]
        g = self.groups
        return {s: omega_value(x[i * g:(i + 1) * g] if g > 1 else x[i])
                for i, s in enumerate(self.skills)}

    def vector(self, omegas: Mapping[str, Any]) -> tuple[float, ...] | None:
        """ω per skill (a skill left out: 0) as a point, or None when some gradient has no
        exact form in this many groups (`as_groups`)."""
        out: list[float] = []
        for s in self.skills:
            a = as_groups(omegas.get(s, 0.0), self.groups)
            if a is None:
                return None
            out += a
        return tuple(out)

    def label(self, x: Sequence[float]) -> str:
        return ", ".join(f"ω_{s}={format_omega(w)}" for s, w in self.omegas(x).items())
