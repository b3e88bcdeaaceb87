"""Random Llama checkpoints of real shapes (7B and smaller), written tensor by tensor with no
download and no model in memory: for benchmarks at scale (`bench swap --random-llama 7b`).

A child (`child_seed`) is its base plus Gaussian noise of `delta` times each tensor's scale: a
stand-in finetune with the base's shapes. The same (shape, seed) always gives the same tensors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

# Llama-2-7B's dimensions; "mini" is for tests (vLLM's CPU attention supports head size 64)
SHAPES: dict[str, dict[str, int]] = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
               num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
    "mini": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, vocab_size=512),
}
_STD = 0.02  # the initializer range of Llama's config


def tensor_shapes(dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """HF Llama tensor names and shapes, in checkpoint order (untied head)."""
    h, i, v = dims["hidden_size"], dims["intermediate_size"], dims["vocab_size"]
    kv = h // dims["num_attention_heads"] * dims["num_key_value_heads"]
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for n in range(dims["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                    p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                    p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                    p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                    p + "mlp.down_proj.weight": (h, i)})
    out.update({"model.norm.weight": (h,), "lm_head.weight": (v, h)})
    return out


def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _tensor(name: str, shape: tuple[int, ...], seed: int, child_seed: int | None,
            delta: float) -> torch.Tensor:
    if len(shape) == 1:  # norms: ones, as initialized
        base = torch.ones(shape)
    else:
        base = torch.randn(shape, generator=_generator(seed, name)).mul_(_STD)
    if child_seed is not None:
        scale = delta * (_STD if len(shape) > 1 else 1.0)
        base.add_(torch.randn(shape, generator=_generator(child_seed, name)), alpha=scale)
    return base


def write_random_llama(out_dir: str | Path, shape: str = "mini", *, dtype: torch.dtype = torch.bfloat16,
                       seed: int = 0, child_seed: int | None = None, delta: float = 0.02,
                       shard_bytes: int = 2 << 30) -> Path:
    """Write a random Llama of `shape` (a key of SHAPES) as an HF checkpoint with the tiny
    test tokenizer (its config's vocabulary may be larger: the extra rows are never sampled
    from, which the benchmarks do not need). Shards of at most `shard_bytes`, with an index."""
    from ptm_core.testing.tiny import build_tokenizer, tiny_llama_config

    if shape not in SHAPES:
        raise ValueError(f"shape {shape!r}: one of {', '.join(SHAPES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    dims = SHAPES[shape]
    config = tiny_llama_config(**dims, max_position_embeddings=2048, rms_norm_eps=1e-5,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id,
                               torch_dtype=str(dtype).removeprefix("torch."))
    config.save_pretrained(str(out))
    files: list[list[str]] = []  # tensor names per shard, written as each fills
    shard: dict[str, torch.Tensor] = {}
    for name, shp in tensor_shapes(dims).items():
        t = _tensor(name, shp, seed, child_seed, delta).to(dtype).contiguous()
        if shard and _nbytes(shard) + t.numel() * t.element_size() > shard_bytes:
            files.append(_save(out, shard, len(files)))
            shard = {}
        shard[name] = t
    files.append(_save(out, shard, len(files)))
    weight_map = {}
    for k, names in enumerate(files):
        final = f"model-{k + 1:05d}-of-{len(files):05d}.safetensors"
        (out / f"shard-{k}.tmp").rename(out / final)
        weight_map.update({n: final for n in names})
    total = sum((out / f).stat().st_size for f in set(weight_map.values()))
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return out


def _nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _save(out: Path, tensors: dict[str, torch.Tensor], k: int) -> list[str]:
    """Write shard `k` under a temporary name (renamed once the count is known)."""
    from safetensors.torch import save_file

    save_file(tensors, str(out / f"shard-{k}.tmp"), metadata={"format": "pt"})
    return list(tensors)
