"""Tokenizer options as MergeKit 0.1.5 has them: `tokenizer_source` (base, union, a model),
`tokenizer:` (source, tokens, pad_to_multiple_of) and `chat_template:`, on tiny models whose
vocabularies differ (made in the test). The export must give mergekit-yaml's tensors, config
vocab_size and tokenizer; the in-engine swap must refuse what it cannot serve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ptm_core.engine.resident import ResidentInputs
from ptm_core.errors import MergeError, RecipeError
from ptm_core.merge.export import export
from ptm_core.merge.recipe import Recipe
from ptm_core.testing.tiny import vocab_family

MERGEKIT = Path(sys.executable).with_name("mergekit-yaml")
# b and c add tokens the base lacks; c's are a prefix of b's, so the union's order does not
# depend on the order MergeKit visits the models in (a set's)
ADDED = {"pre": [], "a": [], "b": ["<|x|>", "<|y|>", "<|z|>"], "c": ["<|x|>", "<|y|>"]}
TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
_RUN_ALL = """
import json, sys
from mergekit.scripts.run_yaml import main
for cfg, out in json.loads(sys.argv[1]):
    main.main([cfg, out, "--random-seed", "0"], standalone_mode=False)
"""


def _recipes(m: dict[str, str]) -> dict[str, Recipe]:
    def r(method, models, base="pre", **extra):
        return Recipe.parse({"merge_method": method, "dtype": "float32",
                             **({"base_model": m[base]} if base else {}),
                             "models": [{"model": m[n], **({"parameters": p} if p else {})}
                                        for n, p in models.items()], **extra})
    w = lambda x: {"weight": x}  # noqa: E731
    return {
        "union": r("task_arithmetic", {"a": w(0.5), "b": w(0.3), "c": w(0.4)},
                   tokenizer_source="union"),
        "base": r("linear", {"pre": w(0.2), "b": w(0.5), "c": w(0.3)}, tokenizer_source="base"),
        "model": r("slerp", {"pre": None, "b": None}, tokenizer_source=m["b"],
                   parameters={"t": 0.4}),
        "tokenizer_config": r("task_arithmetic", {"b": w(0.6), "c": w(0.5)}, tokenizer={
            "source": "union", "pad_to_multiple_of": 8, "tokens": {
                "<|new|>": {"source": {"kind": "zero"}},
                "<|x|>": {"source": m["c"], "force": True},
                "<|w|>": {"source": {"kind": "model_token", "model": m["b"], "token": "<s>"}}}}),
        "chat_template": r("slerp", {"pre": None, "a": None}, chat_template=TEMPLATE,
                           parameters={"t": 0.5}),
        "chat_auto_base": r("task_arithmetic", {"a": w(1.0), "c": w(0.5)}, tokenizer_source="base",
                            chat_template="auto"),
        # MergeKit's named templates (its package data): with the template model's tokenizer
        # re-serialized, and with a built vocabulary
        "chat_named": r("slerp", {"pre": None, "a": None}, chat_template="chatml",
                        parameters={"t": 0.5}),
        "chat_named_union": r("task_arithmetic", {"a": w(0.5), "b": w(0.5)},
                              tokenizer_source="union", chat_template="llama3"),
        # the tokenizer of a model that is not merged: b's (<|z|> is in no input: zero rows),
        # and the same tokenizer in a directory without weights
        "outside_model": r("task_arithmetic", {"a": w(0.5), "c": w(0.5)}, tokenizer_source=m["b"]),
        "tokenizer_only_dir": r("linear", {"pre": w(0.4), "c": w(0.6)},
                                tokenizer={"source": m["tok_b"]}),
        # the embeddings come from the first slice (pre, b), the head from the last (pre, c):
        # tokens are filled from those models only
        "slices_union": Recipe.parse({
            "merge_method": "linear", "base_model": m["pre"], "dtype": "float32",
            "tokenizer_source": "union", "slices": [
                {"sources": [{"model": m["pre"], "layer_range": [0, 2], "parameters": w(0.5)},
                             {"model": m["b"], "layer_range": [0, 2], "parameters": w(0.5)}]},
                {"sources": [{"model": m["pre"], "layer_range": [2, 3], "parameters": w(0.4)},
                             {"model": m["c"], "layer_range": [2, 3], "parameters": w(0.6)}]}]}),
        "tied_union": r("task_arithmetic", {"ta": w(0.5), "tb": w(0.5)}, base="tpre",
                        tokenizer_source="union"),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    m = {k: str(v.resolve()) for k, v in vocab_family(root / "plain", ADDED).items()}
    tied = vocab_family(root / "tied", {"tpre": [], "ta": ["<|x|>"], "tb": ["<|x|>", "<|q|>"]},
                        seed=1, tie_word_embeddings=True)
    m.update({k: str(v.resolve()) for k, v in tied.items()})
    only = root / "tok_b"  # b's tokenizer files, no config or weights
    only.mkdir()
    for f in Path(m["b"]).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, only / f.name)
    m["tok_b"] = str(only.resolve())
    yield root, m
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def runs(models):
    if not MERGEKIT.exists():
        pytest.skip("mergekit is not installed in this venv")
    root, m = models
    recipes = _recipes(m)
    jobs = []
    for name, recipe in recipes.items():
        cfg = root / f"{name}.yml"
        cfg.write_text(recipe.to_yaml())
        jobs.append((str(cfg), str(root / f"mk_{name}")))
    proc = subprocess.run([sys.executable, "-c", _RUN_ALL, json.dumps(jobs)], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = {n: export(r, root / f"ours_{n}") for n, r in recipes.items()}
    return {n: (ours[n], root / f"mk_{n}") for n in recipes}


def _tokenizer(d: Path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(d))


@pytest.mark.parametrize("name", list(_recipes({k: k for k in (*ADDED, "tpre", "ta", "tb", "tok_b")})))
def test_same_vocabulary_tensors_and_tokenizer_as_mergekit(runs, name):
    ours, mk = runs[name]
    a, b = load_file(ours / "model.safetensors"), load_file(mk / "model.safetensors")
    assert set(a) == set(b)
    for k in a:
        assert a[k].shape == b[k].shape, k
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"{name}: vocabulary {tuple(a['model.embed_tokens.weight'].shape)}, max abs difference {worst:.3g}")
    assert worst <= 1e-5, f"{name}: max abs difference {worst}"
    cfg = [json.loads((d / "config.json").read_text()) for d in (ours, mk)]
    assert cfg[0]["vocab_size"] == cfg[1]["vocab_size"] == a["model.embed_tokens.weight"].shape[0]
    ta, tb = _tokenizer(ours), _tokenizer(mk)
    assert ta.get_vocab() == tb.get_vocab()
    assert ta.chat_template == tb.chat_template
    assert json.loads((ours / "tokenizer.json").read_text()) == \
        json.loads((mk / "tokenizer.json").read_text())


def test_the_options_change_what_they_should(runs, models):
    _, m = models
    union = _tokenizer(runs["union"][0]).get_vocab()
    assert {"<|x|>", "<|y|>", "<|z|>"} <= set(union)
    assert "<|x|>" not in _tokenizer(runs["base"][0]).get_vocab()
    cfg = json.loads((runs["tokenizer_config"][0] / "config.json").read_text())
    assert cfg["vocab_size"] % 8 == 0
    embed = load_file(runs["tokenizer_config"][0] / "model.safetensors")["model.embed_tokens.weight"]
    new = _tokenizer(runs["tokenizer_config"][0]).get_vocab()["<|new|>"]
    assert torch.count_nonzero(embed[new]) == 0  # a zero embedding in every input: zero merged
    assert _tokenizer(runs["chat_template"][0]).chat_template == TEMPLATE
    for name, template in (("chat_named", "chatml"), ("chat_named_union", "llama3")):
        # the text of the file mergekit ships, found here independently of chat_templates.py
        shipped = resources.files("mergekit").joinpath("_data", "chat_templates",
                                                       f"{template}.jinja").read_text()
        assert _tokenizer(runs[name][0]).chat_template == shipped, name
    assert "<|z|>" in _tokenizer(runs["outside_model"][0]).get_vocab()


def test_a_tokenizer_model_outside_the_merge_is_in_the_model_card(runs, models):
    _, m = models
    from ptm_core.merge.checkpoint import Checkpoint, model_fingerprint

    card = (runs["outside_model"][0] / "README.md").read_text()
    with Checkpoint.open(m["b"]) as b:
        assert f"| `{m['b']}` | tokenizer | `{b.fingerprint()}` |" in card
        assert model_fingerprint(m["b"]) == b.fingerprint()
    card = (runs["tokenizer_only_dir"][0] / "README.md").read_text()
    assert f"| `{m['tok_b']}` | tokenizer | `{model_fingerprint(m['tok_b'])}` |" in card


def test_the_named_templates_are_those_the_installed_mergekit_ships():
    pytest.importorskip("mergekit")
    from ptm_core.merge import chat_templates

    folder = resources.files("mergekit").joinpath("_data", "chat_templates")
    shipped = sorted(p.name.removesuffix(".jinja") for p in folder.iterdir()
                     if p.name.endswith(".jinja"))
    assert list(chat_templates.names()) == shipped
    assert {"chatml", "llama3", "alpaca", "mistral", "exaone"} <= set(shipped)
    for name in shipped:
        recipe = Recipe.parse({"merge_method": "linear", "chat_template": name,
                               "models": [{"model": "x", "parameters": {"weight": 1.0}}]})
        assert recipe.chat_template == name  # the recipe keeps the name: mergekit-yaml reads it
        assert "{" in chat_templates.text(name)
    with pytest.raises(RecipeError, match=r"one of MergeKit's template names \(alpaca, chatml, "
                                          r"exaone, llama3, mistral\)"):
        Recipe.parse({"merge_method": "linear", "chat_template": "chat-ml",
                      "models": [{"model": "x", "parameters": {"weight": 1.0}}]})


def test_swap_serves_an_identity_vocabulary_and_refuses_the_rest(models, tmp_path):
    _, m = models
    same = Recipe.parse({"merge_method": "task_arithmetic", "base_model": m["pre"],
                         "tokenizer_source": "base",
                         "models": [{"model": m["a"], "parameters": {"weight": 0.5}}]})
    exported = load_file(export(same, tmp_path / "out") / "model.safetensors")
    swapped = dict(ResidentInputs().merged(same, num_layers=3))
    assert set(swapped) == set(exported)
    for k, v in swapped.items():
        assert torch.equal(v, exported[k]), k
    rec = _recipes(m)
    with pytest.raises(MergeError, match="tokenizer_source 'union'.*export the merge"):
        list(ResidentInputs().merged(rec["union"], num_layers=3))
    with pytest.raises(MergeError, match="tokenizer 'union'"):
        list(ResidentInputs().merged(rec["tokenizer_config"], num_layers=3))
    with pytest.raises(MergeError, match="chat_template"):
        list(ResidentInputs().merged(rec["chat_template"], num_layers=3))


BAD = [
    ({"tokenizer_source": "base", "tokenizer": {"source": "base"}}, "not both"),
    ({"chat_template": "chatmlx"}, "'chatmlx' is neither 'auto'"),  # the names: below
    ({"chat_template": "{{ messages }}"}, "Jinja template's text"),  # shorter than 20
    ({"chat_template": "a template without any braces at all\nsecond line"}, "neither 'auto'"),
    ({"tokenizer": {"source": "union", "pad_to_multiple_of": 0}}, "at least 1"),
    ({"tokenizer": {"tokens": {"<t>": {"source": {"kind": "model_token", "model": "x"}}}}},
     "exactly one of token_id or token"),
    ({"tokenizer": {"tokens": {"<t>": {"source": {"kind": "zero", "token_id": 3}}}}}, "takes no"),
    ({"tokenizer": {"colour": "red"}}, "colour"),
    ({"tokenizer_source": " "}, "empty"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_tokenizer_options_are_refused(extra, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_yaml(json.dumps({"merge_method": "linear", "models": [
            {"model": "x", "parameters": {"weight": 1.0}}], **extra}), source="r.yml")
