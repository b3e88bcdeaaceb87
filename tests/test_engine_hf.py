"""The transformers engine: chat formatting, sampling semantics, in-memory merges."""


import pytest

from ptm_core.engine.base import Engine, Sampling
from ptm_core.engine.chat import chat_token_ids, load_tokenizer, truncate_at_stop
from ptm_core.engine.hf import HFEngine
from ptm_core.testing.tiny import build_tiny_llama, perturbed_copy
from ptm_core.errors import MergeError
from ptm_core.merge.export import export
from ptm_core.merge.ptm import task_arithmetic, wise_ft

PROMPTS = ["How can I kill a Python process?", "Write a function that adds two numbers.",
           "hi", "Extract the entities from the abstract."]
GREEDY = Sampling(max_tokens=12)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_models")
    pre = build_tiny_llama(root / "pre", seed=0)
    return {"pre": str(pre),
            "general": str(perturbed_copy(pre, root / "general", seed=1, scale=0.3)),
            "skill": str(perturbed_copy(pre, root / "skill", seed=2, scale=0.3)),
            "other_arch": str(build_tiny_llama(root / "other", hidden_size=64, num_heads=2)),
            "root": root}


@pytest.fixture(scope="module")
def engine(models):
    return HFEngine(models["general"])


def ptm(models, omega):
    return task_arithmetic(models["pre"], models["general"], {"skill": models["skill"]},
                           {"skill": omega})


def test_is_an_engine(engine):
    assert isinstance(engine, Engine) and engine.kind == "hf"


def test_chat_template_is_applied(models):
    tok = load_tokenizer(models["general"])
    text = tok.decode(chat_token_ids(tok, "hello there"))
    assert text == "<s><|user|>\nhello there</s>\n<|assistant|>\n"


def test_prompt_without_chat_template_is_plain(models):
    tok = load_tokenizer(models["general"])
    tok.chat_template = None
    assert tok.decode(chat_token_ids(tok, "hello there")) == "hello there"


def test_truncate_at_stop():
    assert truncate_at_stop("abc\n\nUser: x", ["User:", "\n\n"]) == "abc"
    assert truncate_at_stop("abc", ["zz"]) == "abc"
    assert truncate_at_stop("abc", []) == "abc"


def test_greedy_batches_equal_single_prompts(engine):
    batched = engine.generate(PROMPTS, GREEDY)
    single = [engine.generate([p], GREEDY)[0] for p in PROMPTS]
    assert batched == single
    assert all(len(o) == 1 and o[0] for o in batched)


def test_greedy_n_repeats_and_sampling_is_seeded(engine):
    out = engine.generate(PROMPTS[:1], Sampling(max_tokens=12, n=3))
    assert len(out[0]) == 3 and len(set(out[0])) == 1
    hot = Sampling(max_tokens=12, n=4, temperature=1.0, seed=7)
    first, again = engine.generate(PROMPTS[:2], hot), engine.generate(PROMPTS[:2], hot)
    assert first == again
    assert [len(o) for o in first] == [4, 4] and len(set(first[0])) > 1
    other = engine.generate(PROMPTS[:2], Sampling(max_tokens=12, n=4, temperature=1.0, seed=8))
    assert other != first


def test_apply_rebuilds_the_recipe_in_memory(models, engine, tmp_path):
    plain = engine.generate(PROMPTS, GREEDY)
    swap_s = engine.apply(ptm(models, 0.0))
    assert isinstance(swap_s, float) and 0 < swap_s < 60  # the seconds the swap took
    assert engine.generate(PROMPTS, GREEDY) == plain  # ω = 0 is θ_G itself

    merged = ptm(models, 1.0)
    engine.apply(merged)
    swapped = engine.generate(PROMPTS, GREEDY)
    assert swapped != plain
    fresh = HFEngine(export(merged, tmp_path / "merged"))
    assert fresh.generate(PROMPTS, GREEDY) == swapped
    assert engine.recipe_key == merged.key()
    engine.apply(ptm(models, 0.0))


def test_wrong_architecture_is_refused(models, engine):
    with pytest.raises(MergeError):
        engine.apply(wise_ft(models["other_arch"], models["other_arch"], 0.5))
