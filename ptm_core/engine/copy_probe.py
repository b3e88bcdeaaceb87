"""Where a model's weight loaders put each checkpoint tensor, learned by watching one load.

vLLM's loaders fuse q/k/v and gate/up by copying each checkpoint tensor into a slice of a fused
parameter. When a loader does nothing with a tensor but read its metadata and copy it, whole,
into one region of one parameter (directly or through a view of the whole tensor, such as the
narrow to one rank's shard when there is one rank), that region is the tensor's destination: a
merge can write there itself and the loader can be skipped (direct_load.py). Anything else a
loader does with the tensor (a transpose, a narrow to part of it, a scale, a second copy) leaves
the tensor without a destination, so it keeps going through its loader.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from typing import Iterable, Iterator

import torch
from torch.overrides import TorchFunctionMode

# what a loader may call on a watched tensor besides the copy: reads of its metadata
_METADATA = frozenset({"size", "dim", "numel", "stride", "is_contiguous", "element_size",
                       "data_ptr", "__len__", "shape", "dtype", "device", "ndim", "is_meta",
                       "is_cuda", "is_cpu", "layout", "requires_grad", "names"})

_IN_PLACE_DUNDERS = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__"})


def _name(func) -> str:
    name = getattr(func, "__name__", "")
    if name == "__get__":  # a property such as .shape: named by its descriptor
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


class CopyProbe(TorchFunctionMode):
    """Active (in the loading thread only: torch's function modes are per thread) around one
    `load_weights` call fed by `watch(weights)`; then `destinations(params)`."""

    def __init__(self):
        super().__init__()
        self._watched: dict[int, tuple[str, weakref.ref]] = {}
        self._copies: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._other: set[str] = set()  # names used in any other way
        self._writes: list[tuple[int, int, str | None]] = []  # every in-place op's span, by whom
        self._broken = False  # the bookkeeping failed somewhere: trust none of it

    def watch(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in weights:
            self._watched[id(tensor)] = (name, weakref.ref(tensor))
            yield name, tensor

    def _lookup(self, value) -> str | None:
        if not isinstance(value, torch.Tensor):
            return None
        entry = self._watched.get(id(value))
        # the weak reference tells a watched tensor from a later one given its freed id
        return entry[0] if entry is not None and entry[1]() is value else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not self._broken:
            try:
                self._record(func, args, kwargs, result)
            except Exception:  # a gap in the probe must not fail the load: no destinations
                self._broken = True
        return result

    def _record(self, func, args, kwargs, result) -> None:
        name = _name(func)
        copied = None
        for i, value in enumerate((*args, *kwargs.values())):
            watched = self._lookup(value)
            if watched is None:
                continue
            if (name == "copy_" and i == 1 and len(args) == 2 and not kwargs
                    and args[0].shape == value.shape):
                self._copies[watched].append(args[0])
                copied = watched
            elif _full_alias(result, value):  # e.g. a narrow to the whole tensor (one rank)
                self._watched[id(result)] = (watched, weakref.ref(result))
            elif name not in _METADATA or isinstance(result, torch.Tensor):
                self._other.add(watched)
        writes = name in _IN_PLACE_DUNDERS or (name.endswith("_") and not name.startswith("_"))
        if writes and args and isinstance(args[0], torch.Tensor):
            span = _span(args[0])
            if span is not None:
                self._writes.append((*span, copied))

    def destinations(self, params: dict[str, torch.nn.Parameter]) -> dict[str, tuple[torch.Tensor, str]]:
        """Checkpoint name -> (the region of a parameter it was copied into, that parameter's
        name), for the names copied exactly once and used no other way, into a contiguous
        region of one parameter that nothing else written during the load overlaps."""
        if self._broken:
            return {}
        by_storage = {p.untyped_storage().data_ptr(): n for n, p in params.items() if p.numel()}
        found: dict[str, tuple[torch.Tensor, str]] = {}
        for name, dsts in self._copies.items():
            if name in self._other or len(dsts) != 1 or not dsts[0].is_contiguous():
                continue
            param = by_storage.get(dsts[0].untyped_storage().data_ptr())
            if param is not None:
                found[name] = (dsts[0], param)
        return {n: v for n, v in found.items() if not self._overlapped(n, _span(v[0]))}

    def _overlapped(self, name: str, span: tuple[int, int] | None) -> bool:
        """Whether a write other than `name`'s own copy touched memory in `span`."""
        if span is None:
            return True
        start, end = span
        return any(s < end and start < e and by != name for s, e, by in self._writes)


def _full_alias(result, t: torch.Tensor) -> bool:
    """Whether `result` is `t` itself under another tensor object: same memory, layout, dtype."""
    return (isinstance(result, torch.Tensor) and result is not t and not t.is_meta
            and result.dtype == t.dtype and result.shape == t.shape
            and result.stride() == t.stride() and result.data_ptr() == t.data_ptr())


def _span(t: torch.Tensor) -> tuple[int, int] | None:
    """The byte range [start, end) of memory a view can touch (None: no memory, or strides
    this does not bound)."""
    if t.is_meta or t.numel() == 0 or any(st < 0 for st in t.stride()):
        return None
    start = t.untyped_storage().data_ptr() + t.storage_offset() * t.element_size()
    extent = 1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride()))
    return start, start + extent * t.element_size()
