"""Building evaluation points (`ptm_core.store.point.Point`) from an experiment.

A point is what a sweep or the app asks to measure: the recipe (MergeKit YAML), its kind
(ptm, linear, wise_ft, cft, ...), the skills it adds, ω per skill, its data size and the training
steps it cost. `RecipeBuilder` turns experiment facts into recipes; the default one uses the
paper's forms in `ptm_core.merge.ptm` (imported lazily, so planning a sweep needs no torch).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

from ptm_core import catalogue
from ptm_core.errors import PTMError
from ptm_core.store.experiment import Experiment
from ptm_core.store.point import (
    Point, RecipeLike, format_omega, is_gradient, make_point, omega_value, round_omega,
)

class RecipeBuilder(Protocol):
    def task_arithmetic(self, pre: str, general: str, skills: Mapping[str, str],
                        omegas: Mapping[str, Any], *, method: str = "task_arithmetic",
                        **params: Any) -> RecipeLike: ...  # ω: a number or a gradient list
    def linear(self, pre: str, general: str, skill: str, omega: float) -> RecipeLike: ...
    def wise_ft(self, general: str, cft: str, omega: float) -> RecipeLike: ...
    def slerp(self, general: str, skill: str, omega: float) -> RecipeLike: ...
    def nuslerp(self, pre: str, general: str, skill: str, omega: float) -> RecipeLike: ...
    def unweighted(self, method: str, pre: str | None, general: str,
                   skills: Mapping[str, str], **params: Any) -> RecipeLike: ...
    def single(self, model: str) -> RecipeLike: ...
    def load(self, yaml_text: str) -> RecipeLike: ...


class MergeKitBuilder:
    """The real recipes: `ptm_core.merge.ptm` forms, `ptm_core.merge.recipe.Recipe`."""

    def task_arithmetic(self, pre, general, skills, omegas, *, method="task_arithmetic", **params):
        from ptm_core.merge import ptm
        return ptm.task_arithmetic(pre, general, dict(skills), dict(omegas), method=method, **params)

    def linear(self, pre, general, skill, omega):
        from ptm_core.merge import ptm
        return ptm.linear_interpolation(pre, general, skill, omega)

    def wise_ft(self, general, cft, omega):
        from ptm_core.merge import ptm
        return ptm.wise_ft(general, cft, omega)

    def slerp(self, general, skill, omega):
        from ptm_core.merge import ptm
        return ptm.slerp(general, skill, omega)

    def nuslerp(self, pre, general, skill, omega):
        from ptm_core.merge import ptm
        return ptm.nuslerp(pre, general, skill, omega)

    def unweighted(self, method, pre, general, skills, **params):
        from ptm_core.merge import ptm
        return ptm.unweighted(method, pre, general, dict(skills), **params)

    def single(self, model):
        """One model as it is: a linear merge of one input with weight 1 (exact)."""
        from ptm_core.merge.recipe import Recipe
        return Recipe.parse({"merge_method": "linear",
                             "models": [{"model": model, "parameters": {"weight": 1.0}}]})

    def load(self, yaml_text):
        from ptm_core.merge.recipe import Recipe
        return Recipe.from_yaml(yaml_text, source="job recipe")


def method_recipe(b: RecipeBuilder, method: str, omegas: Mapping[str, float], *, pre: str,
                  general: str, skills: Mapping[str, str], cft: Mapping[str, str] | None = None,
                  density: float = 0.5) -> RecipeLike:
    """The one way from (method, ω per skill) to a recipe, over checkpoints by role: θ_pre,
    θ_G, each skill's θ_D and (WiSE-FT) each skill's CFT checkpoint. One-skill methods take
    exactly one ω; unweighted methods (Model Stock, SCE, Karcher) merge θ_G with the θ_D of
    every skill named in `omegas` and ignore the values."""
    entry = catalogue.method(method)
    if entry.one_skill:
        (skill, w), = omegas.items()
        if entry.form == "linear":
            return b.linear(pre, general, skills[skill], w)
        if entry.form == "slerp":
            return b.slerp(general, skills[skill], w)
        if entry.form == "nuslerp":
            return b.nuslerp(pre, general, skills[skill], w)
        return b.wise_ft(general, (cft or {})[skill], w)
    if not entry.weighted:
        return b.unweighted(entry.merge_method, pre if entry.over_base else None, general,
                            {s: skills[s] for s in omegas})
    params: dict[str, Any] = {"density": float(density), "normalize": False} if entry.sparse else {}
    return b.task_arithmetic(pre, general, dict(skills), dict(omegas), method=entry.merge_method,
                             **params)


def _sum_or_none(values: Iterable[int | None]) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def _is_heuristic(exp: Experiment, skill: str, w: Any) -> bool:
    if is_gradient(w):
        return False
    return math.isclose(w, round_omega(exp.heuristic_omega(skill)), abs_tol=1e-9)


def _fmt(w: float) -> str:
    return f"{round_omega(w):g}"


# ---- point constructors --------------------------------------------------------------------
def base_points(exp: Experiment, b: RecipeBuilder) -> list[Point]:
    """θ_pre alone, θ_G alone, and each θ_D alone."""
    pts = [
        make_point(exp, b.single(exp.base), kind="base", skills=(), omega=None, label="θ_pre (base)",
                   data_size=None, train_steps=0, method="single"),
        make_point(exp, b.single(exp.general.model), kind="general", skills=(), omega=None,
                   label="θ_G (general)", data_size=None, train_steps=0, method="single"),
    ]
    for name, s in exp.skills.items():
        pts.append(make_point(exp, b.single(s.model), kind="skill", skills=(name,), omega=None,
                              label=f"θ_D {name}", data_size=s.size,
                              train_steps=exp.skill_steps(name), method="single"))
    return pts


def reference_points(exp: Experiment, b: RecipeBuilder, skills: Sequence[str] | None = None,
                     *, exactly: bool = False) -> list[Point]:
    """CFT and RT reference checkpoints (imported scores are not points: see frame.py); with
    `skills`, only those trained on no other skill (a one-skill sweep measures its own CFT/RT),
    and with `exactly`, only those trained on all of them."""
    def chosen(r) -> bool:
        if skills is None:
            return not exactly or set(r.skills) == set(exp.skills)
        return set(r.skills) == set(skills) if exactly else set(r.skills) <= set(skills)

    return [make_point(exp, b.single(r.model), kind=r.kind,
                       skills=[s for s in exp.skills if s in r.skills], omega=None,
                       label=r.display_label(), data_size=r.data_size, train_steps=r.train_steps,
                       method="single")
            for r in exp.references if r.model and chosen(r)]


def ptm_point(exp: Experiment, b: RecipeBuilder, omegas: Mapping[str, Any], *,
              method: str = "task_arithmetic", density: float = 0.5) -> Point:
    """Task arithmetic (Eq. 2) or a sparse variant (TIES/DARE) over the given skills; a skill's
    ω may be per-layer (a gradient list, `store.point.omega_value`), labelled "ω_s=[0.2, 0.6]"."""
    unknown = [s for s in omegas if s not in exp.skills]
    if unknown:
        raise PTMError(f"unknown skill(s) {', '.join(unknown)} for experiment {exp.name!r} "
                       f"(skills: {', '.join(exp.skills)})")
    if not omegas:
        raise PTMError("a PTM point needs ω for at least one skill")
    skills = [s for s in exp.skills if s in omegas]  # experiment order
    om = {s: omega_value(omegas[s]) for s in skills}
    entry = catalogue.methods().get(method)
    if entry is None or entry.form != "task_arithmetic":
        based = [m for m, e in catalogue.methods().items() if e.form == "task_arithmetic"]
        raise PTMError(f"ptm_point: method {method!r} is not a base-relative merge "
                       f"(use {', '.join(based)})")
    recipe = method_recipe(b, method, om, pre=exp.base, general=exp.general.model,
                           skills={s: exp.skills[s].model for s in skills}, density=density)
    heur = all(_is_heuristic(exp, s, om[s]) for s in skills)
    label = ", ".join(f"ω_{s}={format_omega(om[s])}" for s in skills)
    if method != "task_arithmetic":
        label = f"{method} {label}"
    return make_point(exp, recipe, kind=entry.kind, skills=skills, omega=om,
                      label=label + (" (heuristic)" if heur else ""),
                      data_size=sum(exp.skills[s].size for s in skills),
                      train_steps=_sum_or_none(exp.skill_steps(s) for s in skills),
                      method=method, heuristic=heur)


def linear_point(exp: Experiment, b: RecipeBuilder, skill: str, omega: float, *,
                 method: str = "linear") -> Point:
    """A two-model interpolation θ_G → θ_D at ω: linear (Eq. 4: θ_pre + ω τ_D + (1 − ω) τ_G),
    slerp (the arc θ_G → θ_D) or nuslerp (θ_pre + the arc τ_G → τ_D)."""
    entry = catalogue.method(method)
    if entry.form not in ("linear", "slerp", "nuslerp"):
        raise PTMError(f"linear_point: method {method!r} does not interpolate θ_G → θ_D")
    w = round_omega(omega)
    recipe = method_recipe(b, method, {skill: w}, pre=exp.base, general=exp.general.model,
                           skills={skill: exp.skills[skill].model})
    heur = _is_heuristic(exp, skill, w)
    return make_point(exp, recipe, kind=entry.kind, skills=(skill,), omega={skill: w},
                      label=f"{method} ω_{skill}={_fmt(w)}" + (" (heuristic)" if heur else ""),
                      data_size=exp.skills[skill].size, train_steps=exp.skill_steps(skill),
                      method=method, heuristic=heur)


def unweighted_point(exp: Experiment, b: RecipeBuilder, method: str,
                     skills: Iterable[str]) -> Point:
    """A method that weighs its inputs itself (Model Stock, SCE, Karcher) over θ_G and the
    given skills' θ_D: one point per skill set, with ω = 1 for each skill merged in (a
    membership mark, not a weight: catalogue.FORMS)."""
    entry = catalogue.method(method)
    if entry.weighted:
        raise PTMError(f"unweighted_point: method {method!r} takes ω")
    wanted = set(skills)
    unknown = sorted(wanted - set(exp.skills))
    if unknown:
        raise PTMError(f"unknown skill(s) {', '.join(unknown)} for experiment {exp.name!r} "
                       f"(skills: {', '.join(exp.skills)})")
    names = [s for s in exp.skills if s in wanted]  # experiment order
    if not names:
        raise PTMError(f"a {method} point needs at least one skill")
    om = {s: 1.0 for s in names}
    recipe = method_recipe(b, method, om, pre=exp.base, general=exp.general.model,
                           skills={s: exp.skills[s].model for s in names})
    return make_point(exp, recipe, kind=entry.kind, skills=names, omega=om,
                      label=f"{method} θ_G + {' + '.join(names)}",
                      data_size=sum(exp.skills[s].size for s in names),
                      train_steps=_sum_or_none(exp.skill_steps(s) for s in names), method=method)


def wise_ft_point(exp: Experiment, b: RecipeBuilder, skill: str, omega: float) -> Point | None:
    """Eqs. 5-6 toward the experiment's CFT checkpoint on the most data; None without one."""
    ref = exp.cft_model(skill)
    if ref is None:
        return None
    w = round_omega(omega)
    recipe = method_recipe(b, "wise_ft", {skill: w}, pre=exp.base, general=exp.general.model,
                           skills={}, cft={skill: ref.model})  # type: ignore[dict-item]
    heur = _is_heuristic(exp, skill, w)
    return make_point(exp, recipe, kind="wise_ft", skills=(skill,), omega={skill: w},
                      label=f"WiSE-FT ω_{skill}={_fmt(w)}" + (" (heuristic)" if heur else ""),
                      data_size=ref.data_size, train_steps=ref.train_steps, method="wise_ft",
                      heuristic=heur)


def method_point(exp: Experiment, b: RecipeBuilder, method: str,
                 omegas: Mapping[str, Any], *, density: float = 0.5) -> Point | None:
    """Any sweep method at the given ω. One-skill methods (linear, wise_ft, slerp, nuslerp)
    take exactly one skill; unweighted ones merge the skills whose ω is not 0; a per-layer ω
    (gradient list) only the base-relative ones (task arithmetic, TIES, DARE)."""
    entry = catalogue.methods().get(method)
    if entry is None:
        raise PTMError(f"unknown method {method!r}; methods: {', '.join(catalogue.methods())}")
    layered = [s for s, w in omegas.items() if is_gradient(omega_value(w))]
    if layered and entry.form != "task_arithmetic":
        based = [m for m, e in catalogue.methods().items() if e.form == "task_arithmetic"]
        raise PTMError(f"{method}: a per-layer ω (for {', '.join(layered)}) needs a base-relative "
                       f"merge ({', '.join(based)})")
    if not entry.weighted:
        return unweighted_point(exp, b, method, [s for s, w in omegas.items() if w != 0])
    if entry.one_skill:
        if len(omegas) != 1:
            raise PTMError(f"{method} interpolates one skill at a time; got {', '.join(omegas)}")
        (skill, w), = omegas.items()
        if skill not in exp.skills:
            raise PTMError(f"unknown skill {skill!r} for experiment {exp.name!r}")
        if entry.form == "wise_ft":
            return wise_ft_point(exp, b, skill, w)
        return linear_point(exp, b, skill, w, method=method)
    return ptm_point(exp, b, omegas, method=method, density=density)


@dataclass
class Grid:
    omegas: Sequence[float] = field(default_factory=lambda: [i / 10 for i in range(11)])
    methods: Sequence[str] = ("task_arithmetic",)
    skills: Sequence[str] | None = None  # None: all skills
    pairs: bool = False  # every pair of skills at their heuristic ω
    heuristic: bool = False  # each skill and all skills together at the heuristic ω
    product: bool = False  # every combination of the ω values over the skills (11^k points)
    density: float = 0.5
    baselines: bool = True  # θ_pre, θ_G, each θ_D alone
    references: bool = True  # CFT / RT checkpoints
    together: bool = False  # only points over all the chosen skills at once (no single-skill ones)


def grid_points(exp: Experiment, b: RecipeBuilder, grid: Grid) -> tuple[list[Point], list[str]]:
    """The points of a sweep (deduplicated by recipe key) and notes on what was skipped."""
    skills = list(grid.skills) if grid.skills is not None else list(exp.skills)
    unknown = [s for s in skills if s not in exp.skills]
    if unknown:
        raise PTMError(f"unknown skill(s) {', '.join(unknown)}; experiment {exp.name!r} has "
                       f"{', '.join(exp.skills)}")
    bad = [m for m in grid.methods if m not in catalogue.methods()]
    if bad:
        raise PTMError(f"unknown method(s) {', '.join(bad)}; methods: {', '.join(catalogue.methods())}")
    pts: list[Point] = []
    notes: list[str] = []
    if grid.baselines:
        pts += base_points(exp, b)
    if grid.references:
        pts += reference_points(exp, b, grid.skills, exactly=grid.together)
    heur = {s: exp.heuristic_omega(s) for s in skills}
    singles = skills if not grid.together or len(skills) == 1 else []
    if grid.together and grid.pairs and len(skills) > 2:
        notes.append("--together: pairs skipped (they are not all the chosen skills)")
    for method in grid.methods:
        if not catalogue.method(method).weighted:
            # no ω: each skill alone, and (pairs) each pair and all of them together
            sets = [[s] for s in singles]
            if grid.pairs and not (grid.together and len(skills) > 2):
                sets += [list(p) for p in itertools.combinations(skills, 2)]
            if len(skills) > 1:
                sets.append(list(skills))
            pts += [unweighted_point(exp, b, method, ss) for ss in sets]
            continue
        for s in singles:
            ws = list(grid.omegas) + ([heur[s]] if grid.heuristic else [])
            for w in ws:
                p = method_point(exp, b, method, {s: w}, density=grid.density)
                if p is None:
                    notes.append(f"{method} for {s}: skipped, the experiment has no CFT checkpoint "
                                 f"for {s} (references with kind: cft, skills: [{s}], model: ...)")
                    break
                pts.append(p)
        if catalogue.method(method).one_skill:
            if grid.pairs or grid.product or (grid.heuristic and len(skills) > 1):
                notes.append(f"{method} takes one skill at a time: pairs/product/all-skills "
                             f"skipped")
            continue
        if grid.product and len(skills) > 1:
            for ws in itertools.product(grid.omegas, repeat=len(skills)):
                pts.append(ptm_point(exp, b, dict(zip(skills, ws)), method=method,
                                     density=grid.density))
        if grid.pairs and not (grid.together and len(skills) > 2):
            for a, c in itertools.combinations(skills, 2):
                pts.append(ptm_point(exp, b, {a: heur[a], c: heur[c]}, method=method,
                                     density=grid.density))
        if grid.heuristic and len(skills) > 1:
            pts.append(ptm_point(exp, b, heur, method=method, density=grid.density))
    seen: set[str] = set()
    out = []
    for p in pts:
        if p.recipe_key not in seen:
            seen.add(p.recipe_key)
            out.append(p)
    return out, notes
