"""Which stored results describe the models as they are now (pure; docs/store.md, "Current
results").

A result record names the fingerprint of every model it merged (`record.fingerprints`, model
path -> fingerprint). Given the fingerprints of the experiment's models as they are now
(`ptm_core.merge.fingerprint.current_fingerprints`: only the models materialized here), a
record is

- *stale* when one of its models is here and has another fingerprint: the model was rebuilt
  since (other weights, same path); the record measured weights that no longer exist;
- *current* otherwise, including every model that is not here to check (a record of a model
  that is not materialized, e.g. shipped results on a checkout without the checkpoints, is
  kept: it is what was measured, and nothing here says otherwise).

A model may be known under several fingerprint schemes (the current one first, then older
ones: see merge/fingerprint.py); a record whose fingerprint matches an older scheme measured
the same weights and is current, unless a record keyed under the current scheme measured the
same thing (same point, suite, options, sampling and engine): then it is a duplicate and only
the newer identity is kept.

Paths differ between checkouts: a record's model path that is not one of the experiment's
paths here is matched to the one local path ending in the most same components (at least two,
e.g. `models/pre`); when no path or several match equally it cannot be checked and is kept.
The experiment's models that are not materialized take part in that match with no
fingerprint (()), so a record of one of them is never taken for another model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Iterable, Mapping, Sequence

from ptm_core.store.keys import canonical_json
from ptm_core.store.records import ResultRecord

# model path -> its fingerprint now, or its fingerprints under each scheme (the current first);
# () or "": a model of the experiment that is not here to check
Fingerprints = Mapping[str, "str | Sequence[str]"]

MIN_SHARED_PARTS = 2  # a foreign path matches a local one ending in as many components


@dataclass
class Split:
    """Records sorted by `CurrentModels.split`."""

    current: list[ResultRecord] = field(default_factory=list)
    stale: list[ResultRecord] = field(default_factory=list)  # of models rebuilt since
    superseded: list[ResultRecord] = field(default_factory=list)  # older-scheme duplicates


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in PurePath(path).parts if p not in ("/", "\\"))


class CurrentModels:
    """The experiment's models as they are now, and the test of a record against them."""

    def __init__(self, fingerprints: Fingerprints | None):
        self.prints: dict[str, tuple[str, ...]] = {
            str(path): ((fp,) if fp else ()) if isinstance(fp, str) else tuple(f for f in fp if f)
            for path, fp in (fingerprints or {}).items()}
        self._parts = {path: _parts(path) for path in self.prints}
        self._local: dict[str, str | None] = {}

    def __bool__(self) -> bool:
        """Whether any model can be checked."""
        return any(self.prints.values())

    def local_path(self, path: str) -> str | None:
        """The experiment's model path here that a record's model path stands for (None: no
        model of the experiment, or not one that can be told)."""
        if path in self.prints:
            return path
        if path not in self._local:
            theirs = _parts(path)
            best, n_best = None, 0
            for mine, parts in self._parts.items():
                n = 0
                while n < min(len(parts), len(theirs)) and parts[-1 - n] == theirs[-1 - n]:
                    n += 1
                if n > n_best:
                    best, n_best = mine, n
                elif n == n_best:
                    best = None  # a tie: which one is meant cannot be told
            self._local[path] = best if n_best >= MIN_SHARED_PARTS else None
        return self._local[path]

    def status(self, record: ResultRecord) -> str:
        """'current', 'legacy' (current, but some model matched under an older scheme) or
        'stale' (some model here has another fingerprint now)."""
        legacy = False
        for path, fp in record.fingerprints.items():
            mine = self.local_path(path)
            prints = self.prints[mine] if mine is not None else ()
            if not prints:  # not here to check
                continue
            if fp not in prints:
                return "stale"
            legacy = legacy or fp != prints[0]
        return "legacy" if legacy else "current"

    def is_current(self, record: ResultRecord) -> bool:
        return self.status(record) != "stale"

    def split(self, records: Iterable[ResultRecord]) -> Split:
        rated = [(r, self.status(r)) for r in records]
        measured = {_measurement(r) for r, s in rated if s == "current"}
        out = Split()  # in the records' order
        for r, s in rated:
            if s == "stale":
                out.stale.append(r)
            elif s == "legacy" and _measurement(r) in measured:
                out.superseded.append(r)
            else:
                out.current.append(r)
        return out


def _measurement(r: ResultRecord) -> tuple:
    """What a record measured, whatever the fingerprint scheme of its key."""
    return (r.point_id, r.suite, r.suite_version, canonical_json(r.suite_options),
            canonical_json(r.sampling), r.engine)


def current_records(records: Iterable[ResultRecord],
                    fingerprints: Fingerprints | CurrentModels | None) -> Split:
    """`records` sorted into current, stale and superseded (see the module doc). No
    fingerprints (nothing materialized, or no check asked for): every record is current."""
    models = fingerprints if isinstance(fingerprints, CurrentModels) else CurrentModels(fingerprints)
    if not models:
        return Split(current=list(records))
    return models.split(records)


def is_current(record: ResultRecord, fingerprints: Fingerprints | CurrentModels) -> bool:
    """False when the record was measured on a model that has changed since: one of its
    model paths now has another fingerprint. Paths not in `fingerprints` cannot be checked."""
    models = fingerprints if isinstance(fingerprints, CurrentModels) else CurrentModels(fingerprints)
    return models.is_current(record)
