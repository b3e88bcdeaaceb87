"""The one catalogue of point kinds and merge methods, read by every layer.

Each kind of point in the results frame has one entry: its title, its colour and marker in
charts, and, for a merge, the method a sweep or the app names (`--methods`, the Merge page's
menu), the recipe's `merge_method`, the recipe form it is built with, whether it adds one skill
at a time, whether it is sparse (takes a density) and whether its points form a curve over ω.
The sweep's method choices, the app's method menu, the frame's row order, the chart legends and
the tables all derive from `KINDS`; a new merge method costs one `register(Kind(...))` here
(its math is one entry in `ptm_core.merge.methods`), as in MergeKit's registry.

Pure data: no imports beyond the error type, so the store, the analysis and the app share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ptm_core.errors import RecipeError

# How a recipe is built from (θ_pre, θ_G, θ_D, θ_CFT, ω) (ptm_core.merge.ptm):
#   task_arithmetic  base θ_pre, θ_G weight 1, each skill weight ω (any number of skills)
#   linear           θ_G weight 1 − ω, θ_D weight ω (one skill)
#   wise_ft          base θ_G, θ_CFT weight ω (one skill)
#   slerp            base θ_G, θ_D; t = ω (one skill: the arc from θ_G to θ_D)
#   nuslerp          base θ_pre, θ_G weight 1 − ω, θ_D weight ω (one skill: the arc from τ_G to τ_D)
#   unweighted       θ_G and each θ_D (base θ_pre where the method takes one); no ω: the method
#                    weighs the models itself, and each skill merged in is recorded with ω = 1
FORMS = ("task_arithmetic", "linear", "wise_ft", "slerp", "nuslerp", "unweighted")
ONE_SKILL_FORMS = ("linear", "wise_ft", "slerp", "nuslerp")


@dataclass(frozen=True)
class Kind:
    kind: str  # the results frame's `kind`
    title: str  # legends and tables
    color: str
    marker: str = "circle"  # Plotly marker symbol
    role: str = "merge"  # model (θ_pre, θ_G, θ_D alone) | merge | reference (CFT, RT checkpoints)
    # merges only:
    method: str | None = None  # the name sweeps and the app use
    method_title: str | None = None  # the app's method menu
    merge_method: str | None = None  # the recipe's merge_method
    form: str = "task_arithmetic"  # FORMS (above)
    sparse: bool = False  # takes a density (TIES, DARE)
    curve: bool = False  # its points form a curve over ω, one per skill
    over_base: bool = True  # unweighted form: the recipe names θ_pre as base_model

    @property
    def menu_title(self) -> str:
        return self.method_title or self.title

    @property
    def one_skill(self) -> bool:
        """linear, WiSE-FT and the SLERP pair interpolate between two models: one skill at a
        time."""
        return self.form in ONE_SKILL_FORMS

    @property
    def weighted(self) -> bool:
        """False for methods that choose their own weights (Model Stock, SCE, Karcher): their
        ω only says which skills are merged in (1: in)."""
        return self.form != "unweighted"


KINDS: dict[str, Kind] = {}  # kind -> entry, in the order tables and the frame list them


def register(entry: Kind) -> Kind:
    if entry.role == "merge" and (not entry.method or not entry.merge_method):
        raise ValueError(f"catalogue: merge kind {entry.kind!r} needs a method and a merge_method")
    if entry.form not in FORMS:
        raise ValueError(f"catalogue: kind {entry.kind!r} has form {entry.form!r}; forms: {FORMS}")
    if entry.form == "unweighted" and (entry.curve or entry.sparse):
        raise ValueError(f"catalogue: unweighted kind {entry.kind!r} has no ω curve or density")
    KINDS[entry.kind] = entry
    return entry


for _entry in (
    Kind("base", "θ_pre (base)", "#bcbd22", "cross", role="model"),
    Kind("general", "θ_G (general)", "#111111", "star", role="model"),
    Kind("skill", "θ_D (skill only)", "#7f7f7f", "x", role="model"),
    Kind("ptm", "PTM (task arithmetic)", "#1f77b4", method="task_arithmetic",
         method_title="PTM: task arithmetic (Eq. 2)", merge_method="task_arithmetic", curve=True),
    Kind("linear", "Linear interpolation", "#ff7f0e", method="linear",
         method_title="Linear interpolation (Eq. 4)", merge_method="linear", form="linear",
         curve=True),
    Kind("wise_ft", "WiSE-FT", "#2ca02c", method="wise_ft", method_title="WiSE-FT (Eqs. 5-6)",
         merge_method="task_arithmetic", form="wise_ft", curve=True),
    Kind("ties", "TIES", "#8c564b", "triangle-up", method="ties", method_title="TIES",
         merge_method="ties", sparse=True),
    Kind("dare_ties", "DARE-TIES", "#e377c2", "triangle-down", method="dare_ties",
         method_title="DARE-TIES", merge_method="dare_ties", sparse=True),
    Kind("dare_linear", "DARE (linear)", "#e377c2", "triangle-down", method="dare_linear",
         method_title="DARE (linear)", merge_method="dare_linear", sparse=True),
    Kind("slerp", "SLERP θ_G→θ_D", "#17becf", method="slerp",
         method_title="SLERP: θ_G to θ_D on the sphere, t = ω", merge_method="slerp",
         form="slerp", curve=True),
    Kind("nuslerp", "NuSLERP τ_G→τ_D", "#aec7e8", method="nuslerp",
         method_title="NuSLERP: τ_G to τ_D on the sphere (spherical Eq. 4)",
         merge_method="nuslerp", form="nuslerp", curve=True),
    Kind("multislerp", "Multi-SLERP", "#98df8a", method="multislerp",
         method_title="Multi-SLERP: spherical mean of τ_G and ω·τ_D", merge_method="multislerp",
         curve=True),
    Kind("model_stock", "Model Stock", "#c5b0d5", "hexagon", method="model_stock",
         method_title="Model Stock (no ω: weights from the models' angles)",
         merge_method="model_stock", form="unweighted"),
    Kind("sce", "SCE", "#c49c94", "hexagram", method="sce",
         method_title="SCE (no ω: weights from the task vectors' variance)", merge_method="sce",
         form="unweighted"),
    Kind("karcher", "Karcher mean", "#f7b6d2", "star-diamond", method="karcher",
         method_title="Karcher mean (no ω: the models' Riemannian mean)", merge_method="karcher",
         form="unweighted", over_base=False),
    Kind("cft", "CFT", "#d62728", "square", role="reference"),
    Kind("rt", "RT", "#9467bd", "diamond", role="reference"),
):
    register(_entry)


# ---- views (computed on each call, so an entry registered later shows everywhere) -----------
def kind_order() -> list[str]:
    return list(KINDS)


def merge_kinds() -> tuple[str, ...]:
    return tuple(k for k, e in KINDS.items() if e.role == "merge")


def curve_kinds() -> tuple[str, ...]:
    return tuple(k for k, e in KINDS.items() if e.curve)


def curve_of(kind: str) -> str:
    """The curve a kind's points are read against: its own, else task arithmetic's (sparse
    merges share the ω grid of the merge they sparsify)."""
    return kind if kind in curve_kinds() else "ptm"


def reference_kinds() -> tuple[str, ...]:
    return tuple(k for k, e in KINDS.items() if e.role == "reference")


def methods() -> dict[str, Kind]:
    """Method name -> its entry, in catalogue order (the sweep's and the app's choices)."""
    return {e.method: e for e in KINDS.values() if e.role == "merge" and e.method}


def method(name: str) -> Kind:
    found = methods().get(name)
    if found is None:
        raise KeyError(name)
    return found


def method_of_kind(kind: str) -> str | None:
    e = KINDS.get(kind)
    return e.method if e is not None and e.role == "merge" else None


def sparse_methods() -> tuple[str, ...]:
    return tuple(m for m, e in methods().items() if e.sparse)


def kind_title(kind: str) -> str:
    e = KINDS.get(kind)
    return e.title if e is not None else kind


def heuristic_omega(d_size: float, g_size: float) -> float:
    """Paper Eq. 7: weight a skill by its data size relative to the general data, ω = |D|/|G|."""
    for name, v in (("|D|", d_size), ("|G|", g_size)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise RecipeError(f"heuristic ω needs positive finite sizes; got {name} = {v!r}")
    return float(d_size) / float(g_size)
