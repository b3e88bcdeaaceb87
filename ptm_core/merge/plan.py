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

    def get(self, name: str) -> torch.Tensor: ...


class InMemorySource:
    """A model held in memory (float32), e.g. inside an inference worker."""

    def __init__(self, name: str, tensors: Mapping[str, torch.Tensor]):
        self.name = name
        self.tensors = {k: v.to(torch.float32) for k, v in tensors.items()}

    def tensor_names(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name].shape)

    def get(self, name: str) -> torch.Tensor:
        return self.tensors[name]


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
    base_ref = recipe.base_model if recipe.spec.needs_base else None
    input_refs = recipe.inputs()
    for name in names:
        shared, per_input = recipe.resolve(name, num_layers)
        base = _finite(sources[base_ref], name) if base_ref else None
        inputs = [_finite(sources[r], name) for r in input_refs]
        try:
            out = merge_tensor(recipe.merge_method, base, inputs, per_input, shared,
                               tensor_generator(seed, name))
        except ValueError as e:
            raise MergeError(f"tensor {name!r}: {e}") from None
        if not torch.isfinite(out).all():
            raise MergeError(f"tensor {name!r}: the merge produced NaN or Inf")
        yield name, out


def _finite(src: TensorSource, name: str) -> torch.Tensor:
    t = src.get(name)
    if not torch.isfinite(t).all():
        raise MergeError(f"model {src.name!r}, tensor {name!r}: contains NaN or Inf")
    return t
