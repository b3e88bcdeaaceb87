"""vLLM worker extension: keeps an experiment's input models resident in the worker and swaps
the served weights to any recipe over them, without restarting the engine.

vLLM mixes this class into its worker (`LLM(worker_extension_cls=...)`), so `self` is the worker;
the client calls these methods by name through `llm.collective_rpc`. Only small, picklable
values cross that call (reference strings, recipe YAML, numbers): tensors do not survive it
when vLLM runs its engine in another process.
"""

from __future__ import annotations

import time

import torch


class WeightSwapExtension:
    _ptm_inputs = None  # ResidentInputs, created on first use
    _ptm_served_shapes = None  # tensor name -> shape of the checkpoint vLLM started from

    def _ptm_resident(self, device: str = "cpu", dtype: str | None = None):
        from ptm_core.engine.resident import ResidentInputs

        if self._ptm_inputs is None:
            self._ptm_inputs = ResidentInputs(
                device=self.device if device == "worker" else device,
                dtype=getattr(torch, dtype) if dtype else self.model_runner.model_config.dtype)
        return self._ptm_inputs

    def configure_inputs(self, device: str = "cpu", dtype: str | None = None) -> str:
        """Where input models live: "cpu" (default) or "worker" (the worker's device, e.g. the
        GPU: fastest merges, costs memory beside vLLM's own). `dtype` defaults to the model's."""
        self._ptm_inputs = None
        resident = self._ptm_resident(device, dtype)
        return f"{resident.device}:{resident.dtype}"

    def load_inputs(self, refs: list[str]) -> list[str]:
        """Load the named models (paths or hub ids) unless resident; return those loaded now."""
        return self._ptm_resident().ensure(refs)

    def drop_inputs(self, refs: list[str]) -> None:
        self._ptm_resident().drop(refs)

    def resident_inputs(self) -> list[str]:
        return list(self._ptm_resident().sources)

    def apply_recipe(self, recipe_yaml: str, num_layers: int | None = None, seed: int = 0) -> float:
        """Rebuild the weights of `recipe_yaml` from the resident inputs and load them in place
        (checkpoint names: vLLM fuses qkv / gate-up and repacks for its kernels as on a fresh
        load). Returns the seconds it took. The caller must reset the prefix cache."""
        from ptm_core.merge.recipe import Recipe

        start = time.perf_counter()
        recipe = Recipe.from_yaml(recipe_yaml)
        resident = self._ptm_resident()
        resident.ensure(recipe.model_refs())
        self._ptm_check_fits(resident.sources[recipe.template_model()])
        weights = resident.merged(recipe, num_layers, seed)
        self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
        return time.perf_counter() - start

    def _ptm_check_fits(self, source) -> None:
        """Refuse recipes over another architecture before touching the served weights
        (vLLM would only warn about weights it did not load)."""
        from ptm_core.errors import MergeError
        from ptm_core.merge.checkpoint import Checkpoint

        served_dir = self.model_runner.model_config.model
        if self._ptm_served_shapes is None:
            with Checkpoint.open(served_dir) as served:
                self._ptm_served_shapes = {n: served.shape(n) for n in served.tensor_names()}
        shapes = {n: source.shape(n) for n in source.tensor_names()}
        if shapes != self._ptm_served_shapes:
            diff = sorted(n for n in shapes.keys() | self._ptm_served_shapes.keys()
                          if shapes.get(n) != self._ptm_served_shapes.get(n))
            raise MergeError(f"model {source.name!r} does not fit the served model {served_dir!r}: "
                             f"{len(diff)} tensors differ in name or shape, e.g. {diff[:3]}")
