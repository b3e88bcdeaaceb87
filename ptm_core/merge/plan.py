"""Merge a whole model state tensor by tensor.

`merge_rows` merges one tensor (or rows of it) and `merge_group` one whole output tensor; the
exporter maps `merge_rows` over checkpoints on disk, the engine's worker maps `merge_group`
over models held in memory, and `merge_state` is that map in order. Everything that can be
checked without the tensor data (names, shapes, parameters) is checked before the first tensor
is merged, so a bad recipe fails before any output exists.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional, Protocol

import torch

from ptm_core.errors import MergeError
from ptm_core.merge.methods import merge_tensor
from ptm_core.merge.recipe import Recipe


class TensorSource(Protocol):
    name: str

    def tensor_names(self) -> list[str]: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def get(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Float32 tensor, or rows [r0, r1) of its first dimension."""


class InMemorySource:
    """A model held in memory (float32), e.g. inside an inference worker."""

    def __init__(self, name: str, tensors: Mapping[str, torch.Tensor]):
        self.name = name
        self.tensors = {k: v.to(torch.float32) for k, v in tensors.items()}

    def tensor_names(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name].shape)

    def get(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        t = self.tensors[name]
        return t if rows is None else t[rows[0]:rows[1]]


def tensor_generator(seed: int, tensor_name: str) -> torch.Generator:
    """A generator seeded by (seed, tensor): random methods give the same result whatever
    order tensors are processed in."""
    digest = hashlib.sha256(f"{seed}:{tensor_name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@dataclass(frozen=True)
class Group:
    """One output tensor and where it comes from: the same tensor of every input (models:), or
    a layer's tensor at each source's own layer index (slices:)."""
    name: str
    refs: tuple[str, ...]  # the base first, when the method uses one
    names: tuple[str, ...]  # the tensor's name in each of refs
    has_base: bool
    shared: dict
    per_input: tuple[dict, ...]  # one per input after the base


_LAYER_NAME = re.compile(r"^(.*?(?:^|\.)(?:layers|h|blocks|layer))\.(\d+)\.(.+)$")
# Outside the layer stack a slices recipe takes embeddings from its first slice's sources and
# everything else (final norm, head) from its last, as MergeKit's pre/post weights.
_PRE = ("embed", "wte", "wpe")


def plan_groups(recipe: Recipe, sources: Mapping[str, TensorSource],
                num_layers: Optional[int] = None) -> list[Group]:
    """Every output tensor's group, in output order, after checking that each input has the
    tensors it is asked for with the same shapes and that every parameter resolves."""
    refs = recipe.model_refs()
    missing = [r for r in refs if r not in sources]
    if missing:
        raise MergeError(f"no input loaded for model(s) {', '.join(map(repr, missing))}")
    template = sources[recipe.template_model()]
    if recipe.slices is not None:
        return _slice_groups(recipe, sources, template)
    names = template.tensor_names()
    wanted = set(names)
    for ref in refs:
        src = sources[ref]
        have = set(src.tensor_names())
        if have != wanted:
            lacking, extra = sorted(wanted - have), sorted(have - wanted)
            which, tensor = (f"lacks tensor", lacking[0]) if lacking else (f"has an extra tensor", extra[0])
            raise MergeError(f"model {ref!r} {which} {tensor!r} that model "
                             f"{template.name!r} {'has' if lacking else 'lacks'} "
                             "(different architectures?)")
        for n in names:
            if src.shape(n) != template.shape(n):
                raise MergeError(f"model {ref!r}, tensor {n!r}: shape {list(src.shape(n))} differs from "
                                 f"{list(template.shape(n))} in model {template.name!r}")
    base = recipe.base_input()
    order = ([base] if base else []) + recipe.inputs()
    groups = []
    for n in names:  # parameters resolve for every tensor (filters, gradients, required)
        shared, per_input = recipe.resolve(n, num_layers)
        groups.append(Group(n, tuple(order), (n,) * len(order), bool(base), shared, tuple(per_input)))
    return groups


def _slice_groups(recipe: Recipe, sources: Mapping[str, TensorSource],
                  template: TensorSource) -> list[Group]:
    layer_suffixes: dict[str, list[str]] = {}  # the layer stack's prefix -> tensors of a layer
    pre, post = [], []
    for n in template.tensor_names():
        m = _LAYER_NAME.match(n)
        if m is None:
            (pre if any(k in n for k in _PRE) else post).append(n)
        elif m.group(2) == "0":
            layer_suffixes.setdefault(m.group(1), []).append(m.group(3))
    if len(layer_suffixes) != 1:
        raise MergeError(f"model {template.name!r}: slices need one stack of numbered layers; "
                         f"found {len(layer_suffixes)}")
    (prefix, suffixes), = layer_suffixes.items()

    def group(i: int, out: str, in_names: dict[str, str], t: float) -> Group:
        base = recipe.slice_base(i) if recipe.spec.needs_base or recipe.spec.optional_base else None
        order = ([base] if base else []) + recipe.slice_inputs(i)
        shape = None
        for ref in order:
            src = sources[ref]
            if in_names[ref] not in src.tensor_names():
                raise MergeError(f"model {ref!r} lacks tensor {in_names[ref]!r} (slices[{i}]: "
                                 "layer_range beyond its layers?)")
            if shape is not None and src.shape(in_names[ref]) != shape:
                raise MergeError(f"model {ref!r}, tensor {in_names[ref]!r}: shape "
                                 f"{list(src.shape(in_names[ref]))} differs from {list(shape)} "
                                 f"in model {order[0]!r}")
            shape = src.shape(in_names[ref])
        shared, per_input = recipe.resolve_slice(i, out, in_names, t)
        return Group(out, tuple(order), tuple(in_names[r] for r in order), bool(base), shared,
                     tuple(per_input))

    last = len(recipe.slices) - 1
    groups = [group(0, n, {s.model: n for s in recipe.slices[0].sources}, 0.0) for n in pre]
    out_layer = 0
    for i, sl in enumerate(recipe.slices):
        for offset in range(sl.num_layers):
            t = offset / (sl.num_layers - 1) if sl.num_layers > 1 else 1.0  # MergeKit's gradient
            for suffix in suffixes:
                in_names = {s.model: f"{prefix}.{s.layer_range[0] + offset}.{suffix}"
                            for s in sl.sources}
                groups.append(group(i, f"{prefix}.{out_layer}.{suffix}", in_names, t))
            out_layer += 1
    groups += [group(last, n, {s.model: n for s in recipe.slices[last].sources}, 0.0) for n in post]
    return groups


def merge_state(recipe: Recipe, sources: Mapping[str, TensorSource], *,
                num_layers: Optional[int] = None, seed: int = 0,
                groups: Optional[list[Group]] = None, chunk_elements: Optional[int] = None,
                outputs: Optional["Outputs"] = None,
                inputs_equal: Optional[Callable[[Group], bool]] = None
                ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, merged float32 tensor) for every tensor of the output model. With
    `chunk_elements`, each tensor is merged chunk by chunk (chunk_rows) into its output, as
    the exporter does: the same values, but the method's passes over a chunk stay in cache.
    `outputs` (an Outputs): where tensors are written instead of new memory (a destination of
    their name, or for chunked tensors a buffer kept from merge to merge); a yielded tensor
    is then only valid until the next merge with the same `outputs`.
    `inputs_equal(g)`: whether every input tensor of group `g` is bit for bit the base's (and
    finite); for methods whose output is then the base, the base's own tensor is yielded
    without arithmetic (the values merge_rows computes too)."""
    if groups is None:
        groups = plan_groups(recipe, sources, num_layers)
    for g in groups:
        yield g.name, merge_group(recipe, sources, g, seed=seed, chunk_elements=chunk_elements,
                                  outputs=outputs, inputs_equal=inputs_equal)


def merge_group(recipe: Recipe, sources: Mapping[str, TensorSource], g: Group, *, seed: int = 0,
                chunk_elements: Optional[int] = None,
                outputs: Optional["Outputs"] = None,
                inputs_equal: Optional[Callable[[Group], bool]] = None) -> torch.Tensor:
    """One output tensor of merge_state (which says what the options do)."""
    if (inputs_equal is not None and recipe.spec.base_when_inputs_equal and g.has_base
            and getattr(sources, "for_refs", None) is None and inputs_equal(g)):
        return sources[g.refs[0]].get(g.names[0])
    chunks = ([None] if chunk_elements is None
              else chunk_rows(recipe, _shape(sources, g), chunk_elements))
    first = merge_rows(recipe, sources, g, seed, chunks[0])
    chunked = len(chunks) > 1
    shape = (chunks[-1][1], *first.shape[1:]) if chunked else first.shape
    out = None if outputs is None else outputs.buffer(g.name, shape, first, chunked=chunked)
    if out is None:
        if not chunked:
            return first
        out = first.new_empty(shape)
    if not chunked:
        return out.copy_(first)
    out[:len(first)] = first
    for rows in chunks[1:]:
        out[rows[0]:rows[1]] = merge_rows(recipe, sources, g, seed, rows)
    return out


class Outputs:
    """Where merge_group writes a tensor instead of new memory: into `destinations[name]` when
    it has the tensor's shape and device (any float dtype: the merge casts as a load would;
    a live model's parameter, so that the merge is the load), else, for a chunked tensor,
    into a buffer kept in `kept` from merge to merge (CPU: fresh memory costs page faults).
    Never both: a destination is not a buffer to reuse for another tensor."""

    def __init__(self, kept: Optional[dict[str, torch.Tensor]] = None,
                 destinations: Optional[Mapping[str, torch.Tensor]] = None):
        self.kept, self.destinations = kept, destinations or {}

    def buffer(self, name: str, shape: torch.Size, like: torch.Tensor, *,
               chunked: bool) -> Optional[torch.Tensor]:
        """The tensor to write `name` into, or None (the caller's own: its result, or for a
        chunked tensor new memory)."""
        dest = self.destinations.get(name)
        if (dest is not None and dest.shape == shape and dest.device == like.device
                and dest.is_floating_point()):
            if self.kept is not None:
                self.kept.pop(name, None)  # a buffer kept from before is not needed again
            return dest
        if not chunked or self.kept is None:
            return None
        out = self.kept.get(name)
        if out is None or out.shape != shape or out.dtype != like.dtype or out.device != like.device:
            out = self.kept[name] = like.new_empty(shape)
        return out


def _shape(sources: Mapping[str, TensorSource], g: Group) -> tuple[int, ...]:
    view = getattr(sources, "for_refs", None)  # inputs in a recipe's own vocabulary (vocab.py)
    return (view(g.refs) if view is not None else sources)[g.refs[0]].shape(g.names[0])


# Rows per chunk are chosen so one input chunk holds about this many float32 values (1 MiB):
# small enough that the method's several passes over a chunk stay in cache.
CHUNK_ELEMENTS = 256 * 1024


def chunk_rows(recipe: Recipe, shape: tuple[int, ...],
               chunk_elements: int = CHUNK_ELEMENTS) -> list[Optional[tuple[int, int]]]:
    """Row ranges to merge a tensor in ([None] = whole). Only elementwise methods are chunked,
    which gives results identical to merging the whole tensor."""
    numel = 1
    for d in shape:
        numel *= d
    if not recipe.spec.elementwise or len(shape) < 2 or numel <= chunk_elements:
        return [None]
    step = max(1, chunk_elements // (numel // shape[0]))
    return [(r0, min(r0 + step, shape[0])) for r0 in range(0, shape[0], step)]


def merge_chunks(recipe: Recipe, sources: Mapping[str, TensorSource], name: str, *,
                 num_layers: Optional[int] = None, seed: int = 0,
                 chunk_elements: int = CHUNK_ELEMENTS) -> Iterator[torch.Tensor]:
    """The merged tensor `name` as consecutive row chunks (see chunk_rows)."""
    g = next(g for g in plan_groups(recipe, sources, num_layers) if g.name == name)
    shape = sources[g.refs[0]].shape(g.names[0])
    for rows in chunk_rows(recipe, shape, chunk_elements):
        yield merge_rows(recipe, sources, g, seed, rows)


def merge_rows(recipe: Recipe, sources: Mapping[str, TensorSource], g: Group, seed: int,
               rows: Optional[tuple[int, int]]) -> torch.Tensor:
    name = g.name
    view = getattr(sources, "for_refs", None)  # inputs in a recipe's own vocabulary (vocab.py)
    if view is not None:
        sources = view(g.refs)
    tensors = [sources[r].get(n, rows) for r, n in zip(g.refs, g.names)]
    # Elementwise methods carry any NaN/Inf of an input into the output (NaN*0 and inf-inf are
    # NaN), so checking the output is enough there; sparsifying methods could mask one out.
    if not recipe.spec.elementwise:
        _check_inputs(sources, g.refs, tensors, name)
    try:
        out = merge_tensor(recipe.merge_method, tensors[0] if g.has_base else None,
                           tensors[1:] if g.has_base else tensors, list(g.per_input), g.shared,
                           tensor_generator(seed, name))
    except ValueError as e:
        raise MergeError(f"tensor {name!r}: {e}") from None
    if not all_finite(out):
        _check_inputs(sources, g.refs, tensors, name)
        raise MergeError(f"tensor {name!r}: the merge produced NaN or Inf")
    return out


def all_finite(t: torch.Tensor) -> bool:
    """Fast screen: a float sum is finite iff no element is NaN/Inf, unless it overflowed;
    only then pay for the elementwise check."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _check_inputs(sources: Mapping[str, TensorSource], refs: list[str],
                  tensors: list[torch.Tensor], name: str) -> None:
    for ref, t in zip(refs, tensors):
        if not all_finite(t):
            raise MergeError(f"model {sources[ref].name!r}, tensor {name!r}: contains NaN or Inf")
