"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
Code", Fig. 3): with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k), computed as a
product so that large n does not overflow."""

from __future__ import annotations

from typing import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n passes."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_pass_at_k(results: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems, each given as its list of per-sample outcomes."""
    if not results:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(len(r), sum(map(bool, r)), k) for r in results) / len(results)
