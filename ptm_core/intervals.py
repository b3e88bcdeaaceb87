"""95 % intervals for suite scores: Wilson for rates, a percentile bootstrap over items for means.

A rate (every item scores 0 or 1: exact match, refusal, greedy pass@1) gets the Wilson score
interval (Wilson 1927), which stays inside [0, 1] and is sound at 0/n and n/n where the normal
approximation collapses. A mean of per-item values in [0, 1] (pass@k by Chen et al.'s unbiased
estimator, partial credit) gets a percentile bootstrap that resamples items, the unit that was
drawn from a larger population. Pure functions, no I/O; scores are fractions here, the suites
scale them to 0-100 with `scaled`.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
N_RESAMPLES = 2000
SEED = 0
Interval = tuple[float, float]
NO_INTERVAL: Interval = (math.nan, math.nan)

# Metric names whose per-item value is 0 or 1, so that the score and its count give the number
# of successes exactly (used to give records stored before intervals existed their Wilson
# interval). "pass@1" is greedy in this project's coding suites; sampled pass@k is a mean.
RATE_METRICS = frozenset({
    "exact_match", "refusal", "compliance", "refusal_rate", "compliance_rate", "pass@1",
    "acc", "acc_norm", "em", "contains", "mc1",
})


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """The Wilson score interval of a proportion successes/n; NaN for n = 0."""
    if not 0 <= successes <= n:
        raise ValueError(f"Wilson interval needs 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return NO_INTERVAL
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # exact at the ends (the formula gives 0 and 1 only up to rounding)
    return (0.0 if successes == 0 else centre - half, 1.0 if successes == n else centre + half)


def bootstrap_mean(values: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = SEED,
                   level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of the mean, resampling the values with replacement;
    NaN for no values. Deterministic for a seed."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return NO_INTERVAL
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_mean needs finite values")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, 4_000_000 // x.size)  # bounds the index matrix at ~32 MB
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    # a mean of resampled values cannot leave [min, max]: clip the float noise of summing
    lo, hi = np.clip([lo, hi], x.min(), x.max())
    return float(lo), float(hi)


def bootstrap_pass_at_k(results: Sequence[Sequence[bool]], k: int, n_resamples: int = N_RESAMPLES,
                        seed: int = SEED) -> Interval:
    """Interval of mean pass@k: the bootstrap over problems of the per-problem unbiased
    estimator (each problem given as its list of per-sample outcomes)."""
    from ptm_core.passk import pass_at_k

    return bootstrap_mean([pass_at_k(len(r), sum(map(bool, r)), k) for r in results],
                          n_resamples, seed)


def item_interval(values: Sequence[float], n_resamples: int = N_RESAMPLES,
                  seed: int = SEED) -> Interval:
    """The interval of the mean of per-item values in [0, 1]: Wilson when every value is 0 or
    1 (a rate), else the bootstrap over items."""
    if values and all(v in (0, 1) for v in values):
        return wilson(int(sum(values)), len(values))
    return bootstrap_mean(values, n_resamples, seed)


def scaled(interval: Interval, factor: float = 100.0) -> list[float]:
    """An interval on the suites' 0-100 scale, as a JSON-friendly list."""
    return [factor * interval[0], factor * interval[1]]


def item_intervals(values: Mapping[str, Sequence[float]], factor: float = 100.0) -> dict[str, list[float]]:
    """{metric: [lo, hi]} on the suites' scale for per-item values in [0, 1]; metrics without
    items are left out (no interval)."""
    out = {}
    for name, vals in values.items():
        lo, hi = item_interval(list(vals))
        if math.isfinite(lo) and math.isfinite(hi):
            out[name] = scaled((lo, hi), factor)
    return out


def is_rate_metric(name: str, samples: int | None = None) -> bool:
    """Whether a metric name ("exact_match", "exact_match/addition", "arc_easy/acc") is one of
    the per-item 0/1 rates. With `samples` (n per problem), pass@n is one too: the unbiased
    estimator at k = n is 1 when any sample passes and 0 otherwise."""
    parts = name.split("/")
    return any(p in RATE_METRICS for p in parts) or (
        samples is not None and f"pass@{samples}" in parts)


def rate_interval_from_score(name: str, score: float, count: int | None,
                             samples: int | None = None) -> list[float] | None:
    """The Wilson interval (0-100) of a rate metric from its 0-100 score and its count, when the
    score is exactly successes/count; None when the metric is not a rate or the numbers do not
    fit one (then no interval can be derived honestly)."""
    if not is_rate_metric(name, samples) or not count or count <= 0:
        return None
    successes = score / 100.0 * count
    if abs(successes - round(successes)) > 1e-6 * max(1.0, count):
        return None
    return scaled(wilson(int(round(successes)), count))


def derive_rate_intervals(metrics: Mapping[str, float], counts: Mapping[str, int],
                          have: Iterable[str] = (), samples: int | None = None) -> dict[str, list[float]]:
    """Wilson intervals for every rate metric not in `have` whose score and count allow it
    (`samples`: completions per item of the sampled pass, for pass@n)."""
    have = set(have)
    out = {}
    for name, score in metrics.items():
        if name in have:
            continue
        iv = rate_interval_from_score(name, score, counts.get(name), samples)
        if iv is not None:
            out[name] = iv
    return out


def overlaps(a: Sequence[float], b: Sequence[float]) -> bool | None:
    """Whether two intervals [lo, hi] overlap; None when either is unknown (NaN)."""
    vals = [float(v) for v in (*a, *b)]
    if any(math.isnan(v) for v in vals):
        return None
    return vals[0] <= vals[3] and vals[2] <= vals[1]
