"""The lab model: a Llama that vLLM's CPU backend accepts, small enough to ship."""

from __future__ import annotations

import pytest

from ptm_core.lab.model import VLLM_CPU_HEAD_SIZES, ModelShape, llama_config, load_model, new_model, save_model
from ptm_core.lab.profiles import PROFILES, SHIPPED


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_use_a_vllm_head_size(name):
    profile = PROFILES[name]
    cfg = llama_config(profile.shape, profile.vocab_size, 0, 1)
    assert cfg.head_dim == cfg.hidden_size // cfg.num_attention_heads
    assert cfg.head_dim in VLLM_CPU_HEAD_SIZES
    assert cfg.tie_word_embeddings is False
    assert cfg.vocab_size <= 1024


def test_unsupported_head_size_is_refused():
    with pytest.raises(ValueError, match="head size"):
        llama_config(ModelShape(hidden=120, heads=2), 256, 0, 1)


def test_full_checkpoint_is_at_most_5_mb_and_reloads(tmp_path):
    from ptm_core.lab import tokenizer as T

    profile = PROFILES[SHIPPED]
    tok_dir = tmp_path / "tok"
    T.save(T.train_tokenizer(["a b c def f(x):\n    return x"] * 10, vocab_size=300), tok_dir)
    model = new_model(profile.shape, profile.vocab_size, 0, 1, seed=0)
    save_model(model, tok_dir, tmp_path / "m")
    size = (tmp_path / "m" / "model.safetensors").stat().st_size
    assert size <= 5 * 1024 * 1024
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "m" / name).exists()
    again = load_model(tmp_path / "m")
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert a.dtype == b.dtype and bool((a == b).all()), n
    assert again.config.to_dict()["tie_word_embeddings"] is False
    import json

    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "float32"


def test_same_seed_same_weights():
    a = new_model(ModelShape(64, 1, 1, 128), 128, 0, 1, seed=5).state_dict()
    b = new_model(ModelShape(64, 1, 1, 128), 128, 0, 1, seed=5).state_dict()
    assert all(bool((a[k] == b[k]).all()) for k in a)
