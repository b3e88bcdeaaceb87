"""An evaluation point as the store records it: one recipe plus what the results table says
about it (kind, skills, ω per skill, data size, training steps). Plain data; building points
from an experiment is `ptm_core.orchestrate.points`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Protocol, Sequence

from ptm_core.errors import PTMError
from ptm_core.store.experiment import Experiment

OMEGA_DECIMALS = 6  # ω is rounded to this many decimals everywhere (grid points compare equal)


class RecipeLike(Protocol):
    def key(self) -> str: ...
    def to_yaml(self) -> str: ...
    def model_refs(self) -> list[str]: ...
    # optional: def with_refs(self, mapping: dict[str, str]) -> RecipeLike  (portable keys)
    # optional: def all_refs(self) -> list[str]  (model_refs plus models read for something
    #           other than weights, e.g. a tokenizer source: see recipe_refs)


def recipe_refs(recipe: RecipeLike) -> list[str]:
    """Every model a recipe's result depends on, in the recipe's order: its `all_refs()` where
    it has one (a MergeKit recipe adds a model named only as `tokenizer_source`), else its
    `model_refs()`. Keys, fingerprints and the experiment check all take this list, so two
    recipes that differ only in such a model never share a result."""
    all_refs = getattr(recipe, "all_refs", None)
    return list(all_refs() if all_refs is not None else recipe.model_refs())


def role_map(exp: Experiment) -> dict[str, str]:
    """Model path -> its role in the experiment (@pre, @general, @skill:NAME, @cft:...)."""
    roles: dict[str, str] = {}
    roles.setdefault(exp.base, "@pre")
    roles.setdefault(exp.general.model, "@general")
    for name, s in exp.skills.items():
        roles.setdefault(s.model, f"@skill:{name}")
    for i, r in enumerate(exp.references):
        if r.model:
            roles.setdefault(r.model, f"@{r.kind}:{'+'.join(r.skills)}:{r.data_size}:{i}")
    return roles


def portable_key(recipe: RecipeLike, exp: Experiment) -> str:
    """The recipe's key with model paths replaced by their roles in the experiment, so the
    same point has the same id on every machine (paths differ between checkouts)."""
    with_refs = getattr(recipe, "with_refs", None)
    if with_refs is None:
        return recipe.key()
    roles = role_map(exp)
    return with_refs({r: roles[r] for r in recipe_refs(recipe) if r in roles}).key()


def round_omega(w: float) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
        raise PTMError(f"ω must be a finite number, got {w!r}")
    r = round(float(w), OMEGA_DECIMALS)
    return 0.0 if r == 0 else r


def omega_json(omega: Mapping[str, float] | None) -> str | None:
    if omega is None:
        return None
    return json.dumps({k: round_omega(v) for k, v in sorted(omega.items())}, separators=(",", ":"))


@dataclass(frozen=True)
class Point:
    """One model to evaluate and how the results table describes it."""

    kind: str
    skills: tuple[str, ...]
    omega: Mapping[str, float] | None
    label: str
    data_size: int | None
    train_steps: int | None
    method: str
    recipe_yaml: str  # with this machine's model paths: what the worker applies
    recipe_key: str  # key of the recipe with paths replaced by roles (portable_key)
    model_refs: tuple[str, ...]
    heuristic: bool = False

    @property
    def point_id(self) -> str:
        return self.recipe_key

    @property
    def skills_str(self) -> str:
        return "+".join(self.skills)

    @property
    def omega_json(self) -> str | None:
        return omega_json(self.omega)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["skills"] = list(self.skills)
        d["model_refs"] = list(self.model_refs)
        d["omega"] = dict(self.omega) if self.omega is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Point":
        d = dict(d)
        d["skills"] = tuple(d.get("skills") or ())
        d["model_refs"] = tuple(d.get("model_refs") or ())
        return cls(**d)


def make_point(exp: Experiment, recipe: RecipeLike, *, kind: str, skills: Sequence[str],
               omega: Mapping[str, float] | None, label: str, data_size: int | None,
               train_steps: int | None, method: str, heuristic: bool = False) -> Point:
    return Point(kind=kind, skills=tuple(skills),
                 omega={k: round_omega(v) for k, v in omega.items()} if omega is not None else None,
                 label=label, data_size=data_size, train_steps=train_steps, method=method,
                 recipe_yaml=recipe.to_yaml(), recipe_key=portable_key(recipe, exp),
                 model_refs=tuple(recipe_refs(recipe)), heuristic=heuristic)
