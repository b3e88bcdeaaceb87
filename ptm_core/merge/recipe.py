"""Merge recipes in MergeKit's YAML format.

A recipe made here runs unchanged with `mergekit-yaml`, and a MergeKit recipe in the `models:`
form runs here. Unlike MergeKit, anything we would not honour is an error: unknown keys, unknown
methods or parameters, non-finite values.

Parameter values follow MergeKit: a scalar; a list of numbers (a gradient interpolated over the
layer position t = layer / (num_layers - 1)); or `{filter, value}` conditions (first whose
filter is a substring of the tensor name wins). Per-model values take precedence over the
recipe-wide `parameters:`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ptm_core import safe_yaml
from ptm_core.errors import RecipeError
from ptm_core.merge import chat_templates
from ptm_core.merge.methods import METHODS, MethodSpec, ParamSpec

Scalar = Union[bool, int, float, str]
Setting = Any  # Scalar | list[Scalar] | Condition | list[Condition]; validated below
DTYPES = ("float32", "float16", "bfloat16", "float64")
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputModel(_Strict):
    model: str
    parameters: Optional[dict[str, Setting]] = None


class InputSlice(_Strict):
    """Layers [start, end) of one model, as one source of an output slice."""
    model: str
    layer_range: tuple[int, int]
    parameters: Optional[dict[str, Setting]] = None


class OutputSlice(_Strict):
    """Consecutive output layers, each merged from the same offset in every source."""
    sources: list[InputSlice]
    base_model: Optional[str] = None
    parameters: Optional[dict[str, Setting]] = None

    @property
    def num_layers(self) -> int:
        return self.sources[0].layer_range[1] - self.sources[0].layer_range[0]


class TokenEmbedding(_Strict):
    """Where a token's embedding comes from: a token of a model, or zeros."""
    kind: Literal["model_token", "zero"]
    model: Optional[str] = None
    token_id: Optional[int] = None
    token: Optional[str] = None

    @model_validator(mode="after")
    def _one_token(self) -> "TokenEmbedding":
        if self.kind == "zero":
            if self.model is not None or self.token_id is not None or self.token is not None:
                raise ValueError("a 'zero' token embedding takes no model, token or token_id")
        elif not self.model or (self.token_id is None) == (self.token is None):
            raise ValueError("a 'model_token' embedding needs model and exactly one of "
                             "token_id or token")
        if self.token_id is not None and self.token_id < 0:
            raise ValueError(f"token_id must be >= 0, got {self.token_id}")
        return self


class TokenSetting(_Strict):
    """`tokenizer.tokens.<token>`: its embedding's source (a model: its own embedding of the
    token), and whether to use that source even where a model has the token."""
    source: Union[str, TokenEmbedding, None] = None
    force: bool = False


class TokenizerSpec(_Strict):
    """`tokenizer:` (MergeKit's TokenizerConfig): the vocabulary (union, base or a model),
    tokens to add or re-source, and padding of the vocabulary size."""
    source: str = "union"
    tokens: Optional[dict[str, TokenSetting]] = None
    pad_to_multiple_of: Optional[int] = None

    @field_validator("pad_to_multiple_of")
    @classmethod
    def _positive(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v < 1:
            raise ValueError(f"pad_to_multiple_of must be at least 1, got {v}")
        return v


class Recipe(_Strict):
    merge_method: str
    base_model: Optional[str] = None
    models: Optional[list[InputModel]] = None
    slices: Optional[list[OutputSlice]] = None
    parameters: Optional[dict[str, Setting]] = None
    dtype: Optional[str] = None
    out_dtype: Optional[str] = None
    tokenizer_source: Optional[str] = None
    tokenizer: Optional[TokenizerSpec] = None
    chat_template: Optional[str] = None

    # --- validation ----------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: Any) -> Any:
        """A quoted number ("0.5") or boolean ("true") becomes the value it names before
        anything is stored or hashed, so it gives the same recipe and key as 0.5 (MergeKit's
        pydantic coerces it too). Unknown methods and parameters are left to the checks below."""
        if not isinstance(data, dict) or not isinstance(data.get("merge_method"), str) \
                or data["merge_method"] not in METHODS:
            return data
        spec = METHODS[data["merge_method"]]
        data = dict(data)
        if isinstance(data.get("parameters"), dict):
            data["parameters"] = _normalise_settings(spec, data["parameters"])
        def with_params(items: Any) -> Any:
            if not isinstance(items, list):
                return items
            return [{**m, "parameters": _normalise_settings(spec, m["parameters"])}
                    if isinstance(m, dict) and isinstance(m.get("parameters"), dict) else m
                    for m in items]
        data["models"] = with_params(data.get("models"))
        if isinstance(data.get("slices"), list):
            data["slices"] = [{**sl, "sources": with_params(sl.get("sources"))}
                              for sl in with_params(data["slices"])]
        return {k: v for k, v in data.items() if v is not None or k not in ("models", "slices")}

    @field_validator("merge_method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown merge method {safe_yaml.shorten(repr(v), 60)}; "
                             f"supported: {', '.join(sorted(METHODS))}")
        return v

    @field_validator("dtype", "out_dtype")
    @classmethod
    def _known_dtype(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v not in DTYPES:
            raise ValueError(f"unsupported dtype {v!r}; supported: {', '.join(DTYPES)}")
        return v

    @field_validator("tokenizer_source")
    @classmethod
    def _tokenizer(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.strip():
            raise ValueError("tokenizer_source is empty (union, base or a model)")
        return v

    @field_validator("chat_template")
    @classmethod
    def _chat_template(cls, v: Optional[str]) -> Optional[str]:
        """'auto' (the inputs' most common template), one of MergeKit's template names
        (chatml, llama3, ...: its package data) or a Jinja template's text (chat_templates.py)."""
        if v is not None:
            chat_templates.check(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> "Recipe":
        spec = self.spec
        if self.tokenizer_source is not None and self.tokenizer is not None:
            raise ValueError("a recipe has either tokenizer_source or tokenizer:, not both")
        if self.models is not None and self.slices is not None:
            raise ValueError("a recipe has either models: or slices:, not both")
        if self.slices is not None:
            return self._check_slices()
        if not self.models:
            raise ValueError("a recipe needs at least one entry under models: (or slices:)")
        if spec.needs_base and not self.base_model:
            raise ValueError(f"method {spec.name!r} needs base_model")
        if not spec.needs_base and not spec.optional_base and self.base_model \
                and self.base_model not in self.model_refs(False):
            raise ValueError(f"method {spec.name!r} does not use base_model unless it is also listed "
                             "under models: with a weight")
        self._check_count(len(self.inputs()), self.base_input(), "")
        self._check_models(self.models, "")
        self._check_params(self.parameters, "parameters")
        return self

    def _check_slices(self) -> "Recipe":
        spec = self.spec
        if not self.slices:
            raise ValueError("slices: is empty")
        self._check_params(self.parameters, "parameters")
        for i, sl in enumerate(self.slices):
            where = f"slices[{i}]"
            if not sl.sources:
                raise ValueError(f"{where}: a slice needs at least one source")
            for src in sl.sources:
                start, end = src.layer_range
                if start < 0 or end <= start:
                    raise ValueError(f"{where}: model {src.model!r}: layer_range must be "
                                     f"[start, end) with 0 <= start < end, got {[start, end]}")
            if len({src.layer_range[1] - src.layer_range[0] for src in sl.sources}) != 1:
                raise ValueError(f"{where}: every source of a slice must span the same number "
                                 "of layers")
            base = self.slice_base(i)
            if spec.needs_base and not base:
                raise ValueError(f"method {spec.name!r} needs base_model")
            if base and (spec.needs_base or spec.optional_base) \
                    and base not in [src.model for src in sl.sources]:
                raise ValueError(f"{where}: base_model {base!r} must be one of the slice's sources")
            self._check_count(len(self.slice_inputs(i)),
                              base if spec.needs_base or spec.optional_base else None, f"{where}: ")
            self._check_models(sl.sources, f"{where}: ")
            self._check_params(sl.parameters, f"{where}.parameters")
        return self

    def _check_count(self, n: int, base: Optional[str], where: str) -> None:
        spec = self.spec
        if n < spec.min_inputs or (spec.max_inputs is not None and n > spec.max_inputs):
            want = (f"exactly {spec.min_inputs}" if spec.min_inputs == spec.max_inputs
                    else f"at least {spec.min_inputs}" if spec.max_inputs is None
                    else f"{spec.min_inputs} to {spec.max_inputs}")
            besides = " besides base_model" if base else ""
            raise ValueError(f"{where}method {spec.name!r} takes {want} model(s){besides}; got {n}")

    def _check_models(self, entries: list, where: str) -> None:
        spec = self.spec
        seen = set()
        for m in entries:
            if m.model in seen:
                raise ValueError(f"{where}model {m.model!r} is listed twice")
            seen.add(m.model)
            for name, setting in (m.parameters or {}).items():
                p = spec.param(name)
                if p is None or p.scope == "shared":
                    raise ValueError(f"{where}model {m.model!r}: unknown parameter {name!r} for "
                                     f"method {spec.name!r}; per-model parameters: "
                                     f"{', '.join(q.name for q in spec.model_params) or 'none'}")
                _check_setting(p, setting, where=f"{where}model {m.model!r}")

    def _check_params(self, params: Optional[dict], where: str) -> None:
        spec = self.spec
        for name, setting in (params or {}).items():
            p = spec.param(name)
            if p is None:
                raise ValueError(f"unknown parameter {name!r} for method {spec.name!r}; "
                                 f"known: {', '.join(q.name for q in spec.params) or 'none'}")
            _check_setting(p, setting, where=where)

    # --- construction --------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, text: str | bytes, source: str = "recipe") -> "Recipe":
        # bounded: no aliases, no deep nesting, UTF-8 only, ambiguous numbers refused
        data = safe_yaml.load(text, source, RecipeError)
        if not isinstance(data, dict):
            raise RecipeError(f"{source} must be a YAML mapping with merge_method and models")
        if "modules" in data:
            raise RecipeError(f"{source}: 'modules:' recipes are not supported; use 'models:' "
                              "or 'slices:'")
        return cls.parse(data, source)

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        try:
            text = safe_yaml.read_file(path, RecipeError)  # bounded; UTF-8; no FIFO
        except OSError as e:
            raise RecipeError(f"cannot read recipe {path}: {e.strerror}") from None
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def parse(cls, data: dict, source: str = "recipe") -> "Recipe":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            msgs = []
            for err in e.errors():
                loc = ".".join(str(x) for x in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                # room for the list of methods; a user's value is cut to 60 where it is echoed
                msgs.append(safe_yaml.shorten(f"{loc}: {msg}" if loc else msg, 400))
            raise RecipeError(safe_yaml.shorten(f"{source}: " + "; ".join(msgs), 600)) from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    def with_refs(self, mapping: dict[str, str]) -> "Recipe":
        """The same recipe with model references renamed (e.g. to absolute paths)."""
        data = self.model_dump(mode="json", exclude_none=True)
        for key in ("base_model", "tokenizer_source"):
            if data.get(key) in mapping:
                data[key] = mapping[data[key]]
        tok = data.get("tokenizer")
        if tok:
            if tok.get("source") in mapping:
                tok["source"] = mapping[tok["source"]]
            for setting in (tok.get("tokens") or {}).values():
                src = setting.get("source")
                if isinstance(src, str) and src in mapping:
                    setting["source"] = mapping[src]
                elif isinstance(src, dict) and src.get("model") in mapping:
                    src["model"] = mapping[src["model"]]
        for m in data.get("models", []):
            m["model"] = mapping.get(m["model"], m["model"])
        for sl in data.get("slices", []):
            if sl.get("base_model") in mapping:
                sl["base_model"] = mapping[sl["base_model"]]
            for src in sl["sources"]:
                src["model"] = mapping.get(src["model"], src["model"])
        return Recipe.parse(data)

    # --- identity ------------------------------------------------------------------------
    def canonical(self) -> str:
        return json.dumps(_canon(self.model_dump(mode="json", exclude_none=True)),
                          sort_keys=True, separators=(",", ":"))

    def key(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    # --- structure -----------------------------------------------------------------------
    @property
    def spec(self) -> MethodSpec:
        return METHODS[self.merge_method]

    def model_refs(self, include_base: bool = True) -> list[str]:
        refs = [self.base_model] if include_base and self.base_model else []
        listed = [m.model for m in self.models] if self.models is not None else \
            [src.model for sl in self.slices for src in sl.sources]
        return refs + [r for r in dict.fromkeys(listed) if r not in refs]

    def base_input(self) -> Optional[str]:
        """The base model as the method sees it: required by some methods, optional for some
        (used when named), ignored by the rest (then an input like any other, if listed)."""
        spec = self.spec
        return self.base_model if spec.needs_base or spec.optional_base else None

    def inputs(self) -> list[str]:
        """The models whose tensors feed the method, in order (the base excluded where the
        method treats it separately)."""
        base = self.base_input()
        return [m.model for m in self.models if base is None or m.model != base]

    # --- slices ----------------------------------------------------------------------------
    def slice_base(self, i: int) -> Optional[str]:
        """A slice's base: its own base_model, else the recipe's (MergeKit's precedence)."""
        return self.slices[i].base_model or self.base_model

    def slice_inputs(self, i: int) -> list[str]:
        spec = self.spec
        base = self.slice_base(i) if spec.needs_base or spec.optional_base else None
        return [src.model for src in self.slices[i].sources if base is None or src.model != base]

    def out_layers(self) -> Optional[int]:
        """The output's layer count for a slices recipe (None: the inputs' own)."""
        return sum(sl.num_layers for sl in self.slices) if self.slices is not None else None

    def resolve_slice(self, i: int, out_name: str, in_names: dict[str, str],
                      t: float) -> tuple[dict, list[dict]]:
        """Parameters for one output tensor of slice i: source, then slice, then recipe-wide
        settings; per-model filters match the tensor's name in that model."""
        spec, sl = self.spec, self.slices[i]
        shared = {p.name: _resolve(p, [sl.parameters, self.parameters], out_name, t, None)
                  for p in spec.shared_params}
        by_model = {src.model: src.parameters for src in sl.sources}
        per_input = [
            {p.name: _resolve(p, [by_model.get(ref), sl.parameters, self.parameters],
                              in_names[ref], t, ref) for p in spec.model_params}
            for ref in self.slice_inputs(i)
        ]
        return shared, per_input

    def template_model(self) -> str:
        """The model whose config (and, without a tokenizer option, tokenizer) a merged
        checkpoint copies: the base with `tokenizer_source: base`, else the first model."""
        if self.vocabulary_source() is not None and self.vocabulary_source()[0] == "base" \
                and self.base_model:
            return self.base_model
        return self.models[0].model if self.models is not None else self.slices[0].sources[0].model

    def vocabulary_source(self) -> Optional[tuple[str, dict, Optional[int]]]:
        """(source, tokens, pad_to_multiple_of) when the recipe builds its output vocabulary
        (tokenizer_source or tokenizer:), else None. source: union, base or a model."""
        if self.tokenizer is not None:
            return (self.tokenizer.source, dict(self.tokenizer.tokens or {}),
                    self.tokenizer.pad_to_multiple_of)
        if self.tokenizer_source is not None:
            return self.tokenizer_source, {}, None
        return None

    def tokenizer_model(self) -> Optional[str]:
        """A model named only as the tokenizer's source (not a merge input), if any."""
        vs = self.vocabulary_source()
        if vs is None or vs[0] in ("union", "base") or vs[0] in self.model_refs():
            return None
        return vs[0]

    def all_refs(self) -> list[str]:
        """Every model the merged checkpoint depends on: the merge inputs (model_refs), then a
        model named only as the tokenizer's source (its tokenizer is the output's). A result's
        cache key takes all of their fingerprints; the export and the swap read these."""
        tok = self.tokenizer_model()
        return self.model_refs() + ([tok] if tok else [])

    def resolve(self, tensor_name: str, num_layers: Optional[int] = None) -> tuple[dict, list[dict]]:
        """Parameters for one tensor: (shared, [per-input dict for each of self.inputs()])."""
        spec = self.spec
        t = layer_position(tensor_name, num_layers)
        shared = {p.name: _resolve(p, [self.parameters], tensor_name, t, None) for p in spec.shared_params}
        by_model = {m.model: m.parameters for m in self.models}
        per_input = [
            {p.name: _resolve(p, [by_model.get(ref), self.parameters], tensor_name, t, ref)
             for p in spec.model_params}
            for ref in self.inputs()
        ]
        return shared, per_input


def layer_position(tensor_name: str, num_layers: Optional[int]) -> float:
    """MergeKit's gradient coordinate: layer / (num_layers - 1); 0 outside the layer stack."""
    m = _LAYER.search(tensor_name)
    if not m or not num_layers:
        return 0.0
    return int(m.group(1)) / (num_layers - 1) if num_layers > 1 else 1.0


def _is_condition(x: Any) -> bool:
    return isinstance(x, dict)


def _check_setting(p: ParamSpec, setting: Setting, where: str) -> None:
    """Validate every scalar a setting can produce, so bad values fail before any I/O."""
    conds = setting if isinstance(setting, list) and setting and all(map(_is_condition, setting)) \
        else [setting] if _is_condition(setting) else None
    if conds is not None:
        for c in conds:
            extra = set(c) - {"filter", "value"}
            if extra or "value" not in c:
                raise ValueError(f"{where}: parameter {p.name!r}: a condition has keys "
                                 f"'filter' and 'value' only, got {sorted(c)}")
            if c.get("filter") is not None and not isinstance(c["filter"], str):
                raise ValueError(f"{where}: parameter {p.name!r}: filter must be a string")
            _check_setting(p, c["value"], where)
        return
    values = setting if isinstance(setting, list) else [setting]
    if not values:
        raise ValueError(f"{where}: parameter {p.name!r} is an empty list")
    for v in values:
        if isinstance(v, (dict, list)) or v is None:
            raise ValueError(f"{where}: parameter {p.name!r} has an unsupported value "
                             f"{safe_yaml.shorten(repr(v), 60)}")
        try:
            p.validate(v)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None


def _normalise_settings(spec: MethodSpec, params: dict) -> dict:
    def norm(p: ParamSpec, x: Any) -> Any:
        if isinstance(x, str):
            try:
                return p.validate(x)
            except ValueError:
                return x  # reported, with its place, by _check_setting
        if isinstance(x, list):
            return [norm(p, v) for v in x]
        if isinstance(x, dict) and "value" in x:
            return {**x, "value": norm(p, x["value"])}
        return x
    return {k: norm(spec.param(k), v) if isinstance(k, str) and spec.param(k) else v
            for k, v in params.items()}


def _evaluate(p: ParamSpec, setting: Setting, tensor_name: str, t: float) -> Any:
    if _is_condition(setting):
        setting = [setting]
    if isinstance(setting, list):
        if setting and all(map(_is_condition, setting)):
            for c in setting:
                f = c.get("filter")
                if f is None or f == "*" or (tensor_name and f in tensor_name):
                    return _evaluate(p, c["value"], tensor_name, t)
            return None
        values = [p.validate(v) for v in setting]
        if p.type is bool:
            return values[int(t * (len(values) - 1))]
        scaled = t * (len(values) - 1)
        i0 = int(scaled)
        i1 = min(len(values) - 1, i0 + 1)
        frac = scaled - i0
        return p.validate((1 - frac) * values[i0] + frac * values[i1])
    return p.validate(setting)


def _resolve(p: ParamSpec, scopes: list, tensor_name: str, t: float, model: Optional[str]) -> Any:
    for scope in scopes:
        if scope and p.name in scope:
            v = _evaluate(p, scope[p.name], tensor_name, t)
            if v is not None:
                return v
    if p.required:
        where = f"model {model!r}, tensor {tensor_name!r}" if model else f"tensor {tensor_name!r}"
        raise RecipeError(f"{where}: missing required parameter {p.name!r}")
    return p.default


def _canon(x: Any) -> Any:
    """Numbers compare by value in the key: 1 and 1.0 are the same weight."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, list):
        return [_canon(v) for v in x]
    if isinstance(x, dict):
        return {k: _canon(v) for k, v in x.items()}
    return x
