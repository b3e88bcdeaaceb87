"""GGUF -> plain HF directory (ptm_core.smollm2.gguf_model) on a tiny Llama written as GGUF here."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ptm_core.errors import CheckpointError, PTMError
from ptm_core.merge.checkpoint import Checkpoint
from ptm_core.smollm2.gguf_model import gguf_to_hf, load_gguf
from smollm2_tiny import CHAT_TEMPLATE, tiny_llama, tiny_tokenizer, write_gguf

TEXT = "the quick brown fox <|im_end|> answer with yes or no 42 ünïcode"
CHAT = [{"role": "user", "content": "what is the answer?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer))
    path = write_gguf(model, tokenizer, tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return model, tokenizer, path


def test_loaded_weights_equal_the_written_model(tiny):
    """attn_q/attn_k are stored permuted (as llama.cpp writes them); the loader undoes it."""
    model, _, path = tiny
    loaded, _ = load_gguf(path)
    want, got = model.state_dict(), loaded.state_dict()
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == torch.float32, name
        assert torch.equal(got[name], want[name]), name
    assert loaded.config.tie_word_embeddings
    ids = torch.tensor([[5, 17, 42, 99, 250]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_tokenizer_and_chat_template_come_along(tiny):
    _, tokenizer, path = tiny
    _, loaded = load_gguf(path)
    assert loaded(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
    assert loaded.chat_template == CHAT_TEMPLATE
    assert loaded.eos_token == "<|im_end|>"
    assert (loaded.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
            == tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False))


def test_gguf_to_hf_writes_a_plain_checkpoint(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer, path = tiny
    out = gguf_to_hf(path, tmp_path / "pre")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    with Checkpoint.open(str(out)) as ck:
        # tied embeddings: the checkpoint stores the embedding once, as transformers saves it
        want = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
        assert sorted(ck.tensor_names()) == sorted(want)
        for name, tensor in want.items():
            assert ck.dtype(name) == torch.float32
            assert torch.equal(ck.get(name), tensor), name
    reloaded = AutoModelForCausalLM.from_pretrained(str(out))
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
    assert (tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
            == tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a staging dir was left"


@pytest.mark.parametrize("content", [b"", b"not a GGUF file, just text\n", "truncated"])
def test_a_file_that_is_not_gguf_is_refused_naming_it(tiny, tmp_path, content):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(tiny[2].read_bytes()[:3000] if content == "truncated" else content)
    with pytest.raises(CheckpointError) as e:
        gguf_to_hf(bad, tmp_path / "out")
    assert isinstance(e.value, PTMError)
    assert str(bad) in str(e.value) and "GGUF" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_a_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match="no such GGUF file") as e:
        load_gguf(tmp_path / "absent.gguf")
    assert str(tmp_path / "absent.gguf") in str(e.value)


def test_the_world_materializes_pre_from_the_gguf_reproducibly(tiny, tmp_path):
    """θ_pre through World: dequantized into models/pre, its fingerprint recorded, and the same
    fingerprint when it is materialized again from nothing."""
    from ptm_core.smollm2.build import World, fingerprint

    world = World(adapters=tmp_path / "adapters", models=tmp_path / "models",
                  pre_record=tmp_path / "pre.json", gguf=tiny[2], plan=[])
    fp = world.record_pre()
    assert json.loads((tmp_path / "pre.json").read_text()) == {"fingerprint": fp}
    first = (world.model_dir("pre") / "model.safetensors").read_bytes()
    shutil.rmtree(world.model_dir("pre"))
    assert fingerprint(world.materialize("pre", progress=lambda _: None)) == fp
    assert (world.model_dir("pre") / "model.safetensors").read_bytes() == first


def test_tokenizer_load_flags_are_written_as_an_online_load_gives_them(tmp_path):
    """Offline mode makes transformers save local_files_only=True: the materialized directory
    (and so its fingerprint, which shipped results are keyed by) must not depend on it."""
    import json

    from ptm_core.smollm2.gguf_model import _drop_load_flags

    online = {"backend": "tokenizers", "local_files_only": False, "pad_token": "<|im_end|>"}
    text = json.dumps(online, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    offline = tmp_path / "offline.json"
    offline.write_text(text.replace('"local_files_only": false', '"local_files_only": true'))
    same = tmp_path / "online.json"
    same.write_text(text)
    _drop_load_flags(offline)
    _drop_load_flags(same)
    assert offline.read_text() == text and same.read_text() == text
