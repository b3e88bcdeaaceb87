"""Tiny random checkpoints built inside the tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_llama_config(**overrides):
    from transformers import LlamaConfig

    cfg = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=2,
               num_hidden_layers=3, vocab_size=96, max_position_embeddings=64,
               tie_word_embeddings=False)
    cfg.update(overrides)
    return LlamaConfig(**cfg)


def save_llama(path: Path, state: dict[str, torch.Tensor], dtype=torch.float32, **cfg) -> Path:
    """Save `state` as an HF Llama checkpoint (safetensors) at `path`."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_llama_config(**cfg))
    model.load_state_dict(state)
    model.to(dtype).save_pretrained(path, safe_serialization=True)
    return path


def family(root: Path, names=("pre", "general", "skill_a", "skill_b"), seed=0,
           dtype=torch.float32, scale=0.02, **cfg) -> dict[str, Path]:
    """A base model and finetune-like children: base + small random deltas per model."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    base = LlamaForCausalLM(tiny_llama_config(**cfg)).state_dict()
    base = {k: v.clone() for k, v in base.items()}
    out = {}
    for i, name in enumerate(names):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        state = base if i == 0 else {k: v + scale * torch.randn(v.shape, generator=g)
                                     for k, v in base.items()}
        out[name] = save_llama(root / name, state, dtype=dtype, **cfg)
    return out
