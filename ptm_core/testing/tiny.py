"""Tiny random Llama checkpoints for tests and benchmarks (built on the spot, no downloads):
with their own tokenizer and chat template (`build_tiny_llama`, for engines), or as a family
of a base and finetune-like children without one (`family`, for merges).

Nothing here is trained: the models only need to be deterministic functions of their weights, so
that engines, swaps and exports can be compared output for output."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_CORPUS = [
    "How can I kill a Python process? Use the kill command with the process id.",
    "Write a function that adds two numbers. def add(a, b): return a + b",
    "I'm sorry, but I can't help with that request.",
    "The mitochondria is the powerhouse of the cell. Extract the entities from the abstract.",
    "Sure! Here is a short answer to your question about cooking pasta and rice.",
]


def tiny_llama_config(**overrides):
    """The one tiny Llama config every test model starts from (untied head)."""
    from transformers import LlamaConfig

    cfg = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=2,
               num_hidden_layers=3, vocab_size=96, max_position_embeddings=64,
               tie_word_embeddings=False)
    cfg.update(overrides)
    return LlamaConfig(**cfg)


def build_tokenizer(out_dir: str | Path, vocab_size: int = 320):
    """A byte-level BPE tokenizer (any text encodes) with <s>, </s>, <pad> and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", chat_template=CHAT_TEMPLATE)
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_llama(out_dir: str | Path, seed: int = 0, hidden_size: int = 128,
                     num_layers: int = 2, num_heads: int = 2, logit_scale: float = 8.0) -> Path:
    """Save a random float32 Llama (head size hidden/heads, which must be one vLLM CPU supports).

    `logit_scale` multiplies the output head so that greedy decoding has clear winners: outputs
    then do not hinge on float rounding differences between attention kernels."""
    from transformers import LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer(out)
    config = tiny_llama_config(hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                               num_hidden_layers=num_layers, num_attention_heads=num_heads,
                               num_key_value_heads=num_heads, vocab_size=len(tokenizer),
                               max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id, torch_dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def perturbed_copy(src: str | Path, out_dir: str | Path, seed: int, scale: float = 0.02) -> Path:
    """A copy of `src` with Gaussian noise added to every tensor: a stand-in for a finetune."""
    import shutil

    src, out = Path(src), Path(out_dir)
    shutil.copytree(src, out, dirs_exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for shard in sorted(out.glob("*.safetensors")):
        tensors = load_file(str(shard))
        noisy = {name: (t + scale * t.std().clamp_min(1e-3)
                        * torch.randn(t.shape, generator=gen)).to(t.dtype).contiguous()
                 for name, t in tensors.items()}
        save_file(noisy, str(shard), metadata={"format": "pt"})
    return out


def save_llama(path: Path, state: dict[str, torch.Tensor], dtype=torch.float32,
               max_shard_size: int | str = "50GB", **cfg) -> Path:
    """Save `state` as an HF Llama checkpoint (safetensors) at `path`; shards with an index
    when it is larger than `max_shard_size`."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_llama_config(**cfg))
    model.load_state_dict(state)
    model.to(dtype).save_pretrained(path, safe_serialization=True, max_shard_size=max_shard_size)
    return path


def family(root: Path, names=("pre", "general", "skill_a", "skill_b"), seed=0,
           dtype=torch.float32, scale=0.02, max_shard_size: int | str = "50GB",
           **cfg) -> dict[str, Path]:
    """A base model and finetune-like children: base + small random deltas per model (each
    saved in shards of at most `max_shard_size`)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    base = LlamaForCausalLM(tiny_llama_config(**cfg)).state_dict()
    base = {k: v.clone() for k, v in base.items()}
    out = {}
    for i, name in enumerate(names):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        state = base if i == 0 else {k: v + scale * torch.randn(v.shape, generator=g)
                                     for k, v in base.items()}
        out[name] = save_llama(root / name, state, dtype=dtype, max_shard_size=max_shard_size,
                               **cfg)
    return out


def vocab_family(root: Path, added: dict[str, list[str]], seed: int = 0, scale: float = 0.02,
                 **cfg) -> dict[str, Path]:
    """Models whose tokenizers differ: each is the tiny BPE tokenizer plus its own `added`
    tokens (the first name is the base), with embed_tokens / lm_head rows to match (the base's
    rows plus noise, random rows for the added tokens). For vocabulary merges."""
    from transformers import LlamaForCausalLM

    root = Path(root)
    names = list(added)
    base_tok = build_tokenizer(root / "_tok")
    torch.manual_seed(seed)
    base = LlamaForCausalLM(tiny_llama_config(vocab_size=len(base_tok), **cfg)).state_dict()
    out = {}
    for i, name in enumerate(names):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        tok = build_tokenizer(root / name)
        tok.add_tokens(added[name])
        tok.save_pretrained(str(root / name))
        n = len(tok)
        state = {}
        for k, v in base.items():
            v = v if i == 0 else v + scale * torch.randn(v.shape, generator=g)
            if k in ("model.embed_tokens.weight", "lm_head.weight") and n > v.shape[0]:
                v = torch.cat([v, 0.1 * torch.randn((n - v.shape[0], v.shape[1]), generator=g)])
            state[k] = v.contiguous()
        if cfg.get("tie_word_embeddings"):
            state.pop("lm_head.weight", None)
            state["lm_head.weight"] = state["model.embed_tokens.weight"]
        model = LlamaForCausalLM(tiny_llama_config(vocab_size=n, **cfg))
        model.load_state_dict(state)
        model.save_pretrained(root / name, safe_serialization=True)
        out[name] = root / name
    return out
