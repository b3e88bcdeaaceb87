"""The Search page's logic: from the experiment's measured points and an objective the user states
to the predicted Pareto front (with 95 % bands) and the next ω to measure, through
`ptm_core.search` (the same surrogates, acquisition and front as `python -m ptm_core search`).
Pure: no Streamlit; the page lays it out and `ui` memoizes it per results version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ptm_core.app.errors import AppDataError
from ptm_core.errors import PTMError
from ptm_core.search import space, surrogate  # light; acquisition and front (scipy) on use
from ptm_core.search.measured import measured_points
from ptm_core.search.objective import Objective

METHOD = "task_arithmetic"  # the app queues points by their active ω: only here is ω = 0 a no-op
SEED = 0


@dataclass(frozen=True)
class FrontRequest:
    """What the user states: the skills whose ω are searched (and maximised), a weighted sum or
    a Pareto front, general ability within Δ of θ_G (None: unconstrained), and the layer groups
    per skill (1: one ω; 2–4: a per-layer ω, MergeKit gradient anchors, `search.space.Space`)."""

    skills: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    delta: float | None = 5.0
    constraint_axis: str = "general"
    surrogate: str = "gp"
    step: float = 0.05
    groups: int = 1

    def space(self) -> space.Space:
        return space.Space(tuple(self.skills), self.groups, 0.0, 1.0, self.step, SEED)

    def objective(self, floor: float | None) -> Objective:
        constraint = self.constraint_axis if self.delta is not None else None
        return Objective(tuple(self.skills), self.weights, constraint, floor)


@dataclass
class FrontView:
    request: FrontRequest
    objective: Objective
    metrics: tuple[str, ...]  # modelled: the objective's axes, the constraint axis
    measured: pd.DataFrame  # one row per measured point: its ω columns, each metric, feasible
    need: int  # distinct measured ω the surrogate needs
    have: int
    floor: float | None
    front: pd.DataFrame | None  # None: not drawn (message says why)
    message: str = ""
    models: dict = field(default_factory=dict, repr=False)
    candidates: np.ndarray | None = field(default=None, repr=False)
    X: np.ndarray | None = field(default=None, repr=False)
    scores: dict = field(default_factory=dict, repr=False)

    @property
    def space(self) -> space.Space:
        return self.request.space()

    def omegas(self, row: Mapping) -> dict:
        """ω per skill of a row of `measured`, `front` or a suggestion: a number, or a per-layer
        ω as the tuple of its anchors."""
        sp = self.space
        return sp.omegas([float(row[c]) for c in sp.columns()])


def omega_columns(skills: Sequence[str], groups: int = 1) -> list[str]:
    """The tables' ω columns: ω_<skill>, or ω_<skill>[1..G] for G layer groups (space.Space)."""
    return space.Space(tuple(skills), groups).columns()


def validate(req: FrontRequest, axes: Sequence[str]) -> None:
    if not req.skills:
        raise AppDataError("choose at least one skill to maximise")
    missing = [s for s in req.skills if s not in axes]
    if missing:
        raise AppDataError(f"no scores for {', '.join(missing)} in this experiment")
    if req.delta is not None and req.constraint_axis not in axes:
        raise AppDataError(f"no {req.constraint_axis} scores in this experiment: the constraint "
                           "cannot be checked")
    if req.weights is not None and (len(req.weights) != len(req.skills)
                                    or not all(np.isfinite(req.weights))
                                    or all(w == 0 for w in req.weights)):
        raise AppDataError("give every skill a finite weight, not all zero")
    if req.surrogate not in surrogate.KINDS:
        raise AppDataError(f"unknown surrogate {req.surrogate!r}")
    try:
        space.check_groups(req.groups)
    except PTMError as e:
        raise AppDataError(str(e)) from None


def front_view(frame: pd.DataFrame, req: FrontRequest, axes: Sequence[str]) -> FrontView:
    """The measured points of `frame` and, when there are enough of them, the predicted front."""
    validate(req, axes)
    skills = list(req.skills)
    metrics = req.objective(None).metrics
    if req.constraint_axis in axes and req.constraint_axis not in metrics:  # drawn as an axis
        metrics = metrics + (req.constraint_axis,)
    sp = req.space()
    X, scores = measured_points(frame, METHOD, skills, metrics, req.groups)
    need = surrogate.min_points(req.surrogate, sp.dims)
    have = len({tuple(x) for x in X})
    origin = np.flatnonzero(np.all(X == 0, axis=1)) if len(X) else np.array([], int)
    floor = None
    if req.delta is not None and len(origin):
        floor = float(scores[req.constraint_axis][origin[0]]) - req.delta
    obj = req.objective(floor)
    table = pd.DataFrame(X, columns=sp.columns())
    for m in metrics:
        table[m] = scores[m]
    table["label"] = [sp.label(x) for x in X]
    table["feasible"] = [obj.feasible({m: scores[m][i] for m in metrics}) for i in range(len(X))]
    try:
        candidates = sp.candidates()
    except PTMError as e:
        raise AppDataError(str(e)) from None
    view = FrontView(req, obj, metrics, table, need, have, floor, None, candidates=candidates,
                     X=X, scores=scores)
    if have < need:
        dims = f" over {sp.dims} dimensions" if req.groups > 1 else ""
        view.message = (f"{have} distinct ω measured for {' + '.join(skills)}; the "
                        f"{req.surrogate} surrogate{dims} needs at least {need} before it can "
                        "predict a front. Suggest next proposes an initial design to measure.")
        return view
    if req.delta is not None and floor is None:
        view.message = (f"θ_G's {req.constraint_axis} score (the ω = 0 point) is not measured, so "
                        f"the floor “{req.constraint_axis} within {req.delta:g} of θ_G” cannot be "
                        "set: measure it first, or drop the constraint.")
        return view
    from ptm_core.search.front import predicted_front
    view.models = surrogate.fit_all(req.surrogate, X, scores, seed=SEED)
    f = predicted_front(view.models, obj, candidates)
    view.front = _front_table(view, f.omega, f.p_feasible)
    if view.front.empty:
        view.message = ("No ω on the lattice is predicted to meet the constraint "
                        f"({obj.describe()}): nothing to draw.")
    return view


def _predicted_table(view: FrontView, omega: np.ndarray) -> pd.DataFrame:
    """ω rows with each metric's predicted mean and 95 % band."""
    from ptm_core.search.front import Z95
    sp = view.space
    out = pd.DataFrame(np.asarray(omega, dtype=float).reshape(-1, sp.dims), columns=sp.columns())
    if len(out):
        means, sds = surrogate.predict_all(view.models, omega)
        for m in view.metrics:
            out[m] = means[m]
            out[f"{m}_lo"] = means[m] - Z95 * sds[m]
            out[f"{m}_hi"] = means[m] + Z95 * sds[m]
    else:
        for m in view.metrics:
            out[m] = out[f"{m}_lo"] = out[f"{m}_hi"] = []
    out["label"] = [sp.label(row) for row in out[sp.columns()].to_numpy()]
    return out


def _front_table(view: FrontView, omega: np.ndarray, p_feasible: np.ndarray) -> pd.DataFrame:
    out = _predicted_table(view, omega)
    out["p_feasible"] = np.asarray(p_feasible, dtype=float)
    return out


def suggest(view: FrontView, q: int, exclude: Sequence[Mapping] = ()) -> pd.DataFrame:
    """The next `q` ω to measure (candidates in [0, 1], none measured or in `exclude`, ω per
    skill: a number or a per-layer tuple): the acquisition's batch when the front can be
    predicted, else the initial design (ω = 0 first, then a scrambled Sobol sample). Columns:
    the space's ω columns, label, why, and predicted means/bands where there is a surrogate."""
    sp = view.space
    cand = view.candidates
    vecs = [v for v in (sp.vector(e) for e in exclude) if v is not None]
    ex = (np.flatnonzero(np.any(np.all(np.abs(cand[:, None, :] - np.array(vecs)[None]) < 1e-6,
                                       axis=2), axis=1)).tolist() if vecs else [])
    if view.front is None:
        have = {tuple(x) for x in np.round(view.X, 6)} | {tuple(np.round(cand[i], 6)) for i in ex}
        design = space.initial_design(cand, max(view.need, q) + len(have), SEED)
        picks = [i for i in design if tuple(np.round(cand[i], 6)) not in have][:q]
        out = pd.DataFrame(cand[picks].reshape(-1, sp.dims), columns=sp.columns())
        out["label"] = [sp.label(r) for r in cand[picks]]
        out["why"] = "initial design"
        return out
    from ptm_core.search import acquisition
    obj = view.objective
    ref = _reference(view)
    picks, _ = acquisition.propose(obj, view.X, view.scores, cand, q=q, ref=ref,
                                   kind=view.request.surrogate, seed=SEED, exclude=ex)
    out = _predicted_table(view, cand[picks])
    out["why"] = "improves the predicted front"
    return out


def _reference(view: FrontView) -> list[float]:
    """The hypervolume's reference: the ω = 0 point's objective values (as the CLI's)."""
    obj, X = view.objective, view.X
    A = np.column_stack([view.scores[a] for a in obj.axes])
    origin = np.flatnonzero(np.all(X == 0, axis=1))
    v = obj.values(A[origin[0]] if len(origin) else A.min(axis=0))
    return [float(x) for x in np.atleast_1d(v)]


def lattice_step(k: int) -> float:
    """The suggestions' ω step for k dimensions (skills × layer groups): fine for two, coarser
    where the lattice (and the acquisition's hypervolume over every candidate) would grow past
    a page's patience; past 50,000 points (2 skills × 4 groups at 0.25) the space samples it."""
    return 0.05 if k <= 2 else 0.1 if k <= 4 else 0.25


def plot_axes(view: FrontView) -> tuple[str, str] | None:
    """The chart's (x, y): the first two maximised skills, or (constraint axis, the skill);
    None for one skill without a constraint axis scored."""
    axes = list(view.request.skills)
    if len(axes) >= 2:
        return axes[0], axes[1]
    if view.request.constraint_axis in view.metrics:
        return view.request.constraint_axis, axes[0]
    return None
