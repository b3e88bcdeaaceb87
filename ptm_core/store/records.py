"""Plain records the store reads and writes: results, job specs, jobs (no I/O here)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Mapping

from ptm_core.errors import PTMError
from ptm_core.store.keys import key_from_components
from ptm_core.store.point import Point

RECORD_FORMAT = "ptm-result/1"


class RecordError(PTMError):
    """A result record is malformed (bad metric range, missing field...)."""


def utc_now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ResultRecord:
    """One suite run on one model, plus how the results table describes the model."""

    key: str
    experiment: str
    point_id: str
    kind: str
    skills: str  # "science" or "science+coding"; "" for θ_pre / θ_G
    omega: str | None  # JSON {"skill": ω} with sorted keys (ω a number or a per-layer list), or None
    label: str
    data_size: int | None
    train_steps: int | None  # training-step cost of the inputs, when known
    method: str
    recipe_key: str | None
    recipe_yaml: str | None
    heuristic: bool
    suite: str
    suite_version: str
    suite_options: dict[str, Any]
    axes: list[str]  # the experiment's axes this suite run measures
    metrics: dict[str, float]  # 0-100
    counts: dict[str, int]
    wall_s: float | None
    swap_s: float | None
    engine: str
    versions: dict[str, str]
    sampling: dict[str, Any]
    fingerprints: dict[str, str]  # model reference -> fingerprint
    source: str = "computed"  # computed | cached
    created_at: str = ""
    # metric -> [lo, hi]: its 95 % interval, 0-100 like the metric; absent: no interval known
    intervals: dict[str, list[float]] = field(default_factory=dict)

    def validate(self) -> "ResultRecord":
        for name in ("key", "experiment", "point_id", "kind", "suite", "suite_version", "engine"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise RecordError(f"result record: {name} must be a non-empty string")
        if not isinstance(self.metrics, dict) or not self.metrics:
            raise RecordError(f"result {self.label!r} / {self.suite}: no metrics")
        for k, v in self.metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not -1e-9 <= v <= 100 + 1e-9:
                raise RecordError(f"result {self.label!r} / suite {self.suite}: metric {k!r} = {v!r} "
                                  f"is not a number in 0-100")
        for k, v in self.counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise RecordError(f"result {self.label!r} / suite {self.suite}: count {k!r} = {v!r} "
                                  f"is not a non-negative integer")
        for k, iv in self.intervals.items():
            ok = isinstance(iv, (list, tuple)) and len(iv) == 2 and all(
                not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                and -1e-9 <= v <= 100 + 1e-9 for v in iv) and iv[0] <= iv[1]
            if not ok or k not in self.metrics:
                raise RecordError(f"result {self.label!r} / suite {self.suite}: interval {k!r} = "
                                  f"{iv!r} is not [lo, hi] in 0-100 for one of its metrics")
        return self

    def with_derived_intervals(self) -> "ResultRecord":
        """Fill in the intervals a record stored before intervals existed can have exactly: the
        Wilson interval of each rate from its score and count. Means without per-item scores
        (sampled pass@k) stay without one."""
        from ptm_core.intervals import derive_rate_intervals

        samples = self.sampling.get("n") if isinstance(self.sampling, dict) else None
        derived = derive_rate_intervals(self.metrics, self.counts, self.intervals,
                                        samples if isinstance(samples, int) else None)
        if derived:
            self.intervals = {**self.intervals, **derived}
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ResultRecord":
        names = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name not in d
                   and f.name not in ("source", "created_at", "intervals")]
        if missing:
            raise RecordError(f"result record lacks field(s): {', '.join(missing)}")
        unknown = [k for k in d if k not in names and k != "format"]
        if unknown:
            raise RecordError(f"result record has unknown field(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in names}).with_derived_intervals().validate()


@dataclass
class JobSpec:
    """Everything a worker needs to produce one result, and the key it will be stored under."""

    experiment: str
    suite_ref: str  # the axis whose suite runs (the first axis of its suite group)
    axes: list[str]
    components: dict[str, Any]  # keys.key_components(...)
    fingerprints: dict[str, str]
    point: Point
    key: str = ""

    def __post_init__(self) -> None:
        computed = key_from_components(self.components)
        if self.key and self.key != computed:
            raise RecordError(f"job spec key {self.key[:12]} does not match its components")
        self.key = computed

    def to_json(self) -> str:
        d = asdict(self)
        d["point"] = self.point.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        d = json.loads(text)
        d["point"] = Point.from_dict(d["point"])
        return cls(**d)


@dataclass
class Job:
    """A claimed job, as the worker sees it."""

    id: int
    spec: JobSpec
    worker: str
    attempts: int
    lease_expires: float

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass
class JobRow:
    """A job as the app lists it."""

    id: int
    key: str
    experiment: str
    label: str
    kind: str
    suite_ref: str
    status: str  # queued | running | done | failed | cancelled
    priority: int
    worker: str | None
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    lease_expires: float | None
    progress_done: int | None
    progress_total: int | None
    progress_msg: str | None
    error: str | None
    stale: bool = False  # running, but its lease expired: the worker is probably gone


@dataclass
class EnqueueOutcome:
    key: str
    status: str  # cached (result exists, no job) | queued (new job) | existing (job already queued/running)
    job_id: int | None = None


@dataclass
class JobEvent:
    job_id: int
    at: float
    status: str
    worker: str | None
    message: str | None


@dataclass
class WorkerRow:
    id: str
    host: str
    pid: int
    started_at: float
    last_seen: float
    state: str
    job_id: int | None = None
    extra: dict = field(default_factory=dict)
    engine: str | None = None  # the engine of its last result (schema 3; None before one)
    jobs_done: int = 0  # jobs it marked done (a result written after its lease was lost: not)
    jobs_failed: int = 0
