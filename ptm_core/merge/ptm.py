"""The paper's parallel-train-then-merge (PTM) forms as recipe builders.

Each returns a MergeKit recipe, so the merge it describes reproduces with `mergekit-yaml`:

- task arithmetic (Eq. 2):   θ = θ_G + Σ_k ω_k τ_k,  τ_k = θ_k − θ_pre
    -> task_arithmetic, base θ_pre, θ_G with weight 1, each skill with weight ω_k (a number, or
       a per-layer ω: MergeKit's gradient list [ω at the first layer, ..., ω at the last])
- linear interpolation (Eq. 4):   θ = θ_pre + ω τ_D + (1 − ω) τ_G  =  ω θ_D + (1 − ω) θ_G
    -> linear, θ_G with weight 1 − ω and θ_D with weight ω (weights sum to 1)
- WiSE-FT (Eqs. 5-6):   θ = θ_G + ω (θ_CFT − θ_G)
    -> task_arithmetic, base θ_G, θ_CFT with weight ω
- SLERP θ_G → θ_D:   θ = slerp(ω; θ_G, θ_D)
    -> slerp, base θ_G, θ_G and θ_D listed, t = ω (ω = 0: θ_G, ω = 1: θ_D)
- NuSLERP τ_G → τ_D (a spherical Eq. 4):   θ = θ_pre + slerp(ω; τ_G, τ_D)
    -> nuslerp, base θ_pre, θ_G weight 1 − ω, θ_D weight ω
- unweighted methods (model_stock, sce, karcher): θ_G and every skill's θ_D, base θ_pre where
    the method takes one; the method weighs the models itself, so there is no ω
- heuristic (Eq. 7):   ω = |D| / |G|

Merged checkpoints copy config and tokenizer (with its chat template) from the first model
under `models:`: θ_G for every form but WiSE-FT, θ_CFT (θ_G continued, same tokenizer) there.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ptm_core.catalogue import heuristic_omega  # noqa: F401 - Eq. 7, one definition for all layers
from ptm_core.errors import RecipeError
from ptm_core.merge.recipe import Recipe


def _omega(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecipeError(f"ω for {what} must be a finite number, got {value!r}")
    return float(value)


def _weight(value: Any, what: str) -> float | list[float]:
    """A skill's ω: a number, or a per-layer ω as MergeKit's gradient list (anchors spread
    evenly from the first layer to the last, interpolated between)."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise RecipeError(f"per-layer ω for {what} is an empty list")
        return [_omega(v, what) for v in value]
    return _omega(value, what)


def task_arithmetic(pre: str, general: str, skills: Mapping[str, str],
                    omegas: Mapping[str, Any], *, method: str = "task_arithmetic",
                    **params: Any) -> Recipe:
    """Eq. 2 with one ω per skill, or a per-layer ω (a gradient list: `_weight`). `method` may
    be any base-relative method (ties, dare_ties, ...) with its recipe-wide `params` (density,
    ...) for the paper's Table 6 variants."""
    missing = set(skills) - set(omegas)
    if missing:
        raise RecipeError(f"no ω given for skill(s) {', '.join(sorted(missing))}")
    unknown = set(omegas) - set(skills)
    if unknown:
        raise RecipeError(f"ω given for unknown skill(s) {', '.join(sorted(unknown))}")
    models = [{"model": general, "parameters": {"weight": 1.0}}]
    models += [{"model": path, "parameters": {"weight": _weight(omegas[name], name)}}
               for name, path in skills.items()]
    return Recipe.parse({"merge_method": method, "base_model": pre, "models": models,
                         **({"parameters": params} if params else {})})


def linear_interpolation(pre: str, general: str, skill: str, omega: float) -> Recipe:
    """Eq. 4. θ_pre cancels out: the result is ω θ_D + (1 − ω) θ_G, which is what MergeKit's
    `linear` computes with weights that sum to one. `pre` is kept in the signature for the
    paper's form and must be the common base of both models."""
    w = _omega(omega, "linear interpolation")
    del pre  # cancels; see docstring
    return Recipe.parse({"merge_method": "linear", "models": [
        {"model": general, "parameters": {"weight": 1.0 - w}},
        {"model": skill, "parameters": {"weight": w}},
    ]})


def wise_ft(general: str, cft: str, omega: float) -> Recipe:
    """Eqs. 5-6: move θ_G a fraction ω of the way towards its continued-finetuned θ_CFT."""
    return Recipe.parse({"merge_method": "task_arithmetic", "base_model": general, "models": [
        {"model": cft, "parameters": {"weight": _omega(omega, "WiSE-FT")}},
    ]})


def slerp(general: str, skill: str, omega: float) -> Recipe:
    """SLERP from θ_G (ω = 0) to θ_D (ω = 1) along the arc between them, tensor by tensor."""
    return Recipe.parse({"merge_method": "slerp", "base_model": general,
                         "parameters": {"t": _omega(omega, "SLERP")},
                         "models": [{"model": general}, {"model": skill}]})


def nuslerp(pre: str, general: str, skill: str, omega: float) -> Recipe:
    """NuSLERP of the task vectors: θ_pre + slerp(ω; τ_G, τ_D), Eq. 4 with the chord replaced
    by the arc (MergeKit's t is the second model's share of the weights: ω)."""
    w = _omega(omega, "NuSLERP")
    return Recipe.parse({"merge_method": "nuslerp", "base_model": pre, "models": [
        {"model": general, "parameters": {"weight": 1.0 - w}},
        {"model": skill, "parameters": {"weight": w}},
    ]})


def unweighted(method: str, pre: str | None, general: str, skills: Mapping[str, str],
               **params: Any) -> Recipe:
    """θ_G and each skill's θ_D under a method that weighs them itself (Model Stock, SCE,
    Karcher); `pre` is the base where the method takes one (None: no base_model)."""
    if not skills:
        raise RecipeError(f"{method} needs at least one skill model besides θ_G")
    models = [{"model": general}] + [{"model": path} for path in skills.values()]
    return Recipe.parse({"merge_method": method, "models": models,
                         **({"base_model": pre} if pre else {}),
                         **({"parameters": params} if params else {})})
