"""Choosing the next batch of ω: optimistic hypervolume improvement under the surrogate.

For each candidate the objective vector is taken at mean + β·sd (upper confidence), its
hypervolume improvement over the measured feasible front is weighted by the probability that
it meets the constraint, and the best one is picked. A batch is built greedily ("kriging
believer"): the pick is added to the data at its predicted mean and the surrogates are refitted
with their hyperparameters kept, so its neighbours' uncertainty shrinks and the batch spreads.
When no candidate can improve the front, the most uncertain feasible one is explored. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.stats import norm

from ptm_core.search.hypervolume import hypervolume, pareto_mask
from ptm_core.search.objective import Objective
from ptm_core.search.surrogate import Fitted, fit_all, predict_all


@dataclass
class Prediction:
    obj_mean: np.ndarray  # (m, n_objectives)
    obj_sd: np.ndarray  # (m, n_objectives)
    p_feasible: np.ndarray  # (m,)


def predict_objective(models: Mapping[str, Fitted], objective: Objective, X) -> Prediction:
    means, sds = predict_all(dict(models), X)
    mu = np.column_stack([means[a] for a in objective.axes])
    sd = np.column_stack([sds[a] for a in objective.axes])
    if objective.weights is not None:  # metrics modelled independently: variances add
        w = np.asarray(objective.weights, dtype=float)
        obj_mu, obj_sd = (mu @ w)[:, None], np.sqrt((sd ** 2) @ (w ** 2))[:, None]
    else:
        obj_mu, obj_sd = mu, sd
    if objective.constraint_axis is None or objective.floor is None:
        pf = np.ones(len(mu))
    else:
        c_mu, c_sd = means[objective.constraint_axis], sds[objective.constraint_axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (c_mu - objective.floor) / c_sd
        pf = np.where(c_sd > 0, norm.cdf(z), (c_mu >= objective.floor).astype(float))
    return Prediction(obj_mu, obj_sd, pf)


def measured_front(objective: Objective, scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """Objective vectors of the measured points that meet the constraint."""
    n = len(next(iter(scores.values()))) if scores else 0
    rows = [{a: float(scores[a][i]) for a in objective.metrics} for i in range(n)]
    ok = [r for r in rows if objective.feasible(r)]
    return (np.array([objective.values(r) for r in ok]) if ok
            else np.zeros((0, objective.n_objectives)))


def hv_gains(front: np.ndarray, points: np.ndarray, ref: Sequence[float]) -> np.ndarray:
    """Hypervolume improvement of adding each row of `points` alone to `front`."""
    base = hypervolume(front, ref)
    gains = np.zeros(len(points))
    live = np.all(points > np.asarray(ref, dtype=float), axis=1)
    if len(front):  # a point the front already dominates adds nothing: skip the exact computation
        dominated = np.any(np.all(front[None, :, :] >= points[:, None, :], axis=2), axis=1)
        live &= ~dominated
    for i in np.flatnonzero(live):
        gains[i] = hypervolume(np.vstack([front, points[i]]), ref) - base
    return gains


def propose(objective: Objective, X: np.ndarray, scores: Mapping[str, np.ndarray],
            candidates: np.ndarray, *, q: int, ref: Sequence[float], beta: float = 1.0,
            kind: str = "gp", seed: int = 0,
            exclude: Sequence[int] = ()) -> tuple[list[int], dict[str, Fitted]]:
    """Indices of up to q candidates to measure next (never one in `exclude` or at a measured ω)
    and the surrogates fitted on the measured data."""
    X = np.atleast_2d(np.asarray(X, dtype=float))
    data = {m: np.asarray(scores[m], dtype=float) for m in objective.metrics}
    models = fit_all(kind, X, data, seed=seed)
    fitted = models
    front = measured_front(objective, data)
    taken = np.zeros(len(candidates), dtype=bool)
    taken[list(exclude)] = True
    if len(X):
        taken |= np.any(np.all(np.isclose(candidates[:, None, :], X[None, :, :]), axis=2), axis=1)
    chosen: list[int] = []
    for _ in range(q):
        if taken.all():
            break
        pred = predict_objective(models, objective, candidates)
        gains = hv_gains(front, pred.obj_mean + beta * pred.obj_sd, ref) * pred.p_feasible
        gains[taken] = -np.inf
        if not np.any(gains > 1e-9):
            gains = pred.p_feasible * pred.obj_sd.sum(axis=1)
            gains[taken] = -np.inf
        i = int(np.argmax(gains))  # ties: the lowest index, so a seed replays exactly
        chosen.append(i)
        taken[i] = True
        if pred.p_feasible[i] >= 0.5:
            front = np.vstack([front, pred.obj_mean[i]])
            front = front[pareto_mask(front)]
        means, _ = predict_all(models, candidates[i:i + 1])
        X = np.vstack([X, candidates[i]])
        data = {m: np.append(v, means[m][0]) for m, v in data.items()}
        models = fit_all(kind, X, data, seed=seed, like=fitted)
    return chosen, fitted
