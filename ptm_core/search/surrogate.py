"""Surrogates: one model per metric, ω (n, k) -> mean and standard deviation on the 0–100 scale.

Two kinds, chosen between by measuring (docs/search.md, `bench search --surrogate`):
- "gp": a Gaussian process (scikit-learn), Matérn 5/2 with one length scale per skill plus
  white noise (suite scores are binomial, so repeated ω need not agree); hyperparameters by
  maximum marginal likelihood with seeded restarts.
- "quadratic": MAP's form, a quadratic in ω, as Bayesian ridge regression (its posterior gives
  the band); cheap and smooth, but it cannot bend more than once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptm_core.errors import PTMError

KINDS = ("gp", "quadratic")


@dataclass
class Fitted:
    kind: str
    model: Any
    y_const: float | None = None  # every training value equal: predict it with zero spread

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if self.y_const is not None:
            return np.full(len(X), self.y_const), np.zeros(len(X))
        if self.kind == "quadratic":
            X = quadratic_features(X)
        mean, std = self.model.predict(X, return_std=True)
        return np.asarray(mean, dtype=float), np.maximum(np.asarray(std, dtype=float), 0.0)


def min_points(kind: str, k: int) -> int:
    """Measured points a surrogate over k skills needs before its front means anything: the
    quadratic's coefficients (1 + k + k(k+1)/2, 6 for two skills); the GP, two per length scale
    plus one (5 for two skills, the search's default initial design)."""
    if kind == "quadratic":
        return 1 + k + k * (k + 1) // 2
    if kind == "gp":
        return 2 * k + 1
    raise PTMError(f"surrogate: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")


def quadratic_features(X: np.ndarray) -> np.ndarray:
    """[ω_i, ω_i ω_j (i ≤ j)]; the intercept is the regression's own."""
    X = np.atleast_2d(X)
    k = X.shape[1]
    cross = [X[:, i] * X[:, j] for i in range(k) for j in range(i, k)]
    return np.column_stack([X, *cross]) if cross else X


def _gp(X: np.ndarray, y: np.ndarray, seed: int, kernel=None):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    k = X.shape[1]
    if kernel is None:
        kernel = (ConstantKernel(1.0, (1e-2, 1e2))
                  * Matern(length_scale=[0.3] * k, length_scale_bounds=(0.05, 10.0), nu=2.5)
                  + WhiteKernel(1e-2, (1e-6, 1.0)))
        restarts, optimizer = 2, "fmin_l_bfgs_b"
    else:  # a fantasy refit keeps the fitted hyperparameters (acquisition.py)
        restarts, optimizer = 0, None
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=restarts,
                                  optimizer=optimizer, random_state=seed)
    with warnings.catch_warnings():  # bound hits on tiny data are expected, not news
        warnings.simplefilter("ignore")
        gp.fit(X, y)
    return gp


def fit(kind: str, X, y, *, seed: int = 0, like: Fitted | None = None) -> Fitted:
    """Fit one metric. `like`: reuse that fit's hyperparameters (no optimisation)."""
    X = np.atleast_2d(np.asarray(X, dtype=float))
    y = np.asarray(y, dtype=float)
    if len(X) != len(y) or len(y) == 0:
        raise PTMError(f"surrogate: need matching, non-empty X and y (got {len(X)} and {len(y)})")
    if not np.all(np.isfinite(y)):
        raise PTMError("surrogate: scores must be finite")
    if np.ptp(y) == 0:
        return Fitted(kind, None, float(y[0]))
    if kind == "gp":
        kernel = like.model.kernel_ if like is not None and like.model is not None else None
        return Fitted(kind, _gp(X, y, seed, kernel))
    if kind == "quadratic":
        from sklearn.linear_model import BayesianRidge
        return Fitted(kind, BayesianRidge().fit(quadratic_features(X), y))
    raise PTMError(f"surrogate: unknown kind {kind!r} (kinds: {', '.join(KINDS)})")


def fit_all(kind: str, X, scores: dict[str, np.ndarray], *, seed: int = 0,
            like: dict[str, Fitted] | None = None) -> dict[str, Fitted]:
    return {m: fit(kind, X, y, seed=seed, like=(like or {}).get(m)) for m, y in scores.items()}


def predict_all(models: dict[str, Fitted], X) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    means, stds = {}, {}
    for m, f in models.items():
        means[m], stds[m] = f.predict(X)
    return means, stds
