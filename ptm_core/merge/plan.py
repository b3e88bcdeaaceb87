"""Merge a whole model state tensor by tensor.

`merge_state` is the one loop over tensors. The exporter feeds it checkpoints on disk; the
engine's worker feeds it models held in memory. Everything that can be checked without the
tensor data (names, shapes, parameters) is checked before the first tensor is merged, so a
bad recipe fails before any output exists.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Mapping, Optional, Protocol

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


def check_compatible(recipe: Recipe, sources: Mapping[str, TensorSource],
                     num_layers: Optional[int] = None) -> list[str]:
    """Tensor names to merge, in the template model's order, after checking that every input
    has the same tensors with the same shapes and that every parameter resolves."""
    refs = recipe.model_refs()
    missing = [r for r in refs if r not in sources]
    if missing:
        raise MergeError(f"no input loaded for model(s) {', '.join(map(repr, missing))}")
    template = sources[recipe.template_model()]
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
    for n in names:  # parameters resolve for every tensor (filters, gradients, required)
        recipe.resolve(n, num_layers)
    return names


def merge_state(recipe: Recipe, sources: Mapping[str, TensorSource], *,
                num_layers: Optional[int] = None, seed: int = 0,
                names: Optional[list[str]] = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, merged float32 tensor) for every tensor of the model."""
    if names is None:
        names = check_compatible(recipe, sources, num_layers)
    for name in names:
        yield name, merge_rows(recipe, sources, name, num_layers, seed, None)


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
    """The merged tensor as consecutive row chunks (see chunk_rows)."""
    shape = sources[recipe.template_model()].shape(name)
    for rows in chunk_rows(recipe, shape, chunk_elements):
        yield merge_rows(recipe, sources, name, num_layers, seed, rows)


def merge_rows(recipe: Recipe, sources: Mapping[str, TensorSource], name: str,
                num_layers: Optional[int], seed: int, rows: Optional[tuple[int, int]]) -> torch.Tensor:
    shared, per_input = recipe.resolve(name, num_layers)
    base_ref = recipe.base_model if recipe.spec.needs_base else None
    refs = ([base_ref] if base_ref else []) + recipe.inputs()
    tensors = [sources[r].get(name, rows) for r in refs]
    # Elementwise methods carry any NaN/Inf of an input into the output (NaN*0 and inf-inf are
    # NaN), so checking the output is enough there; sparsifying methods could mask one out.
    if not recipe.spec.elementwise:
        _check_inputs(sources, refs, tensors, name)
    try:
        out = merge_tensor(recipe.merge_method, tensors[0] if base_ref else None,
                           tensors[1:] if base_ref else tensors, per_input, shared,
                           tensor_generator(seed, name))
    except ValueError as e:
        raise MergeError(f"tensor {name!r}: {e}") from None
    if not all_finite(out):
        _check_inputs(sources, refs, tensors, name)
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
