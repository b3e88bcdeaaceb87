"""Replaying a search against a measured table (every lattice point's scores known): the
hypervolume after each evaluation for the search, random search and the grid in natural order.
Deterministic for a seed; no timing. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ptm_core.search.acquisition import propose
from ptm_core.search.hypervolume import hypervolume
from ptm_core.search.objective import Objective
from ptm_core.search.space import initial_design


@dataclass
class Table:
    X: np.ndarray  # (n, k) ω of every measured point, the grid's natural order
    scores: dict[str, np.ndarray]  # metric -> (n,)

    def row(self, i: int) -> dict[str, float]:
        return {m: float(v[i]) for m, v in self.scores.items()}


def hv_trace(table: Table, order: Sequence[int], objective: Objective,
             ref: Sequence[float]) -> list[float]:
    """Hypervolume of the feasible points measured so far, after each evaluation."""
    front: list[np.ndarray] = []
    out = []
    for i in order:
        r = table.row(i)
        if objective.feasible(r):
            front.append(objective.values(r))
        out.append(hypervolume(np.array(front), ref) if front else 0.0)
    return out


def evals_to(trace: Sequence[float], target: float) -> int | None:
    """Evaluations until the trace first reaches target (None: never)."""
    for i, v in enumerate(trace):
        if v >= target - 1e-9:
            return i + 1
    return None


def grid_order(table: Table) -> list[int]:
    return list(range(len(table.X)))


def random_order(table: Table, budget: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.permutation(len(table.X))[:budget]]


def search_order(table: Table, objective: Objective, ref: Sequence[float], *, budget: int,
                 seed: int, n_init: int = 5, batch: int = 4, beta: float = 1.0,
                 kind: str = "gp") -> list[int]:
    """The search's evaluation order: a seeded initial design, then batches from `propose`,
    each answered from the table (suggestions are table rows: the candidates are its lattice)."""
    budget = min(budget, len(table.X))
    order = initial_design(table.X, min(n_init, budget), seed)
    while len(order) < budget:
        idx = np.array(order)
        picks, _ = propose(objective, table.X[idx], {m: v[idx] for m, v in table.scores.items()},
                           table.X, q=min(batch, budget - len(order)), ref=ref, beta=beta,
                           kind=kind, seed=seed, exclude=order)
        if not picks:
            break
        order += picks
    return order


def table_from_rows(rows: Sequence[Mapping], skills: Sequence[str],
                    metrics: Sequence[str]) -> Table:
    """rows: {"omega": {skill: ω}, metric: score, ...}; sorted into natural lattice order."""
    rows = sorted(rows, key=lambda r: tuple(r["omega"][s] for s in skills))
    X = np.array([[r["omega"][s] for s in skills] for r in rows], dtype=float)
    return Table(X, {m: np.array([float(r[m]) for r in rows]) for m in metrics})
