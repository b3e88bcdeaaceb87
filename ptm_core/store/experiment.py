"""Experiment files: which models, which data sizes, which suites, which reference runs.

An experiment file is YAML validated by pydantic; every error names the file and the field.
Model paths are resolved against the experiment file's directory. See docs/store.md for the
format, and `confine` for keeping user-given paths inside allowed roots.

Example::

    name: lab
    base: models/pre                 # θ_pre
    general: {model: models/general, size: 20000}   # θ_G and |G|
    size_unit: examples              # or steps: the unit of every `size`
    skills:
      science: {model: models/science, size: 2000, steps: 63}   # θ_D, |D|, training steps
    axes:                            # one suite per axis; axes that share a suite run it once
      general: {suite: lab_general}
      science: {suite: lab_science}
      safety: {suite: xstest, metric: unsafe}
      xstest_safe: {suite: xstest, metric: safe}
    references:
      - {kind: cft, skills: [science], model: models/cft_science_500, data_size: 500, train_steps: 16}
      - {kind: rt, skills: [science], scores: {general: 41.0, science: 30.5}, data_size: 500, train_steps: 640}
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from ptm_core import safe_yaml
from ptm_core.catalogue import heuristic_omega
from ptm_core.errors import PTMError
from ptm_core.store.keys import canonical_json

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_AXIS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Columns of the results frame: an axis may not shadow them.
RESERVED_AXES = frozenset({
    "experiment", "kind", "skills", "omega", "label", "data_size", "train_steps", "recipe_key",
    "point_id", "method", "source", "heuristic", "created_at", "engine",
})
Role = Literal["general", "skill", "safety", "exaggerated_refusals", "other"]


class ExperimentError(PTMError):
    """The experiment file is missing, not YAML, or fails validation (message names the field)."""


class PathEscapeError(PTMError):
    """A user-given path resolves outside the directory it must stay in."""


def confine(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Resolve `path` (relative paths against `root`) and return it if it lies inside `root`.

    Symlinks are resolved on both sides before comparing, so `root/link -> /etc` and
    `root/../x` are both refused with PathEscapeError.
    """
    root_r = Path(root).expanduser().resolve()
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = root_r / p
    resolved = p.resolve()  # strict=False: follows every symlink that exists
    if resolved != root_r and root_r not in resolved.parents:
        raise PathEscapeError(f"path {str(path)!r} resolves to {resolved}, outside the allowed "
                              f"directory {root_r}")
    return resolved


def _confine_any(path: Path, roots: Iterable[str | os.PathLike], what: str) -> Path:
    roots = list(roots)
    for root in roots:
        try:
            return confine(path, root)
        except PathEscapeError:
            continue
    raise PathEscapeError(f"{what}: path {str(path)!r} resolves to {Path(path).resolve()}, outside "
                          f"the allowed directories {', '.join(str(Path(r).resolve()) for r in roots)}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneralSpec(_Strict):
    model: str = Field(min_length=1, description="θ_G: the general instruction-tuned model")
    size: PositiveInt = Field(description="|G|, in the experiment's size_unit")
    steps: Optional[PositiveInt] = Field(None, description="training steps of θ_G, when known")


class SkillSpec(_Strict):
    model: str = Field(min_length=1, description="θ_D: θ_pre finetuned on D alone")
    size: PositiveInt = Field(description="|D|, in the experiment's size_unit")
    steps: Optional[PositiveInt] = Field(None, description="training steps of θ_D, when known")


class AxisSpec(_Strict):
    suite: str = Field(min_length=1, description="suite name, resolved by the evals package")
    metric: Optional[str] = Field(None, description="which metric of the suite is this axis "
                                  "(default: the suite's only metric, else 'score')")
    options: dict[str, Any] = Field(default_factory=dict, description="passed to the suite")
    role: Optional[Role] = None
    label: Optional[str] = None

    @model_validator(mode="after")
    def _no_reserved_option(self) -> "AxisSpec":
        if "subsample" in self.options:  # the worker's own option (ptm_core.store.jobs)
            raise ValueError("options.subsample is reserved: the app measures a subsample "
                             "of every suite first on its own")
        return self


class ReferenceRun(_Strict):
    kind: Literal["cft", "rt"]
    skills: list[str] = Field(min_length=1)
    label: Optional[str] = None
    model: Optional[str] = Field(None, description="checkpoint to evaluate")
    scores: Optional[dict[str, float]] = Field(None, description="imported scores per axis (0-100)")
    data_size: PositiveInt
    train_steps: PositiveInt

    @model_validator(mode="after")
    def _model_or_scores(self) -> "ReferenceRun":
        if (self.model is None) == (self.scores is None):
            raise ValueError("give exactly one of `model` (a checkpoint to evaluate) or `scores` "
                             "(imported scores per axis)")
        for axis, v in (self.scores or {}).items():
            if not 0.0 <= v <= 100.0:
                raise ValueError(f"scores.{axis} = {v} is outside 0-100")
        return self

    def display_label(self) -> str:
        return self.label or f"{self.kind.upper()} {'+'.join(self.skills)} |D|={self.data_size}"


class Experiment(_Strict):
    name: str = Field(description="a short slug; names the cached_runs file")
    description: str = ""
    base: str = Field(min_length=1, description="θ_pre: the pretrained base")
    general: GeneralSpec
    size_unit: Literal["examples", "steps"] = "examples"
    skills: dict[str, SkillSpec] = Field(min_length=1)
    axes: dict[str, AxisSpec]
    references: list[ReferenceRun] = Field(default_factory=list)
    engine: str = Field("vllm", description="engine kind: part of every cache key")
    engine_options: dict[str, Any] = Field(default_factory=dict)
    source: Optional[str] = Field(None, description="the file this was loaded from (set by load)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-64 letters, digits, '_', '-' or '.', starting with a "
                             "letter or digit")
        return v

    @field_validator("skills")
    @classmethod
    def _skill_names(cls, v: dict) -> dict:
        for k in v:
            if not _AXIS.match(k):
                raise ValueError(f"skill name {k!r} must be an identifier (letters, digits, _)")
        return v

    @field_validator("axes")
    @classmethod
    def _axis_names(cls, v: dict) -> dict:
        for k in v:
            if not _AXIS.match(k):
                raise ValueError(f"axis name {k!r} must be an identifier (letters, digits, _)")
            if k in RESERVED_AXES:
                raise ValueError(f"axis name {k!r} is reserved (a column of the results table)")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "Experiment":
        if "general" not in self.axes:
            raise ValueError("axes: an axis named 'general' is required (the general-skills suite)")
        missing = [s for s in self.skills if s not in self.axes]
        if missing:
            raise ValueError(f"axes: every skill needs an axis of the same name; missing "
                             f"{', '.join(missing)}")
        for i, ref in enumerate(self.references):
            unknown = [s for s in ref.skills if s not in self.skills]
            if unknown:
                raise ValueError(f"references.{i}.skills: unknown skill(s) {', '.join(unknown)} "
                                 f"(skills are {', '.join(self.skills)})")
            bad = [a for a in (ref.scores or {}) if a not in self.axes]
            if bad:
                raise ValueError(f"references.{i}.scores: unknown axis(es) {', '.join(bad)} "
                                 f"(axes are {', '.join(self.axes)})")
        return self

    # ---- loading ----------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, text: str | bytes, *, base_dir: str | os.PathLike | None = None,
                  source: str = "<experiment>",
                  allowed_roots: Iterable[str | os.PathLike] | None = None) -> "Experiment":
        # bounded: no aliases, no deep nesting, UTF-8 only, ambiguous numbers refused
        data = safe_yaml.load(text, source, ExperimentError)
        if not isinstance(data, dict):
            raise ExperimentError(f"{source}: expected a mapping at the top level, got "
                                  f"{type(data).__name__}")
        data.pop("source", None)
        try:
            exp = cls.model_validate(data)
        except ValidationError as e:
            raise ExperimentError(format_validation_error(e, source)) from None
        if base_dir is not None:
            exp = exp.resolve_paths(base_dir, allowed_roots=allowed_roots)
        return exp.model_copy(update={"source": source})

    @classmethod
    def load(cls, path: str | os.PathLike, *,
             allowed_roots: Iterable[str | os.PathLike] | None = None) -> "Experiment":
        """Read an experiment file; relative model paths resolve against its directory.

        With `allowed_roots`, the file itself and every local model path must lie inside one
        of them (after resolving symlinks), else PathEscapeError."""
        p = Path(path).expanduser()
        roots = list(allowed_roots) if allowed_roots is not None else None
        if roots is not None:
            p = _confine_any(p, roots, "experiment file")
        try:
            text = safe_yaml.read_file(p, ExperimentError)  # bounded; UTF-8; no FIFO
        except FileNotFoundError:
            raise ExperimentError(f"{path}: no such experiment file") from None
        except OSError as e:
            raise ExperimentError(f"{path}: cannot read: {e.strerror or e}") from None
        return cls.from_yaml(text, base_dir=p.resolve().parent, source=str(p.resolve()),
                             allowed_roots=roots)

    def resolve_paths(self, base_dir: str | os.PathLike, *,
                      allowed_roots: Iterable[str | os.PathLike] | None = None) -> "Experiment":
        """A copy whose local model paths are absolute. A reference is local when it is
        absolute, starts with '.' or '~', or exists under `base_dir`; otherwise a string shaped
        like a hub id ('org/name') is kept as it is."""
        base = Path(base_dir).expanduser().resolve()
        roots = list(allowed_roots) if allowed_roots is not None else None

        def fix(ref: str, where: str) -> str:
            p = Path(ref).expanduser()
            local = (p.is_absolute() or ref.startswith((".", "~")) or (base / p).exists()
                     or not _HUB_ID.match(ref))
            if not local:
                return ref
            full = p if p.is_absolute() else base / p
            if roots is not None:
                return str(_confine_any(full, roots, where))
            return str(full.resolve())

        return self.model_copy(update={
            "base": fix(self.base, "base"),
            "general": self.general.model_copy(update={"model": fix(self.general.model, "general.model")}),
            "skills": {k: s.model_copy(update={"model": fix(s.model, f"skills.{k}.model")})
                       for k, s in self.skills.items()},
            "references": [r.model_copy(update={"model": fix(r.model, f"references.{i}.model")})
                           if r.model else r for i, r in enumerate(self.references)],
        })

    # ---- derived facts ----------------------------------------------------------------------
    def content_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump(exclude={"source"})).encode()).hexdigest()[:16]

    def heuristic_omega(self, skill: str) -> float:
        """Paper Eq. 7: ω = |D| / |G|."""
        return heuristic_omega(self.skills[skill].size, self.general.size)

    def skill_steps(self, skill: str) -> int | None:
        s = self.skills[skill]
        if s.steps is not None:
            return s.steps
        return s.size if self.size_unit == "steps" else None

    def axis_role(self, axis: str) -> Role:
        spec = self.axes[axis]
        if spec.role:
            return spec.role
        if axis == "general":
            return "general"
        if axis in self.skills and axis != "safety":
            return "skill"
        if axis == "safety":
            return "safety"
        if axis in ("xstest_safe", "exaggerated_refusals", "exaggerated_refusal"):
            return "exaggerated_refusals"
        return "other"

    def axes_with_role(self, role: Role) -> list[str]:
        return [a for a in self.axes if self.axis_role(a) == role]

    def suite_groups(self, axes: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Axes that share one suite (same name and options) are measured by one run.
        Returns {first axis of the group: [axes of the group]} in axis order, for the groups
        that contain any of `axes` (default: all); a group is always complete, since its one
        run measures every axis in it."""
        wanted = list(self.axes) if axes is None else list(axes)
        unknown = [a for a in wanted if a not in self.axes]
        if unknown:
            raise ExperimentError(f"unknown axis(es) {', '.join(unknown)}; the experiment "
                                  f"{self.name!r} has {', '.join(self.axes)}")
        groups: dict[tuple[str, str], list[str]] = {}
        for a, spec in self.axes.items():  # keep experiment order
            groups.setdefault((spec.suite, canonical_json(spec.options)), []).append(a)
        return {g[0]: g for g in groups.values() if any(a in wanted for a in g)}

    def cft_model(self, skill: str) -> ReferenceRun | None:
        """The CFT checkpoint on the most data for one skill (WiSE-FT interpolates toward it)."""
        runs = [r for r in self.references
                if r.kind == "cft" and r.model and r.skills == [skill]]
        return max(runs, key=lambda r: r.data_size) if runs else None

    def model_refs(self) -> list[str]:
        """Every model this experiment may load: θ_pre, θ_G, the θ_D, reference checkpoints."""
        refs = [self.base, self.general.model, *(s.model for s in self.skills.values())]
        refs += [r.model for r in self.references if r.model]
        return list(dict.fromkeys(refs))


def format_validation_error(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        inp = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") or isinstance(inp, dict) \
            else f" (got {safe_yaml.shorten(repr(inp), 80)})"
        lines.append(safe_yaml.shorten(f"{loc}: {msg}{shown}" if loc else msg, 300))
    if len(lines) > 20:  # a hostile file can fail thousands of fields; the first say enough
        lines = lines[:20] + [f"... and {len(lines) - 20} more problems"]
    return f"{source}: invalid experiment:\n  " + "\n  ".join(lines)
