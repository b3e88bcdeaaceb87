"""What the search maximises: the chosen axes (a Pareto front) or a weighted sum of them,
subject to an optional floor on one axis (general ability ≥ θ_G's − Δ). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ptm_core.errors import PTMError


@dataclass(frozen=True)
class Objective:
    axes: tuple[str, ...]  # maximised
    weights: tuple[float, ...] | None = None  # None: Pareto over axes; else one weighted sum
    constraint_axis: str | None = None  # e.g. "general"
    floor: float | None = None  # constraint_axis must be ≥ floor (0–100 scale)

    @property
    def n_objectives(self) -> int:
        return 1 if self.weights is not None else len(self.axes)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every axis the surrogate must model."""
        extra = (self.constraint_axis,) if self.constraint_axis and self.constraint_axis not in self.axes else ()
        return tuple(self.axes) + extra

    def values(self, scores: np.ndarray | Mapping[str, float]) -> np.ndarray:
        """Objective vector(s) from per-axis scores: a mapping, or an array (..., len(axes))
        whose last dimension follows `axes`."""
        a = (np.array([scores[x] for x in self.axes], dtype=float)
             if isinstance(scores, Mapping) else np.asarray(scores, dtype=float))
        if self.weights is None:
            return a
        return (a @ np.asarray(self.weights, dtype=float))[..., None]

    def feasible(self, scores: Mapping[str, float]) -> bool:
        if self.constraint_axis is None or self.floor is None:
            return True
        return float(scores[self.constraint_axis]) >= self.floor

    def describe(self) -> str:
        if self.weights is None:
            what = "maximise " + ", ".join(self.axes) + " (Pareto)"
        else:
            what = "maximise " + " + ".join(f"{w:g}·{a}" for a, w in zip(self.axes, self.weights))
        if self.constraint_axis and self.floor is not None:
            what += f" subject to {self.constraint_axis} ≥ {self.floor:.2f}"
        return what


def parse_objective(spec: str, *, known_axes: Sequence[str], constraint_axis: str | None,
                    floor: float | None) -> Objective:
    """'science,safety' (Pareto) or 'science=1,safety=2' (weighted sum)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise PTMError("--objective: name at least one axis (e.g. science,safety or science=1,safety=2)")
    weighted = ["=" in p for p in parts]
    if any(weighted) and not all(weighted):
        raise PTMError(f"--objective {spec!r}: give every axis a weight or none")
    axes, weights = [], []
    for p in parts:
        name, _, w = p.partition("=")
        name = name.strip()
        if name not in known_axes:
            raise PTMError(f"--objective: unknown axis {name!r} (axes: {', '.join(known_axes)})")
        if name in axes:
            raise PTMError(f"--objective: axis {name!r} named twice")
        axes.append(name)
        if w:
            try:
                weights.append(float(w))
            except ValueError:
                raise PTMError(f"--objective: weight {w!r} for {name} is not a number") from None
    if weights and (not all(np.isfinite(weights)) or all(x == 0 for x in weights)):
        raise PTMError("--objective: weights must be finite and not all zero")
    if constraint_axis is not None and constraint_axis not in known_axes:
        raise PTMError(f"constraint axis {constraint_axis!r} is not an axis of the experiment")
    return Objective(tuple(axes), tuple(weights) if weights else None, constraint_axis, floor)
