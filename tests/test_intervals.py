"""The interval math against exact values: Wilson by hand (and scipy where installed), the
bootstrap against its fixed points and the normal approximation, pass@k over items."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptm_core.intervals import (
    Z95, bootstrap_mean, bootstrap_pass_at_k, derive_rate_intervals, is_rate_metric, item_interval,
    item_intervals, overlaps, rate_interval_from_score, wilson,
)
from ptm_core.passk import pass_at_k


def wilson_by_hand(s: int, n: int, z: float = Z95) -> tuple[float, float]:
    # Wilson (1927): the roots in p of (s/n - p)^2 = z^2 p (1 - p) / n
    a = 1 + z * z / n
    b = -(2 * s / n + z * z / n)
    c = (s / n) ** 2
    disc = math.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


@pytest.mark.parametrize("s, n, want", [
    (0, 10, (0.0, 0.27753)),        # z^2 / (n + z^2)
    (5, 10, (0.23659, 0.76341)),
    (10, 10, (0.72247, 1.0)),
    (1, 1, (0.20655, 1.0)),         # 1 / (1 + z^2)
])
def test_wilson_matches_the_textbook_values(s, n, want):
    lo, hi = wilson(s, n)
    assert (lo, hi) == pytest.approx(want, abs=5e-6)
    assert (lo, hi) == pytest.approx(wilson_by_hand(s, n), abs=1e-12)


def test_wilson_ends_are_exact_and_zero_items_has_none():
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 10)[1] == pytest.approx(Z95 ** 2 / (10 + Z95 ** 2), rel=1e-12)
    assert all(math.isnan(v) for v in wilson(0, 0))
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_wilson_agrees_with_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    for s, n in [(0, 10), (3, 17), (42, 60), (60, 60)]:
        ci = stats.binomtest(s, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(s, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_bootstrap_of_a_constant_has_zero_width():
    assert bootstrap_mean([0.7] * 50) == (0.7, 0.7)
    assert bootstrap_mean([0.0]) == (0.0, 0.0)
    assert all(math.isnan(v) for v in bootstrap_mean([]))


def test_bootstrap_is_close_to_the_normal_interval_on_a_known_vector():
    x = np.arange(100) / 99.0  # mean 0.5, sd known exactly
    se = x.std(ddof=0) / math.sqrt(len(x))
    lo, hi = bootstrap_mean(x, n_resamples=4000, seed=3)
    assert lo == pytest.approx(0.5 - Z95 * se, abs=0.1 * Z95 * se)
    assert hi == pytest.approx(0.5 + Z95 * se, abs=0.1 * Z95 * se)


def test_bootstrap_is_deterministic_for_a_seed_and_moves_with_it():
    x = [0.0, 0.1, 0.5, 0.9, 1.0, 0.3, 0.3, 0.8]
    assert bootstrap_mean(x, seed=7) == bootstrap_mean(x, seed=7)
    assert bootstrap_mean(x, seed=7) != bootstrap_mean(x, seed=8)


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).uniform(size=80)
    ci = stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile",
                         random_state=np.random.default_rng(1)).confidence_interval
    lo, hi = bootstrap_mean(x, n_resamples=20000, seed=2)
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=0.006)  # Monte Carlo noise only


def test_bootstrap_of_large_inputs_is_chunked_the_same_way():
    x = np.random.default_rng(5).uniform(size=5000)  # 2000 x 5000 indices: more than one chunk
    lo, hi = bootstrap_mean(x)
    se = x.std() / math.sqrt(len(x))
    assert lo < x.mean() < hi and hi - lo == pytest.approx(2 * Z95 * se, rel=0.1)


def test_pass_at_k_interval_is_the_bootstrap_of_the_per_problem_estimator():
    problems = [[True] * 3 + [False] * 7, [False] * 10, [True] * 10, [True] + [False] * 9]
    per_item = [pass_at_k(10, 3, 5), 0.0, 1.0, pass_at_k(10, 1, 5)]
    assert bootstrap_pass_at_k(problems, 5) == bootstrap_mean(per_item)
    lo, hi = bootstrap_pass_at_k(problems, 5)
    assert lo < float(np.mean(per_item)) < hi


def test_item_interval_is_wilson_for_rates_and_bootstrap_for_means():
    assert item_interval([1, 0, 1, 1]) == wilson(3, 4)
    assert item_interval([True, False]) == wilson(1, 2)
    assert item_interval([0.5, 1.0, 0.0]) == bootstrap_mean([0.5, 1.0, 0.0])
    out = item_intervals({"acc": [1, 0], "none": []})
    assert set(out) == {"acc"} and out["acc"] == pytest.approx([100 * v for v in wilson(1, 2)])


def test_rates_are_told_from_means_by_name_and_sample_count():
    assert is_rate_metric("exact_match/addition") and is_rate_metric("arc_easy/acc")
    assert not is_rate_metric("pass@10") and not is_rate_metric("pass@1_sampled")
    assert is_rate_metric("pass@10/add", samples=10)  # pass@n of n samples: any sample passes
    assert not is_rate_metric("pass@10", samples=20)


def test_derived_rate_interval_needs_a_score_that_is_successes_over_count():
    assert rate_interval_from_score("refusal", 30.0, 60) == pytest.approx(
        [100 * v for v in wilson(18, 60)])
    assert rate_interval_from_score("refusal", 100 / 3, 60) == pytest.approx(
        [100 * v for v in wilson(20, 60)])  # 20/60 in floating point
    assert rate_interval_from_score("refusal", 100 / 7, 60) is None  # not k/60
    assert rate_interval_from_score("pass@1_sampled", 30.0, 60) is None  # a mean
    assert rate_interval_from_score("refusal", 30.0, 0) is None
    got = derive_rate_intervals({"refusal": 50.0, "pass@10": 50.0, "score": 50.0},
                                {"refusal": 4, "pass@10": 4, "score": 4}, samples=10)
    assert set(got) == {"refusal", "pass@10"}


def test_overlap():
    assert overlaps((1, 3), (2, 4)) and overlaps((1, 2), (2, 3))
    assert overlaps((1, 2), (2.5, 3)) is False
    assert overlaps((1, math.nan), (2, 3)) is None
