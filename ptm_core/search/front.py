"""The predicted Pareto front: the surrogates' means over the candidate lattice, the points
predicted feasible (P ≥ 0.5) and non-dominated, each with its 95 % band per objective. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ptm_core.search.acquisition import predict_objective
from ptm_core.search.hypervolume import pareto_mask
from ptm_core.search.objective import Objective
from ptm_core.search.space import Space
from ptm_core.search.surrogate import Fitted

Z95 = 1.959964


@dataclass
class Front:
    omega: np.ndarray  # (n, dims) ω of each predicted front point (space.Space), by the first objective
    mean: np.ndarray  # (n, n_objectives)
    lo: np.ndarray  # mean − 1.96 sd
    hi: np.ndarray  # mean + 1.96 sd
    p_feasible: np.ndarray  # (n,)

    def rows(self, space: Space, names) -> list[dict]:
        """JSON rows: ω per skill (a per-layer ω as its list of anchors), p_feasible, and each
        objective's mean and band."""
        out = []
        for i in range(len(self.omega)):
            om = space.omegas(self.omega[i])
            row = {"omega": {s: list(w) if isinstance(w, tuple) else w for s, w in om.items()},
                   "p_feasible": float(self.p_feasible[i])}
            for j, n in enumerate(names):
                row[n] = float(self.mean[i, j])
                row[f"{n}_lo"], row[f"{n}_hi"] = float(self.lo[i, j]), float(self.hi[i, j])
            out.append(row)
        return out


def predicted_front(models: Mapping[str, Fitted], objective: Objective,
                    candidates: np.ndarray) -> Front:
    pred = predict_objective(models, objective, candidates)
    ok = np.flatnonzero(pred.p_feasible >= 0.5)
    mu, sd = pred.obj_mean[ok], pred.obj_sd[ok]
    keep = ok[pareto_mask(mu)] if len(ok) else ok
    mu, sd = pred.obj_mean[keep], pred.obj_sd[keep]
    order = np.argsort(-mu[:, 0], kind="stable") if len(keep) else keep
    keep, mu, sd = keep[order], mu[order], sd[order]
    return Front(candidates[keep], mu, mu - Z95 * sd, mu + Z95 * sd, pred.p_feasible[keep])
