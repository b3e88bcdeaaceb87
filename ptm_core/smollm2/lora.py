"""LoRA finetuning of a causal LM on chat examples (peft), and the exact merge of an adapter.

The loop reads top to bottom like nanoGPT's: batches of (prompt, response) pairs in the
model's chat format, loss on the response tokens only, AdamW with no weight decay (decay would
pull every weight toward zero and put a shared -θ component into each task vector), a linear
warm-up and cosine decay.

Adapters are stored in bfloat16 and merged as W + (α/r)·B·A with the product taken in float64
from those bfloat16 values: every term of B·A is exact, α/r is a power of two, and the sum is
rounded to float32 once, so the materialized weights are the same bytes on every machine (the
shipped results are keyed by them)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from ptm_core.errors import PTMError

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: int = 16  # alpha / rank must be a power of two (exact merge, see the module doc)
    lr: float = 2e-4
    epochs: int = 2
    batch_size: int = 8
    max_len: int = 256  # tokens of prompt + response; longer prompts are cut from the left
    warmup: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise PTMError(f"LoRA rank must be positive, got {self.rank}")
        scale = self.alpha / self.rank
        if scale <= 0 or 2 ** round(math.log2(scale)) != scale:
            raise PTMError(f"LoRA alpha/rank must be a power of two, got {self.alpha}/{self.rank}")

    def steps(self, n_examples: int) -> int:
        return self.epochs * math.ceil(n_examples / self.batch_size)


Example = tuple[str, str]  # (user prompt, assistant response)


def encode(tokenizer, example: Example, max_len: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one chat exchange; labels are -100 outside the response."""
    prompt, response = example
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                           add_generation_prompt=True, tokenize=False)
    p_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    r_ids = r_ids[: max_len // 2] if len(p_ids) + len(r_ids) > max_len else r_ids
    p_ids = p_ids[-(max_len - len(r_ids)):]  # keep the end of a long prompt (the question)
    return p_ids + r_ids, [-100] * len(p_ids) + r_ids


def batches(encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, epochs: int,
            seed: int, pad_id: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Shuffled batches of similar lengths (sorted within windows of 8 batches, the batch order
    shuffled again), so that little compute goes to padding."""
    rng = random.Random(seed)
    for _ in range(epochs):
        order = list(range(len(encoded)))
        rng.shuffle(order)
        window = 8 * batch_size
        groups = []
        for w in range(0, len(order), window):
            part = sorted(order[w:w + window], key=lambda j: len(encoded[j][0]))
            groups += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        rng.shuffle(groups)
        for group in groups:
            chunk = [encoded[j] for j in group]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (x, y) in enumerate(chunk):
                ids[row, :len(x)] = torch.tensor(x)
                labels[row, :len(y)] = torch.tensor(y)
                mask[row, :len(x)] = 1
            yield ids, labels, mask


def response_loss(model, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over response tokens. The output head runs only where a
    label is: with a 49k vocabulary it costs a fifth of the forward pass per position, and most
    positions are prompt."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.model(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = causal_lm.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def train_lora(model_dir: str | Path, examples: Sequence[Example], cfg: LoraConfig,
               progress: Callable[[int, int, float], None] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Train an adapter on `examples` starting from the checkpoint at `model_dir`.
    Returns the adapter's tensors (peft's names, bfloat16) and a record of the run."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not examples:
        raise PTMError("no training examples")
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    # A CUDA GPU when there is one (the same command then trains in minutes), else the CPU.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
    model = get_peft_model(model, PeftLoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=list(PROJECTIONS),
        bias="none", task_type="CAUSAL_LM"))
    encoded = [encode(tokenizer, ex, cfg.max_len) for ex in examples]
    total = cfg.steps(len(examples))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.999))
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.train()
    start, tokens, losses = time.perf_counter(), 0, []
    for step, (ids, labels, mask) in enumerate(batches(encoded, cfg.batch_size, cfg.epochs, cfg.seed, pad), 1):
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        loss = response_loss(model, ids, labels, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        losses.append(loss.item())
        if progress:
            progress(step, total, losses[-1])
    state = {k: v.detach().to("cpu", torch.bfloat16).contiguous()
             for k, v in get_peft_model_state_dict(model).items()}
    record = {"config": asdict(cfg), "steps": len(losses), "examples": len(examples),
              "tokens_seen": tokens, "wall_s": round(time.perf_counter() - start, 1), "device": device,
              "loss_first": round(losses[0], 4), "loss_last": round(sum(losses[-5:]) / len(losses[-5:]), 4)}
    return state, record


def lora_pairs(adapter: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Adapter tensors -> {weight name in the base model: (A, B)}."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in adapter.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module = key.split(marker)[0]
                name = module.removeprefix("base_model.model.") + ".weight"
                pairs.setdefault(name, {})[part] = value
                break
        else:
            raise PTMError(f"adapter tensor {key!r} is not a LoRA A or B matrix")
    bad = [n for n, p in pairs.items() if set(p) != {"lora_A", "lora_B"}]
    if bad:
        raise PTMError(f"adapter has an A without a B (or the reverse) for {bad[0]}")
    return {n: (p["lora_A"], p["lora_B"]) for n, p in pairs.items()}


def merged_weight(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """W + scale·B·A, exact in float64 from bfloat16 A and B, rounded to W's dtype once."""
    if b.shape[1] != a.shape[0] or (b.shape[0], a.shape[1]) != tuple(weight.shape):
        raise PTMError(f"adapter shapes {tuple(b.shape)}·{tuple(a.shape)} do not fit a weight "
                       f"of shape {tuple(weight.shape)}")
    delta = (b.to(torch.bfloat16).double() @ a.to(torch.bfloat16).double()) * scale
    return (weight.double() + delta).to(weight.dtype)


def merge_adapter(state: dict[str, torch.Tensor], adapter: dict[str, torch.Tensor],
                  scale: float) -> dict[str, torch.Tensor]:
    """A new state dict: `state` with the adapter merged into the weights it adapts."""
    pairs = lora_pairs(adapter)
    missing = [n for n in pairs if n not in state]
    if missing:
        raise PTMError(f"adapter adapts {missing[0]!r}, which the model does not have")
    out = dict(state)
    for name, (a, b) in pairs.items():
        out[name] = merged_weight(state[name], a, b, scale)
    return out
