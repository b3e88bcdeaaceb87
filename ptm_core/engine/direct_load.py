"""The swap's fast path: merged weights copied straight into a live vLLM model's parameters.

vLLM's `reload_weights` takes every layer back to checkpoint format on the meta device,
buffers each layer's weights until it is complete, materializes it, loads, repacks and copies
the result into the old storage. When the served model's parameters already have checkpoint
layout, its own weight loaders (which fuse q/k/v and gate/up) can write into them directly,
and only the repacking for the kernels has to run again.

After the first load, tensors whose loader only copies them whole into one region of a
parameter (copy_probe.py: most of a Llama's large ones) are merged straight into that region
(`destinations`), and their loaders are skipped: the copy is gone from the swap.

On CPU vLLM drops each linear layer's weight after packing it for oneDNN; the fast path gives
those layers their checkpoint-shaped weight back once (vLLM's recorded metadata says its shape
and loader) and keeps it, so later swaps load into it and rebuild the packing from it. Cost:
one more copy of the linear weights in memory. Supported: unquantized models on CPU or CUDA;
anything else (quantized layers, other processing) is refused up front and the caller uses
vLLM's full reload, as it does when a load through the fast path fails.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Callable, Iterable, Iterator

import torch

_LINEAR, _EMBEDDING = "UnquantizedLinearMethod", "UnquantizedEmbeddingMethod"


class Unsupported(Exception):
    """The model cannot take the fast path; the message says why."""


class TimedIterator:
    """Wraps an iterator and adds up the seconds spent producing its items (the merge)."""

    def __init__(self, items: Iterable):
        self._it, self.seconds = iter(items), 0.0

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self._it)
        finally:
            self.seconds += time.perf_counter() - start


class DirectLoader:
    """Loads checkpoint-named tensors into `model` in place (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, *, cpu: bool, quantization: str | None):
        if quantization is not None:
            raise Unsupported(f"quantization {quantization!r}")
        self.model, self.cpu = model, cpu
        self.layers = [m for m in model.modules() if getattr(m, "quant_method", None) is not None]
        for layer in self.layers:
            kind = type(layer.quant_method).__name__
            if kind not in (_LINEAR, _EMBEDDING):
                raise Unsupported(f"{type(layer).__name__} uses {kind}")
            if layer.weight.numel() and layer.weight.ndim != 2:
                raise Unsupported(f"{type(layer).__name__} has a {layer.weight.ndim}-d weight")
        self._dropped: dict[torch.nn.Module, torch.nn.Parameter] = {}  # layer -> vLLM's empty weight
        self.expected = {n for n, _ in model.named_parameters()}
        # checkpoint name -> the resident (never written) tensor whose values it was last loaded
        # from: loading that same tensor again would change nothing, so it is skipped
        self._served: dict[str, torch.Tensor] = {}
        self._loaded: set[str] = set()  # parameters loaded since the model was last whole
        # checkpoint name -> (region of a live parameter it is merged into, parameter name);
        # learned on the first load (copy_probe.py)
        self._destinations: dict[str, tuple[torch.Tensor, str]] = {}
        self._probed = False

    def destinations(self) -> dict[str, torch.Tensor]:
        """Checkpoint name -> the view of a live parameter to merge that tensor into before
        `load` (which then skips it): those whose parameter still has the storage it had when
        the destination was learned (a repack that moved it would have been refused)."""
        params = dict(self.model.named_parameters())
        keep = {n: (view, p) for n, (view, p) in self._destinations.items()
                if p in params and params[p].untyped_storage().data_ptr()
                == view.untyped_storage().data_ptr()}
        self._destinations = keep
        return {n: view for n, (view, _) in keep.items()}

    def _restore_checkpoint_weights(self) -> None:
        """Give layers whose weight vLLM dropped after packing a checkpoint-shaped one again."""
        from vllm.model_executor.model_loader.reload.layerwise import (LAYERWISE_INFO,
                                                                        _get_original_loader)
        from vllm.model_executor.model_loader.reload.meta import materialize_meta_tensor
        from vllm.model_executor.model_loader.reload.sanitize import restore_layer_refs

        for layer in self.layers:
            if layer.weight.numel() or layer in self._dropped:
                continue
            info = LAYERWISE_INFO.get(layer)
            meta = info.restore_metadata[0].get("weight") if info is not None else None
            if meta is None or meta.ndim != 2:
                raise Unsupported(f"no checkpoint layout recorded for {type(layer).__name__}")
            with info.restore_device:
                weight = materialize_meta_tensor(restore_layer_refs(meta, layer))
            if hasattr(weight, "weight_loader"):  # a reload leaves its buffering wrapper there
                weight.weight_loader = _get_original_loader(weight)
            self._dropped[layer] = layer.weight
            layer.register_parameter("weight", weight)

    def load(self, weights: Iterable[tuple[str, torch.Tensor]],
             immutable: Callable[[torch.Tensor], bool] = lambda t: False) -> dict[str, float]:
        """Load `weights` and repack the layers whose weights were loaded; returns the seconds
        of each stage and how many tensors were skipped. A tensor that is its name's
        destination (merged there: see `destinations`) is not loaded again. `immutable(t)`:
        whether `t` is a tensor nobody writes to (a resident input's own): one loaded under
        the same name last time is skipped. On an exception the model is half-written: call
        `undo` and reload it in full, or load every tensor again (the next `load` does)."""
        from ptm_core.engine.copy_probe import CopyProbe

        start = time.perf_counter()
        self._restore_checkpoint_weights()
        skipped: list[str] = []
        in_place: list[str] = []  # tensors the merge wrote into their destination

        def changed():
            for name, tensor in weights:
                if self._served.get(name) is tensor:
                    skipped.append(name)
                    continue
                self._served.pop(name, None)  # being overwritten; recorded again once loaded
                dest = self._destinations.get(name)
                if dest is not None and tensor is dest[0]:
                    in_place.append(name)
                    continue
                yield name, tensor
                if immutable(tensor):
                    self._served[name] = tensor

        probe = None if self._probed else CopyProbe()
        try:
            with torch.no_grad(), probe or nullcontext():
                loaded = set(self.model.load_weights(probe.watch(changed()) if probe else changed()))
        except BaseException:
            self._served.clear()  # written but not repacked: the next load does every tensor
            raise
        params = dict(self.model.named_parameters())
        if probe is not None:
            self._destinations, self._probed = probe.destinations(params), True
        loaded |= {self._destinations[n][1] for n in in_place}
        self._loaded |= loaded
        missing = self.expected - self._loaded
        if missing:
            raise Unsupported(f"{len(missing)} parameters not in the merge, e.g. {sorted(missing)[:3]}")
        loaded_s = time.perf_counter() - start
        self._repack({id(params[n]) for n in loaded if n in params})
        return {"load_s": loaded_s, "repack_s": time.perf_counter() - start - loaded_s,
                "skipped_tensors": len(skipped), "in_place_tensors": len(in_place)}

    def _repack(self, loaded: set[int]) -> None:
        """What vLLM's process_weights_after_loading does for these methods, keeping the
        checkpoint-layout weight (CPU linear layers would drop it), for the layers whose weight
        (by identity: a tied head shares its embedding's) is in `loaded`."""
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        for layer in self.layers:
            if id(layer.weight) not in loaded:
                continue
            weight = layer.weight
            if self.cpu and type(layer.quant_method).__name__ == _LINEAR:
                dispatch_cpu_unquantized_gemm(layer, remove_weight=False)
            else:
                layer.quant_method.process_weights_after_loading(layer)
            if layer.weight is not weight or layer.weight.data_ptr() != weight.data_ptr():
                raise Unsupported(f"processing {type(layer).__name__} changed its weight's layout")

    def undo(self) -> None:
        """Put back the weights vLLM dropped, so its full reload finds the layout it left."""
        for layer, empty in self._dropped.items():
            layer.register_parameter("weight", empty)
        self._dropped.clear()
        self._served.clear()
        self._loaded.clear()
        self._destinations.clear()
        self._probed = False
