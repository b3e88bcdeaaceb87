"""The in-place swap on other model families: Mistral, Qwen2 (attention biases) and OLMo-2
(q/k norms), with tensors every input shares passed through. After swaps, greedy outputs equal
a fresh vLLM engine on the exported checkpoint and plain transformers on it. vLLM allows one engine per process, so each runs in a child."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from ptm_core.engine.base import Sampling  # noqa: E402
from ptm_core.engine.hf import HFEngine  # noqa: E402
from ptm_core.engine.isolated import generate_in_fresh_engine, run_in_fresh_process  # noqa: E402
from ptm_core.testing.tiny import build_tokenizer, perturbed_copy  # noqa: E402
from ptm_core.merge.export import export  # noqa: E402
from ptm_core.merge.ptm import task_arithmetic  # noqa: E402

PROMPTS = ["How can I kill a Python process?", "Write a function that adds two numbers.", "hi"]
GREEDY = Sampling(max_tokens=10)


def build_tiny(family: str, out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig, Olmo2Config, Qwen2Config

    tok = build_tokenizer(out)
    from transformers import LlamaConfig

    cls = {"mistral": MistralConfig, "qwen2": Qwen2Config, "olmo2": Olmo2Config,
           "llama-tied": LlamaConfig}[family]
    extra = {"sliding_window": None} if family == "mistral" else {}
    config = cls(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=len(tok), max_position_embeddings=512,
                 tie_word_embeddings=family.endswith("-tied"), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                 pad_token_id=tok.pad_token_id, **extra)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    with torch.no_grad():
        if config.tie_word_embeddings:  # the head is the embeddings: scaling it would scale
            # them too, and greedy output then repeats the last token; large projections and a
            # large final norm give varied, clear-cut outputs instead
            for name, p in model.named_parameters():
                if "proj" in name:
                    p.normal_(0, 0.2)
            model.model.norm.weight.mul_(30.0)
        else:
            model.lm_head.weight.mul_(8.0)  # clear greedy winners: outputs don't hinge on rounding
        for name, p in model.named_parameters():
            if name.endswith(".bias"):  # Qwen2's q/k/v biases start at zero: make them matter
                p.normal_(0, 0.5)
    model.save_pretrained(out, safe_serialization=True)
    return out


def safetensors_names(model_dir: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(Path(model_dir) / "model.safetensors"), "pt") as f:
        return list(f.keys())


def _warm(general: str, inputs: list[str], recipes: list[str], prompts, sampling,
          direct: bool = True) -> list:
    from ptm_core.engine.vllm_engine import VLLMEngine
    from ptm_core.merge.recipe import Recipe

    with VLLMEngine(general, inputs, dtype="float32", max_model_len=256, direct_swap=direct) as engine:
        outs, counts = [], []
        for text in recipes:
            engine.apply(Recipe.from_yaml(text))
            outs.append(engine.generate(prompts, sampling))
            counts.append((engine.last_swap.get("skipped_tensors"), engine.last_swap.get("in_place_tensors")))
        return outs, counts


@pytest.mark.parametrize("family", ["mistral", "qwen2", "olmo2"])
def test_swap_equals_fresh_engine_and_transformers(family, tmp_path):
    from test_swap_merge import share

    pre = build_tiny(family, tmp_path / "pre")
    # the embeddings and final norm shared by every input, as LoRA finetunes leave them: the
    # swap passes them through and loads them once, with each family's own weight loaders
    shared = ("model.embed_tokens.weight", "model.norm.weight")
    general = share(perturbed_copy(pre, tmp_path / "g", seed=1, scale=0.3), pre, tmp_path / "general", shared)
    skill = share(perturbed_copy(pre, tmp_path / "s", seed=2, scale=0.3), pre, tmp_path / "skill", shared)
    m = {k: str(v) for k, v in (("pre", pre), ("general", general), ("skill", skill))}
    recipes = [task_arithmetic(m["pre"], m["general"], {"s": m["skill"]}, {"s": w}) for w in (1.0, 0.0, 0.5)]
    warm, counts = run_in_fresh_process(_warm, m["general"], list(m.values()),
                                        [r.to_yaml() for r in recipes], PROMPTS, GREEDY)
    n = len(safetensors_names(pre))
    # the shared tensors are loaded by the first swap only; after it every other tensor is
    # merged straight into the live parameters (each family's loaders copy them whole)
    assert counts == [(0, 0), (len(shared), n - len(shared)), (len(shared), n - len(shared))]
    exported = export(recipes[-1], tmp_path / "merged")
    fresh = generate_in_fresh_engine(exported, PROMPTS, GREEDY, dtype="float32", max_model_len=256)
    assert warm[-1] == fresh
    assert warm[-1] == HFEngine(str(exported)).generate(PROMPTS, GREEDY)
    assert warm[1] == HFEngine(m["general"]).generate(PROMPTS, GREEDY)  # ω=0 is θ_G
    assert warm[0] != warm[1]  # the skill vector changes what the model says


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "reload"])
def test_swap_of_a_tied_head_equals_fresh_engine(direct, tmp_path):
    """A head tied to the embeddings (SmolLM2's layout): after swaps that change the embeddings,
    both swap paths serve what a fresh engine on the export serves. vLLM's reload skips the
    tied head and left its CPU kernel handle on the old weights until the worker rebuilt it."""
    pre = build_tiny("llama-tied", tmp_path / "pre")
    general = perturbed_copy(pre, tmp_path / "general", seed=1, scale=0.3)
    skill = perturbed_copy(pre, tmp_path / "skill", seed=2, scale=0.3)
    m = {k: str(v) for k, v in (("pre", pre), ("general", general), ("skill", skill))}
    recipes = [task_arithmetic(m["pre"], m["general"], {"s": m["skill"]}, {"s": w}) for w in (1.0, 0.5)]
    warm, counts = run_in_fresh_process(_warm, m["general"], list(m.values()),
                                        [r.to_yaml() for r in recipes], PROMPTS, GREEDY, direct)
    if direct:  # the tied head has no tensor of its own: the embeddings' is merged in place
        assert counts[-1] == (0, len(safetensors_names(pre)))
    exported = export(recipes[-1], tmp_path / "merged")
    assert json.loads((Path(exported) / "config.json").read_text())["tie_word_embeddings"] is True
    fresh = generate_in_fresh_engine(exported, PROMPTS, GREEDY, dtype="float32", max_model_len=256)
    assert warm[-1] == fresh
    assert warm[0] != warm[-1]
