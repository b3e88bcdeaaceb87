"""A suite's subsample: the same suite on a fixed, seeded subset of its items.

The app measures an uncached point on a subsample of every suite first (a quick answer with the
wider interval of fewer items), then on the full suite. The subset is the first `k` of one fixed
shuffle of the item indices (`random.Random(SUBSAMPLE_SEED)`), kept in the suite's own order, so
the same `k` always picks the same items, and a larger `k` contains a smaller one. The subsample
size enters the job's suite options (`subsample: k`), hence its cache key, so a subsample result
and the full one are kept side by side. Changing how items are chosen would change what
`subsample: k` means: do it only together with a new option name.

A suite can be subsampled when it has a `subsample(k)` method, or is a dataclass whose items are
its `items` or `problems` field (PromptSuite, the coding suites, the lab's suites); other suites
(lm-eval's) run in full only.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Sequence

SUBSAMPLE_SEED = 0
ITEM_FIELDS = ("items", "problems")


def subsample_indices(n: int, k: int, seed: int = SUBSAMPLE_SEED) -> list[int]:
    """The first `k` of a seeded shuffle of range(n), in ascending order."""
    if k < 1:
        raise ValueError(f"a subsample needs at least one item (k={k})")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[:k])


def suite_size(suite: Any) -> int | None:
    """The number of items a suite runs, or None when it does not say."""
    for name in ITEM_FIELDS:
        items = getattr(suite, name, None)
        if items is not None:
            return len(items)
    return None


def can_subsample(suite: Any, k: int) -> bool:
    """Whether `subsample_suite(suite, k)` gives a strictly smaller run of the same suite."""
    n = suite_size(suite)
    if n is None or k >= n:
        return False
    return callable(getattr(suite, "subsample", None)) or _item_field(suite) is not None


def subsample_suite(suite: Any, k: int) -> Any:
    """The same suite (name, version, sampling, scorer) over `k` of its items. ValueError when
    it cannot be subsampled to fewer items than it has (see `can_subsample`)."""
    if not can_subsample(suite, k):
        raise ValueError(f"suite {getattr(suite, 'name', suite)!r} cannot be subsampled to {k} items "
                         f"(it has {suite_size(suite)})")
    own = getattr(suite, "subsample", None)
    if callable(own):
        return own(k)
    name = _item_field(suite)
    items: Sequence[Any] = getattr(suite, name)
    chosen = [items[i] for i in subsample_indices(len(items), k)]
    # every other init field is passed on as it is, private caches included (the lab coding
    # suite's sandbox verdicts, a pure function of program and tests): the full pass reuses them
    return dataclasses.replace(suite, **{name: chosen})


def _item_field(suite: Any) -> str | None:
    if not dataclasses.is_dataclass(suite) or isinstance(suite, type):
        return None
    names = {f.name for f in dataclasses.fields(suite) if f.init}
    return next((n for n in ITEM_FIELDS if n in names), None)
