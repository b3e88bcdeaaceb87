"""The exported checkpoint: dtype rules, copied support files, model card, loadability."""

from __future__ import annotations

import json

import torch
import yaml
from safetensors.torch import load_file

from ptm_core import __version__
from ptm_core.merge.checkpoint import Checkpoint
from ptm_core.merge.export import export
from ptm_core.merge.ptm import task_arithmetic
from ptm_core.merge.recipe import Recipe
from ptm_core.testing.tiny import family


def test_bf16_inputs_give_bf16_output_unless_recipe_says(tmp_path):
    m = {k: str(v) for k, v in family(tmp_path / "m", names=("pre", "general", "s"), dtype=torch.bfloat16).items()}
    r = task_arithmetic(m["pre"], m["general"], {"s": m["s"]}, {"s": 0.5})
    out = export(r, tmp_path / "a")
    assert {t.dtype for t in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    r32 = Recipe.parse({**r.model_dump(exclude_none=True), "out_dtype": "float32"})
    out32 = export(r32, tmp_path / "b")
    merged = load_file(out32 / "model.safetensors")
    assert {t.dtype for t in merged.values()} == {torch.float32}
    # math happened in float32: the bf16 output is the float32 result rounded once
    rounded = load_file(out / "model.safetensors")
    for k in merged:
        assert torch.equal(merged[k].to(torch.bfloat16), rounded[k]), k


def test_card_support_files_and_recipe(tmp_path):
    m = family(tmp_path / "m", names=("pre", "general", "s"))
    (m["general"] / "tokenizer_config.json").write_text('{"chat_template": "general-template"}')
    (m["pre"] / "tokenizer_config.json").write_text('{"chat_template": "pre-template"}')
    r = task_arithmetic(str(m["pre"]), str(m["general"]), {"s": str(m["s"])}, {"s": 0.25})
    out = export(r, tmp_path / "out", scores={"general": 48.5, "science": 33.0})
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == "general-template"
    assert (out / "generation_config.json").exists()
    assert Recipe.from_file(out / "mergekit_config.yml") == r
    card = (out / "README.md").read_text()
    for ref in r.model_refs():
        assert f"`{ref}`" in card and Checkpoint.open(ref).fingerprint() in card
    assert __version__ in card and "| general | 48.50 |" in card and "| science | 33.00 |" in card
    assert yaml.safe_load(card.split("```yaml\n")[1].split("```")[0]) == yaml.safe_load(r.to_yaml())
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 3


def test_fingerprint_tracks_weights(tmp_path):
    m = family(tmp_path / "m", names=("pre", "general"))
    a, b = Checkpoint.open(str(m["pre"])), Checkpoint.open(str(m["general"]))
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == Checkpoint.open(str(m["pre"])).fingerprint()
