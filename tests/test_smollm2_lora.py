"""LoRA merge and example encoding (ptm_core.smollm2.lora)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from ptm_core.errors import PTMError
from ptm_core.smollm2.lora import LoraConfig, encode, lora_pairs, merge_adapter, merged_weight
from smollm2_tiny import tiny_llama, tiny_tokenizer


def _factors(seed: int, out: int, inp: int, rank: int):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g) * 0.05
    a = (torch.randn(rank, inp, generator=g) * 0.02).to(torch.bfloat16)
    b = (torch.randn(out, rank, generator=g) * 0.01).to(torch.bfloat16)
    return w, a, b


def _by_components(w, a, b, scale, order):
    """W + scale·Σ_k b[:, k] a[k, :], one rank component at a time in `order`, in float64."""
    delta = torch.zeros(w.shape, dtype=torch.float64)
    for k in order:
        delta += torch.outer(b[:, k].double(), a[k, :].double())
    return (w.double() + delta * scale).to(w.dtype)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), out=st.integers(1, 48), inp=st.integers(1, 48),
       rank=st.sampled_from([1, 2, 4, 8, 16]), scale=st.sampled_from([0.5, 1.0, 2.0, 4.0]))
def test_merged_weight_is_exact_whatever_the_summation_order(seed, out, inp, rank, scale):
    w, a, b = _factors(seed, out, inp, rank)
    got = merged_weight(w, a, b, scale)
    assert got.dtype == w.dtype and got.shape == w.shape
    # the same bytes when the rank components are summed forwards, backwards or shuffled
    order = torch.randperm(rank, generator=torch.Generator().manual_seed(seed)).tolist()
    for o in (range(rank), reversed(range(rank)), order):
        assert torch.equal(got, _by_components(w, a, b, scale, list(o)))
    # and it is W + scale·B·A (float32 arithmetic agrees to rounding)
    torch.testing.assert_close(got, w + scale * (b.float() @ a.float()), rtol=1e-5, atol=1e-7)


def test_merged_weight_changes_the_weight_and_refuses_misfit_shapes():
    w, a, b = _factors(0, 8, 6, 4)
    assert not torch.equal(merged_weight(w, a, b, 2.0), w)
    with pytest.raises(PTMError, match="do not fit"):
        merged_weight(w, a.T.contiguous(), b, 2.0)


def _peft_key(module: str, part: str) -> str:
    return f"base_model.model.{module}.{part}.weight"


def test_lora_pairs_maps_peft_names_to_the_base_weights():
    a, b = torch.zeros(2, 4), torch.zeros(4, 2)
    module = "model.layers.0.self_attn.q_proj"
    pairs = lora_pairs({_peft_key(module, "lora_A"): a, _peft_key(module, "lora_B"): b})
    assert list(pairs) == [f"{module}.weight"]
    assert pairs[f"{module}.weight"][0] is a and pairs[f"{module}.weight"][1] is b


def test_lora_pairs_refuses_an_a_without_b_and_a_non_lora_key():
    module = "model.layers.0.self_attn.q_proj"
    with pytest.raises(PTMError, match="A without a B") as e:
        lora_pairs({_peft_key(module, "lora_A"): torch.zeros(2, 4)})
    assert f"{module}.weight" in str(e.value)
    with pytest.raises(PTMError, match="A without a B"):
        lora_pairs({_peft_key(module, "lora_B"): torch.zeros(4, 2)})
    with pytest.raises(PTMError, match="not a LoRA A or B") as e:
        lora_pairs({_peft_key(module, "lora_A"): torch.zeros(2, 4),
                    _peft_key(module, "lora_B"): torch.zeros(4, 2),
                    "base_model.model.model.norm.weight": torch.zeros(4)})
    assert "model.norm.weight" in str(e.value)


def test_merge_adapter_equals_peft_merging_the_same_adapter():
    """Names, orientation (B·A) and scale as peft means them: the merged model computes what
    peft's own merge of the same (bfloat16) adapter computes."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model, get_peft_model_state_dict

    model = tiny_llama(300)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    peft = get_peft_model(model, PeftLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:  # peft starts B at zero; random bfloat16 values instead
                p.copy_((torch.randn(p.shape, generator=g) * 0.05).to(torch.bfloat16).float())
    adapter = {k: v.to(torch.bfloat16) for k, v in get_peft_model_state_dict(peft).items()}
    merged = merge_adapter(base_state, adapter, 8 / 4)
    changed = [k for k in base_state if not torch.equal(merged[k], base_state[k])]
    assert len(changed) == 2 * 2  # q_proj and down_proj of both layers
    ids = torch.tensor([[3, 50, 7, 120, 299, 11]])
    with torch.no_grad():
        want = peft(ids).logits
        model = tiny_llama(300)
        model.load_state_dict(merged)
        torch.testing.assert_close(model(ids).logits, want, rtol=1e-4, atol=1e-5)


def test_merge_adapter_refuses_an_adapter_for_a_weight_the_model_lacks():
    a, b = torch.zeros(2, 4, dtype=torch.bfloat16), torch.zeros(4, 2, dtype=torch.bfloat16)
    module = "model.layers.9.self_attn.q_proj"
    with pytest.raises(PTMError, match="layers.9"):
        merge_adapter({"model.norm.weight": torch.zeros(4)},
                      {_peft_key(module, "lora_A"): a, _peft_key(module, "lora_B"): b}, 1.0)


@pytest.mark.parametrize("rank,alpha", [(8, 24), (3, 1), (8, 0), (16, -16), (0, 8)])
def test_lora_config_refuses_a_scale_that_is_not_a_power_of_two(rank, alpha):
    with pytest.raises(PTMError, match="LoRA"):
        LoraConfig(rank=rank, alpha=alpha)


@pytest.mark.parametrize("rank,alpha", [(8, 16), (16, 16), (16, 8), (4, 32)])
def test_lora_config_accepts_powers_of_two(rank, alpha):
    assert LoraConfig(rank=rank, alpha=alpha).alpha == alpha


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_encode_masks_the_prompt_and_keeps_the_response(tokenizer):
    prompt, response = "what is the answer?", "the answer is 42"
    ids, labels = encode(tokenizer, (prompt, response), max_len=256)
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                           add_generation_prompt=True, tokenize=False)
    n_prompt = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    assert len(ids) == len(labels) > n_prompt
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert tokenizer.decode(ids[:n_prompt]) == prefix
    assert tokenizer.decode(ids[n_prompt:]) == response + "<|im_end|>"


def test_encode_cuts_a_long_prompt_from_the_left(tokenizer):
    prompt = "hello world " * 80 + "final question?"
    ids, labels = encode(tokenizer, (prompt, "yes"), max_len=32)
    assert len(ids) == len(labels) == 32
    kept = [t for t, y in zip(ids, labels) if y != -100]
    assert tokenizer.decode(kept) == "yes<|im_end|>"
    # the end of the prompt (the question and the assistant turn) survives
    assert tokenizer.decode(ids[: len(ids) - len(kept)]).endswith("final question?<|im_end|>\n<|im_start|>assistant\n")


def test_encode_cuts_a_long_response_to_half_the_length(tokenizer):
    ids, labels = encode(tokenizer, ("hi", "the lazy dog " * 60), max_len=32)
    assert len(ids) == 32
    assert sum(y != -100 for y in labels) == 16
