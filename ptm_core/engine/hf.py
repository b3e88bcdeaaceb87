"""A plain transformers engine: the fallback where vLLM is unavailable, and a cross-check of it.

It merges with the same merge engine as the vLLM worker (the input models stay resident, the
recipe is rebuilt in memory) and loads the result with `load_state_dict`."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from ptm_core.engine.base import Sampling
from ptm_core.engine.chat import chat_token_ids, decode_completion, load_tokenizer
from ptm_core.engine.resident import ResidentInputs
from ptm_core.errors import MergeError

if TYPE_CHECKING:
    from ptm_core.merge.recipe import Recipe


class HFEngine:
    """Generates with `transformers` in left-padded batches.

    `template` is the model directory whose architecture and tokenizer every recipe shares (all
    inputs of one experiment are finetunes of one base)."""

    kind = "hf"

    def __init__(self, template: str | Path, *, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 merge_seed: int = 0):
        from transformers import AutoModelForCausalLM

        self.template = str(template)
        self.device, self.batch_size, self.merge_seed = device, batch_size, merge_seed
        self.tokenizer = load_tokenizer(self.template)
        self.model = AutoModelForCausalLM.from_pretrained(self.template, dtype=dtype).to(device)
        self.model.eval()
        self.inputs = ResidentInputs(device=device, dtype=dtype)
        self.recipe_key: str | None = None  # None: the template's own weights
        self._lock = threading.Lock()

    def load_inputs(self, refs: Sequence[str]) -> list[str]:
        """Make input models resident ahead of the first `apply`."""
        with self._lock:
            return self.inputs.ensure(refs)

    def apply(self, recipe: "Recipe") -> float:
        with self._lock:
            start = time.perf_counter()
            state = dict(self.inputs.merged(recipe, self.model.config.num_hidden_layers,
                                            self.merge_seed))
            _load_state(self.model, state)
            self.recipe_key = recipe.key()
            return time.perf_counter() - start

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        return [[decode_completion(self.tokenizer, seq, sampling.stop) for seq in per_prompt]
                for per_prompt in self.generate_ids(prompts, sampling)]

    def generate_ids(self, prompts: list[str], sampling: Sampling) -> list[list[list[int]]]:
        """The generated token ids (without prompt, padding or the final EOS)."""
        with self._lock:
            encoded = [chat_token_ids(self.tokenizer, p) for p in prompts]
            out: list[list[list[int]]] = []
            for start in range(0, len(encoded), self.batch_size):
                out.extend(self._generate_batch(encoded[start:start + self.batch_size], sampling))
            return out

    @torch.no_grad()
    def _generate_batch(self, batch: list[list[int]], sampling: Sampling) -> list[list[list[int]]]:
        from transformers import GenerationConfig

        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        width = max(len(ids) for ids in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
        greedy = sampling.temperature == 0.0
        # A fresh config, so a checkpoint's generation_config.json cannot change the sampling.
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens, do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p, top_k=None,
            num_return_sequences=1 if greedy else sampling.n,
            eos_token_id=self.tokenizer.eos_token_id, pad_token_id=pad)
        if not greedy:
            torch.manual_seed(sampling.seed)
        seqs = self.model.generate(input_ids=input_ids.to(self.device),
                                   attention_mask=mask.to(self.device),
                                   generation_config=config).cpu()
        per_row = [_strip(row[width:].tolist(), self.tokenizer.eos_token_id) for row in seqs]
        if greedy:  # greedy samples are identical: decode once, repeat
            return [[row] * sampling.n for row in per_row]
        return [per_row[i * sampling.n:(i + 1) * sampling.n] for i in range(len(batch))]


def _strip(tokens: list[int], eos: int | None) -> list[int]:
    """Generated tokens up to (not including) the first EOS (padding follows it)."""
    if eos is not None and eos in tokens:
        tokens = tokens[:tokens.index(eos)]
    return tokens


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load merged tensors, failing loudly, and before touching the model, on names or shapes
    it does not have."""
    current = model.state_dict()
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [n for n in current if n not in state and n not in tied
               and not n.endswith("rotary_emb.inv_freq")]
    unexpected = [n for n in state if n not in current]
    wrong = [n for n, t in state.items() if n in current and current[n].shape != t.shape]
    if missing or unexpected or wrong:
        raise MergeError(f"merged weights do not fit the model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
    model.load_state_dict(state, strict=False)
