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
    _ptm_direct = None  # DirectLoader, or why swaps use vLLM's full reload; None: not decided
    _ptm_in_place = True  # merge straight into the parameters where the loaders only copy

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

    def configure_swap(self, direct: bool = True, in_place: bool = True) -> None:
        """`direct`: load merges straight into the live parameters when the model allows it
        (direct_load.py), else always through vLLM's full reload. `in_place`: on that path,
        merge tensors into their parameters where the loaders would only copy them."""
        self._ptm_direct = None if direct else "disabled"
        self._ptm_in_place = in_place

    def apply_recipe(self, recipe_yaml: str, num_layers: int | None = None, seed: int = 0) -> dict:
        """Rebuild the weights of `recipe_yaml` from the resident inputs and load them in place
        (checkpoint names: vLLM fuses qkv / gate-up and repacks for its kernels as on a fresh
        load). Returns the seconds of each stage and the path taken ("direct", or "reload" with
        `fallback` saying why). The caller must reset the prefix cache."""
        from ptm_core.engine.direct_load import TimedIterator
        from ptm_core.errors import MergeError
        from ptm_core.merge.recipe import Recipe

        start = time.perf_counter()
        recipe = Recipe.from_yaml(recipe_yaml)
        resident = self._ptm_resident()
        resident.ensure(recipe.model_refs())
        self._ptm_check_fits(resident.sources[recipe.template_model()])
        stages = {"prepare_s": time.perf_counter() - start}
        loader = self._ptm_direct_loader()
        into = loader.destinations() if self._ptm_in_place and not isinstance(loader, str) else None
        weights = TimedIterator(resident.merged(recipe, num_layers, seed, into=into,
                                                workers=self._ptm_merge_workers()))
        if not isinstance(loader, str):
            try:
                stages.update(loader.load(weights, immutable=resident.holds), path="direct",
                              merge_s=weights.seconds)
                stages["load_s"] -= weights.seconds
                for reset in ("reset_lora_state", "reset_encoder_cache", "reset_mm_cache"):
                    getattr(self.model_runner, reset, lambda: None)()  # as reload_weights does
                stages["total_s"] = time.perf_counter() - start
                return stages
            except MergeError:  # the recipe's fault, not the path's: the caller marks it invalid
                raise
            except Exception as e:  # half-written: vLLM's full reload rewrites every tensor
                loader.undo()
                self._ptm_direct = f"direct load failed: {type(e).__name__}: {e}"
                weights = TimedIterator(resident.merged(recipe, num_layers, seed))
        t = time.perf_counter()
        self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
        self._ptm_repack_embeddings()
        stages.update(path="reload", fallback=self._ptm_direct, merge_s=weights.seconds,
                      load_and_process_s=time.perf_counter() - t - weights.seconds,
                      total_s=time.perf_counter() - start)
        return stages

    def _ptm_merge_workers(self) -> int:
        """Merge threads: one per core (at most 4) for inputs in CPU memory (the merge is then
        host arithmetic beside the loader), one where they live on the GPU (its own kernels).
        PTM_SWAP_MERGE_THREADS overrides it (1: merge in the loader's thread, torch's threads)."""
        import os

        given = os.environ.get("PTM_SWAP_MERGE_THREADS", "").strip()
        if given:
            if not given.isdigit() or int(given) < 1:
                raise ValueError(f"PTM_SWAP_MERGE_THREADS={given!r}: a whole number, 1 or more")
            return int(given)
        on_cpu = torch.device(self._ptm_resident().device).type == "cpu"
        return max(1, min(4, len(os.sched_getaffinity(0)))) if on_cpu else 1

    def _ptm_repack_embeddings(self) -> None:
        """vLLM's reload skips a head tied to the embeddings ("ParallelLMHead: Failed to load
        weights"), so on CPU its oneDNN handle would keep the old weights (measured on
        SmolLM2-135M: outputs differed from a fresh engine). Rebuild every embedding-method
        layer's packing from its live weight, as a fresh load does."""
        for layer in self.model_runner.get_model().modules():
            method = getattr(layer, "quant_method", None)
            if type(method).__name__ == "UnquantizedEmbeddingMethod":
                method.process_weights_after_loading(layer)

    def _ptm_direct_loader(self):
        """The DirectLoader, or a string saying why the full reload is used instead."""
        from ptm_core.engine.direct_load import DirectLoader, Unsupported
        from vllm.platforms import current_platform

        if self._ptm_direct is None:
            try:
                if not (current_platform.is_cpu() or current_platform.is_cuda()):
                    raise Unsupported(f"platform {current_platform.device_name}")
                self._ptm_direct = DirectLoader(
                    self.model_runner.get_model(), cpu=current_platform.is_cpu(),
                    quantization=self.model_runner.model_config.quantization)
            except Unsupported as e:
                self._ptm_direct = f"unsupported: {e}"
        return self._ptm_direct

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
