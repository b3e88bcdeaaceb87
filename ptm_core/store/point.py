"""An evaluation point as the store records it: one recipe plus what the results table says
about it (kind, skills, ω per skill, data size, training steps). Plain data; building points
from an experiment is `ptm_core.orchestrate.points`.

A skill's ω is a number, or a per-layer ω: MergeKit's gradient list, anchors spread evenly over
the layers (the first at the first layer, the last at the last) and interpolated between them.
The store keeps a gradient as a JSON list in the point's `omega` ({"science": [0.2, 0.6]}); one
whose anchors are all equal is that number, the same merge (`omega_value`)."""

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


def is_gradient(w: Any) -> bool:
    """A per-layer ω (a list or tuple of anchors), as opposed to one number."""
    return isinstance(w, (list, tuple))


def omega_value(w: Any) -> float | tuple[float, ...]:
    """One skill's ω as points and the store keep it: a rounded number, or a gradient's rounded
    anchors as a tuple, in its shortest form: the fewest anchors that give the same ω at every
    layer (equal anchors are that number; [0.2, 0.4, 0.6] is [0.2, 0.6]), since the same
    per-layer ω is the same merge and must have the same key."""
    if not is_gradient(w):
        return round_omega(w)
    if not w:
        raise PTMError("a per-layer ω needs at least one value")
    anchors = tuple(round_omega(v) for v in w)
    for m in range(1, len(anchors)):
        short = exact_resample(anchors, m)
        if short is not None:
            anchors = tuple(round_omega(v) for v in short)
            break
    return anchors[0] if len(anchors) == 1 else anchors


def exact_resample(w: Any, groups: int) -> tuple[float, ...] | None:
    """`w` (a number or a gradient) as exactly `groups` anchors, or None when no gradient of
    that many anchors gives the same ω at every layer (to ω's rounding, OMEGA_DECIMALS). Exact:
    the two piecewise-linear gradients agree at both sets of anchors, so between them too."""
    if not is_gradient(w):
        return (float(w),) * groups
    if len(w) == groups:
        return tuple(float(x) for x in w)
    out = resample(w, groups)
    n = len(w)
    if n == 1:
        return out
    tol = 10.0 ** -OMEGA_DECIMALS
    if all(abs(gradient_at(out, i / (n - 1)) - float(w[i])) <= tol for i in range(n)):
        return out
    return None


def gradient_at(w: Any, t: float) -> float:
    """A skill's ω at layer position t in [0, 1] (first layer 0, last 1), as MergeKit
    interpolates a gradient list: linearly between its evenly spaced anchors."""
    if not is_gradient(w):
        return float(w)
    if len(w) == 1:
        return float(w[0])
    x = min(max(float(t), 0.0), 1.0) * (len(w) - 1)
    i = min(int(x), len(w) - 2)
    return (1 - (x - i)) * float(w[i]) + (x - i) * float(w[i + 1])


def resample(w: Any, groups: int) -> tuple[float, ...]:
    """The gradient read at `groups` evenly spaced layers (one anchor: the anchors' mean); the
    same per-layer ω when the new positions include the old ones (2 → 3 or 4 anchors, a number
    to any), else an approximation of it."""
    if groups < 1:
        raise PTMError(f"a per-layer ω needs at least one anchor, got {groups}")
    if groups == 1:
        return (sum(map(float, w)) / len(w),) if is_gradient(w) else (float(w),)
    return tuple(gradient_at(w, g / (groups - 1)) for g in range(groups))


def format_omega(w: Any) -> str:
    """"0.3", or a gradient as "[0.2, 0.6]" (first layer to last), for labels and hovers."""
    return "[" + ", ".join(f"{float(a):g}" for a in w) + "]" if is_gradient(w) else f"{float(w):g}"


def omega_json(omega: Mapping[str, Any] | None) -> str | None:
    if omega is None:
        return None
    out = {}
    for k, v in sorted(omega.items()):
        w = omega_value(v)
        out[k] = list(w) if is_gradient(w) else w
    return json.dumps(out, separators=(",", ":"))


@dataclass(frozen=True)
class Point:
    """One model to evaluate and how the results table describes it."""

    kind: str
    skills: tuple[str, ...]
    omega: Mapping[str, Any] | None  # skill -> ω: a number, or a gradient (tuple; a list once read back)
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
        d["omega"] = ({k: list(v) if is_gradient(v) else v for k, v in self.omega.items()}
                      if self.omega is not None else None)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Point":
        d = dict(d)
        d["skills"] = tuple(d.get("skills") or ())
        d["model_refs"] = tuple(d.get("model_refs") or ())
        return cls(**d)


def make_point(exp: Experiment, recipe: RecipeLike, *, kind: str, skills: Sequence[str],
               omega: Mapping[str, Any] | None, label: str, data_size: int | None,
               train_steps: int | None, method: str, heuristic: bool = False) -> Point:
    return Point(kind=kind, skills=tuple(skills),
                 omega={k: omega_value(v) for k, v in omega.items()} if omega is not None else None,
                 label=label, data_size=data_size, train_steps=train_steps, method=method,
                 recipe_yaml=recipe.to_yaml(), recipe_key=portable_key(recipe, exp),
                 model_refs=tuple(recipe_refs(recipe)), heuristic=heuristic)
