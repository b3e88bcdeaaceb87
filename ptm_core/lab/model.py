"""The lab's tiny Llama: Hugging Face format, float32, untied embeddings.

The head size must be one that vLLM's CPU attention accepts (the full profile uses 4 heads of
32); at the full size a checkpoint is about 4.5 MB (1.1M parameters), small enough to ship
several in the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


@dataclass(frozen=True)
class ModelShape:
    hidden: int = 128
    layers: int = 4
    heads: int = 2
    intermediate: int = 384
    max_positions: int = 512

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def llama_config(shape: ModelShape, vocab_size: int, eos_id: int, pad_id: int):
    from transformers import LlamaConfig

    if shape.head_dim not in VLLM_CPU_HEAD_SIZES or shape.hidden % shape.heads:
        raise ValueError(f"head size {shape.hidden}/{shape.heads} is not one vLLM CPU supports")
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads, head_dim=shape.head_dim,
        max_position_embeddings=shape.max_positions, rms_norm_eps=1e-5,
        tie_word_embeddings=False, bos_token_id=eos_id, eos_token_id=eos_id,
        pad_token_id=pad_id, dtype="float32")


def new_model(shape: ModelShape, vocab_size: int, eos_id: int, pad_id: int, seed: int):
    """A freshly initialised model; the same seed gives the same weights."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(shape, vocab_size, eos_id, pad_id)).float()


def load_model(path: str | Path):
    import torch
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def save_model(model, tokenizer_dir: str | Path, out_dir: str | Path) -> None:
    """config.json, generation_config.json, model.safetensors and the tokenizer files."""
    import shutil

    from transformers import GenerationConfig

    cfg = model.config
    model.generation_config = GenerationConfig(
        bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id, do_sample=False, max_new_tokens=64)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(Path(tokenizer_dir) / name, Path(out_dir) / name)
