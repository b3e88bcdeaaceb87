"""What the pages ask for and are told: a merge request (method, ω, density) checked against
the catalogue, a submission, a job's progress, the worker's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ptm_core import catalogue
from ptm_core.app.errors import AppDataError
from ptm_core.errors import PTMError
from ptm_core.store.point import format_omega, is_gradient, omega_value


def method_menu() -> dict[str, str]:
    """The Merge page's method choices: method -> title, in catalogue order."""
    return {m: e.menu_title for m, e in catalogue.methods().items()}


# --- plain records the pages show ------------------------------------------------------------
@dataclass
class WorkerState:
    alive: bool
    detail: str


@dataclass
class Submission:
    status: str  # cached | queued | unavailable
    job_ids: list[int] = field(default_factory=list)
    message: str = ""


@dataclass
class Progress:
    state: str  # queued | running | done | failed | cancelled | unknown
    done: int = 0
    total: int = 0
    message: str = ""
    error: str = ""

    @property
    def fraction(self) -> float:
        return 0.0 if not self.total else min(1.0, self.done / self.total)


@dataclass(frozen=True)
class MergeRequest:
    """What the Merge & export page asks for: a method, ω per skill, its parameters. A skill's
    ω is a number or, for a base-relative method, a per-layer ω: a tuple of gradient anchors
    (first layer to last; `ptm_core.store.point.omega_value`)."""

    method: str
    omegas: tuple[tuple[str, float | tuple[float, ...]], ...]
    density: float = 0.5

    @classmethod
    def make(cls, method: str, omegas: Mapping, density: float = 0.5) -> "MergeRequest":
        entry = catalogue.methods().get(method)
        if entry is None:
            raise AppDataError(f"unknown method {method!r}; one of {', '.join(catalogue.methods())}")
        try:
            om = tuple((k, omega_value(v)) for k, v in omegas.items())
        except PTMError as e:
            raise AppDataError(str(e)) from None
        if any(is_gradient(v) for _, v in om) and entry.form != "task_arithmetic":
            raise AppDataError(f"{entry.menu_title}: a per-layer ω needs a task-arithmetic merge "
                               "(task arithmetic, TIES or DARE)")
        if not entry.weighted:  # no ω: a skill is in (1) or out (0)
            om = tuple((k, 1.0 if v != 0.0 else 0.0) for k, v in om)
            if not any(v for _, v in om):
                raise AppDataError(f"{entry.menu_title.split(' (')[0]} merges θ_G with skill "
                                   "models: include at least one skill")
        if entry.one_skill and len(om) != 1:
            om = tuple((k, v) for k, v in om if v != 0.0)
            if len(om) != 1:
                raise AppDataError(f"{entry.menu_title} adds one skill at a time: set exactly "
                                   "one skill's ω above 0")
        return cls(method, om, float(density) if entry.sparse else 0.5)

    @property
    def entry(self) -> catalogue.Kind:
        return catalogue.method(self.method)

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def grid_kind(self) -> str:
        """The curve whose measured ω the sliders snap to (sparse merges: task arithmetic's)."""
        return catalogue.curve_of(self.kind)

    @property
    def omega_dict(self) -> dict:
        return dict(self.omegas)

    @property
    def layered(self) -> bool:
        """Some skill's ω is per-layer (a gradient)."""
        return any(is_gradient(v) for _, v in self.omegas)

    @property
    def active(self) -> dict[str, float]:
        return {k: v for k, v in self.omegas if v != 0.0}

    def label(self) -> str:
        if not self.entry.weighted:
            return (f"{self.entry.menu_title.split(' (')[0]} θ_G + "
                    + " + ".join(k for k, _ in self.omegas if _ != 0.0))
        om = ", ".join(f"ω_{k}={format_omega(v)}" for k, v in self.omegas if v != 0.0) \
            or "all ω = 0 (θ_G)"
        extra = f", density={self.density:g}" if self.entry.sparse else ""
        return f"{self.entry.menu_title.split(':')[0].split(' (')[0]} {om}{extra}"
