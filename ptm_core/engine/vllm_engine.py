"""The warm vLLM engine: started once per experiment, weights swapped in place per recipe.

    engine = VLLMEngine(template=theta_g, inputs=[theta_pre, theta_g, skill_dir])
    engine.apply(task_arithmetic(pre, general, {"safety": skill_dir}, {"safety": 0.5}))
    engine.generate(["How do I kill a Python process?"], Sampling(max_tokens=64))

`template` is the model vLLM starts from (architecture, tokenizer, chat template); every recipe
applied later must produce tensors with that model's names and shapes. The input models are
loaded into the worker once (`load_inputs`, or lazily by the first recipe naming them); a swap
merges them inside the worker (see `worker_ext.py`) and resets the prefix cache, so no KV block
computed with the old weights is reused.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ptm_core.engine.base import Sampling
from ptm_core.engine.chat import chat_token_ids, decode_completion, load_tokenizer
from ptm_core.errors import MergeError

if TYPE_CHECKING:
    from ptm_core.merge.recipe import Recipe

EXTENSION = "ptm_core.engine.worker_ext.WeightSwapExtension"


def configure_cpu_environment(kv_cache_gib: float = 1.0, multiprocessing: bool = False) -> None:
    """Defaults for vLLM's CPU backend that fit a small shared machine; variables the user set
    win. Without multiprocessing the engine starts in seconds instead of half a minute."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{kv_cache_gib:g}")
    if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "1" if multiprocessing else "0")


class VLLMEngine:
    kind = "vllm"

    def __init__(self, template: str | Path, inputs: Sequence[str] = (), *,
                 dtype: str = "auto", max_model_len: int | None = None,
                 inputs_on: str = "cpu", inputs_dtype: str | None = None,
                 kv_cache_gib: float = 1.0, merge_seed: int = 0, seed: int = 0,
                 direct_swap: bool = True, merge_in_place: bool = True, **llm_kwargs: Any):
        """`dtype`: vLLM's model dtype ("auto" = the checkpoint's; "float32" for exact CPU
        cross-checks). `inputs_on`: "cpu" or "worker" (the GPU: fastest swaps, but needs
        device-agnostic merge methods and room left by a lower `gpu_memory_utilization`; see
        docs/evaluation.md). `direct_swap`: load merges straight into the live parameters when
        the model allows it (engine/direct_load.py; on CPU it keeps one more copy of the linear
        weights), else through vLLM's full reload; `merge_in_place`: on that path, merge the
        tensors its loaders only copy straight into their parameters (False: merge into
        buffers and load them, to measure the difference). Extra keyword arguments go to
        `vllm.LLM`."""
        from vllm import LLM
        from vllm.platforms import current_platform

        self._cpu = current_platform.is_cpu()
        if self._cpu:
            configure_cpu_environment(kv_cache_gib)
        self.template = str(template)
        self.merge_seed = merge_seed
        self.tokenizer = load_tokenizer(self.template)
        start = time.perf_counter()
        self.llm = LLM(model=self.template, worker_extension_cls=EXTENSION, dtype=dtype,
                       max_model_len=max_model_len, seed=seed,
                       # sampling is ours alone: ignore generation_config.json defaults
                       generation_config="vllm",
                       **{"enforce_eager": True, **llm_kwargs})
        self.start_s = time.perf_counter() - start
        self.num_layers = getattr(self.llm.llm_engine.model_config.hf_config,
                                  "num_hidden_layers", None)
        self.recipe_key: str | None = None  # None: the template's own weights
        self.last_swap: dict[str, Any] = {}  # the last apply's stages (seconds) and path
        self._lock = threading.RLock()
        self._rpc("configure_inputs", inputs_on, inputs_dtype)
        self._rpc("configure_swap", direct_swap, merge_in_place)
        if inputs:
            self.load_inputs(inputs)

    # --- weights ---------------------------------------------------------------------------
    def load_inputs(self, refs: Sequence[str]) -> list[str]:
        """Make input models resident in the worker; returns those loaded now."""
        with self._lock:
            return self._rpc("load_inputs", list(refs))

    def resident_inputs(self) -> list[str]:
        with self._lock:
            return self._rpc("resident_inputs")

    def apply(self, recipe: "Recipe") -> float:
        """Swap the served weights to `recipe`; returns the seconds it took (`last_swap` has
        the split: merge, load, repack or vLLM's reload, prefix-cache reset, and the path)."""
        with self._lock:
            start = time.perf_counter()
            self.last_swap = {}
            try:
                self.last_swap = dict(self._rpc("apply_recipe", recipe.to_yaml(), self.num_layers,
                                                self.merge_seed))
            except Exception:
                # a failed reload may leave a half-written model: never serve it as a recipe
                self.recipe_key = "<invalid>"
                raise
            finally:
                t = time.perf_counter()
                self.llm.reset_prefix_cache()
                self.last_swap["reset_prefix_cache_s"] = time.perf_counter() - t
            self.recipe_key = recipe.key()
            self.last_swap["swap_s"] = time.perf_counter() - start
            return self.last_swap["swap_s"]

    # --- generation ------------------------------------------------------------------------
    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        return [[decode_completion(self.tokenizer, ids, sampling.stop) for ids in per_prompt]
                for per_prompt in self.generate_ids(prompts, sampling)]

    def generate_ids(self, prompts: list[str], sampling: Sampling) -> list[list[list[int]]]:
        """Generated token ids without the final EOS (comparable with `HFEngine.generate_ids`)."""
        eos = self.tokenizer.eos_token_id
        if sampling.temperature == 0 and sampling.n > 1:  # greedy samples are identical
            once = self.generate_ids(prompts, replace(sampling, n=1))
            return [per_prompt * sampling.n for per_prompt in once]
        return [[_strip_eos(list(c.token_ids), eos) for c in out.outputs]
                for out in self._generate(prompts, sampling)]

    def _generate(self, prompts: list[str], sampling: Sampling):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.check_ready()
        params = SamplingParams(n=sampling.n, temperature=sampling.temperature,
                                top_p=sampling.top_p, max_tokens=sampling.max_tokens,
                                seed=sampling.seed, stop=list(sampling.stop) or None)
        requests = [TokensPrompt(prompt_token_ids=chat_token_ids(self.tokenizer, p))
                    for p in prompts]
        groups = [range(len(requests))]
        sched = self.llm.llm_engine.vllm_config.scheduler_config
        if self._cpu and sampling.temperature > 0 and sched.enable_chunked_prefill:
            # vLLM-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's
            # prefill is split across scheduler steps; submit groups whose prefills fit one step.
            # (Without chunked prefill no prefill is ever split: one submission, continuously
            # batched, instead of one decode loop per group.)
            groups = prefill_groups([len(r["prompt_token_ids"]) for r in requests], sampling.n,
                                    sched.max_num_batched_tokens, sched.max_num_seqs)
        with self._lock:
            outputs = []
            for group in groups:
                outputs += self.llm.generate([requests[i] for i in group], params, use_tqdm=False)
            return outputs

    def exclusive(self) -> threading.RLock:
        """Hold while driving `self.llm` directly (lm-eval): no swap can interleave."""
        return self._lock

    def check_ready(self) -> None:
        """Refuse to serve weights left half-written by a failed swap."""
        if self.recipe_key == "<invalid>":
            raise MergeError("the last weight swap failed; apply a recipe before generating")

    def _rpc(self, method: str, *args: Any) -> Any:
        """Call the worker extension; one worker's answer (all workers do the same work)."""
        return self.llm.collective_rpc(method, args=args)[0]

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the engine and free its memory (the process can then start another)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # already stopped
                pass
            del llm
            gc.collect()

    def __enter__(self) -> "VLLMEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prefill_groups(lengths: Sequence[int], n: int, max_tokens: int, max_seqs: int) -> list[range]:
    """Consecutive groups of requests whose prefills (length x n sequences) all fit in one
    scheduler step of `max_tokens` tokens and `max_seqs` sequences."""
    groups, start, tokens = [], 0, 0
    for i, length in enumerate(lengths):
        if length * n > max_tokens or n > max_seqs:
            raise ValueError(f"a prompt of {length} tokens with n={n} does not fit one scheduler "
                             f"step ({max_tokens} tokens, {max_seqs} sequences); raise "
                             "max_num_batched_tokens / max_num_seqs")
        if tokens + length * n > max_tokens or (i - start + 1) * n > max_seqs:
            groups.append(range(start, i))
            start, tokens = i, 0
        tokens += length * n
    groups.append(range(start, len(lengths)))
    return [g for g in groups if len(g)]


def _strip_eos(tokens: list[int], eos: int | None) -> list[int]:
    if eos is not None and eos in tokens:
        return tokens[:tokens.index(eos)]
    return tokens
