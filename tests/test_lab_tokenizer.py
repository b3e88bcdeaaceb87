"""The lab tokenizer: exact round trips (Python indentation included) and a working chat template."""

from __future__ import annotations

import itertools

import pytest

from ptm_core.lab import tokenizer as T
from ptm_core.lab.world import WorldConfig, build_world
from ptm_core.lab.world.corpus import documents


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    world = build_world(WorldConfig(scale=0.001, val_per_part=2, test_per_part=2))
    texts = list(itertools.islice(documents(0), 300))
    texts += [T.render_prompt(ex.prompt) + ex.answer for xs in world.data["train"].values() for ex in xs]
    out = tmp_path_factory.mktemp("tok")
    T.save(T.train_tokenizer(texts, vocab_size=400), out)
    return out


CODE = "def f(xs):\n    if not xs:\n\treturn  []  \n    return [x * 2 for x in xs]  # twice\n\n"


@pytest.mark.parametrize("text", [CODE, "Zorbia's capital: Velm!\n\n  ok", "ünïcødé ✓ 123 + 45 = 168"])
def test_round_trips_exactly(saved, text):
    tok = T.load(saved)
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text


def test_saved_files_and_special_tokens(saved):
    assert (saved / "tokenizer.json").exists() and (saved / "tokenizer_config.json").exists()
    tok = T.load(saved)
    assert len(tok) == 400
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == T.EOS
    assert tok.convert_ids_to_tokens(tok.pad_token_id) == T.PAD
    assert tok.pad_token_id != tok.eos_token_id
    # Special tokens are single tokens, never split.
    assert tok(T.USER + T.ASSISTANT, add_special_tokens=False).input_ids == [
        tok.convert_tokens_to_ids(T.USER), tok.convert_tokens_to_ids(T.ASSISTANT)]


def test_chat_template_matches_training_format(saved):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(saved))  # what vLLM and the engines load
    assert tok.chat_template
    messages = [{"role": "user", "content": "Reverse the list: fig, plum"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == T.render_prompt("Reverse the list: fig, plum")
    convo = messages + [{"role": "assistant", "content": "plum, fig"}]
    assert tok.apply_chat_template(convo, tokenize=False).startswith(text + "plum, fig" + T.EOS)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert list(ids) == tok(text, add_special_tokens=False).input_ids


def test_digits_are_single_tokens(saved):
    tok = T.load(saved)
    pieces = tok.convert_ids_to_tokens(tok("12345", add_special_tokens=False).input_ids)
    assert pieces == list("12345")
