"""Bad input: non-zero exit, one message naming model/tensor/problem, and no OUT_DIR."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptm_core.__main__ import main
from ptm_core.errors import RecipeError
from ptm_core.merge.ptm import task_arithmetic
from ptm_core.merge.recipe import Recipe
from ptm_core.testing.tiny import family
from signals import default_sigint


@pytest.fixture
def models(tmp_path):
    return family(tmp_path / "models", names=("pre", "general", "skill"))


def write_recipe(path: Path, models: dict, weight=0.5, method="task_arithmetic", extra="") -> Path:
    path.write_text(f"merge_method: {method}\nbase_model: {models['pre']}\nmodels:\n"
                    f"  - model: {models['general']}\n    parameters: {{weight: 1.0}}\n"
                    f"  - model: {models['skill']}\n    parameters: {{weight: {weight}}}\n{extra}")
    return path


def run_fail(capsys, cfg: Path, out: Path, *flags) -> str:
    capsys.readouterr()  # drop output of the test's own set-up
    code = main(["merge", str(cfg), str(out), "--quiet", *flags])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert not out.exists(), "a failed merge must leave no OUT_DIR"
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name], "temp dir left behind"
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def rewrite(model_dir: Path, change) -> None:
    f = model_dir / "model.safetensors"
    state = load_file(f)
    change(state)
    save_file(state, f, metadata={"format": "pt"})


def test_shapes_differ(tmp_path, models, capsys):
    rewrite(models["skill"], lambda s: s.__setitem__("model.layers.1.mlp.up_proj.weight", torch.zeros(64, 64)))
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models), tmp_path / "out")
    assert "skill" in err and "model.layers.1.mlp.up_proj.weight" in err and "shape" in err


def test_architecture_differs(tmp_path, models, capsys):
    other = family(tmp_path / "other", names=("deep",), num_hidden_layers=4)["deep"]
    shutil.rmtree(models["skill"])
    shutil.copytree(other, models["skill"])
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models), tmp_path / "out")
    assert "model.layers.3" in err and "skill" in err


def test_tensor_missing(tmp_path, models, capsys):
    rewrite(models["general"], lambda s: s.pop("model.norm.weight"))
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models), tmp_path / "out")
    assert "model.norm.weight" in err and "general" in err


def test_unsupported_dtype(tmp_path, models, capsys):
    rewrite(models["skill"], lambda s: s.__setitem__("model.norm.weight", torch.ones(64, dtype=torch.int32)))
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models), tmp_path / "out")
    assert "skill" in err and "model.norm.weight" in err and "dtype" in err


def test_truncated_safetensors(tmp_path, models, capsys):
    f = models["general"] / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 1000])
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models), tmp_path / "out")
    assert "general" in err and "truncated" in err


def test_corrupt_header(tmp_path, models, capsys):
    f = models["skill"] / "model.safetensors"
    data = bytearray(f.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8:8 + n] = b"{" + b"\xff" * (n - 1)
    f.write_bytes(bytes(data))
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models), tmp_path / "out")
    assert "skill" in err and "JSON" in err


def test_pickle_checkpoint_refused(tmp_path, models, capsys):
    f = models["skill"] / "model.safetensors"
    torch.save(load_file(f), models["skill"] / "pytorch_model.bin")
    f.unlink()
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models), tmp_path / "out")
    assert "skill" in err and "pickle" in err


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_tensor(tmp_path, models, capsys, bad):
    def poison(s):
        s["model.layers.0.self_attn.v_proj.weight"][3, 5] = bad
    rewrite(models["skill"], poison)
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models), tmp_path / "out")
    assert "skill" in err and "model.layers.0.self_attn.v_proj.weight" in err and "NaN or Inf" in err


@pytest.mark.parametrize("weight", [".nan", ".inf", "-.inf"])
def test_non_finite_weight(tmp_path, models, capsys, weight):
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models, weight=weight), tmp_path / "out")
    assert "weight" in err and "finite" in err


def test_non_finite_omega_in_api(models):
    with pytest.raises(RecipeError, match="finite"):
        task_arithmetic("pre", "g", {"sci": "s"}, {"sci": math.nan})
    with pytest.raises(RecipeError, match="no ω"):
        task_arithmetic("pre", "g", {"sci": "s"}, {})


def test_unknown_method(tmp_path, models, capsys):
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models, method="frankenmerge"), tmp_path / "out")
    assert "unknown merge method 'frankenmerge'" in err and "task_arithmetic" in err


def test_unknown_parameter(tmp_path, models, capsys):
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models, extra="parameters: {densty: 0.5}\n"),
                   tmp_path / "out")
    assert "densty" in err
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models, extra="colour: blue\n"), tmp_path / "out")
    assert "colour" in err


def test_parameter_for_wrong_method(tmp_path, models, capsys):
    # density means nothing to task_arithmetic's spec? It does (MergeKit accepts it); epsilon does not.
    err = run_fail(capsys, write_recipe(tmp_path / "r.yml", models, extra="parameters: {epsilon: 0.1}\n"),
                   tmp_path / "out")
    assert "epsilon" in err


def test_invalid_yaml(tmp_path, capsys):
    cfg = tmp_path / "r.yml"
    cfg.write_text("merge_method: [task_arithmetic\nmodels: {")
    err = run_fail(capsys, cfg, tmp_path / "out")
    assert "not valid YAML" in err


def test_missing_model_names_the_id(tmp_path, models, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tmp_path / "r.yml"
    cfg.write_text(f"merge_method: linear\nmodels:\n  - model: someorg/not-here\n    parameters: {{weight: 1}}\n")
    err = run_fail(capsys, cfg, tmp_path / "out")
    assert "someorg/not-here" in err and "hub" in err


def test_existing_out_dir_needs_force(tmp_path, models, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    cfg = write_recipe(tmp_path / "r.yml", models)
    assert main(["merge", str(cfg), str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"
    assert main(["merge", str(cfg), str(out), "--quiet", "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()


def test_out_dir_inside_input_refused(tmp_path, models, capsys):
    out = models["general"] / "merged"
    code = main(["merge", str(write_recipe(tmp_path / "r.yml", models)), str(out), "--quiet"])
    assert code == 2 and "overlaps input model" in capsys.readouterr().err
    assert not out.exists()


def test_inputs_are_never_modified(tmp_path, models):
    before = {p: p.read_bytes() for m in models.values() for p in sorted(m.iterdir())}
    assert main(["merge", str(write_recipe(tmp_path / "r.yml", models)), str(tmp_path / "out"), "--quiet"]) == 0
    assert before == {p: p.read_bytes() for m in models.values() for p in sorted(m.iterdir())}


def test_sharded_output_with_index(tmp_path, models):
    out = tmp_path / "out"
    assert main(["merge", str(write_recipe(tmp_path / "r.yml", models)), str(out), "--quiet",
                 "--max-shard-size", "100K"]) == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((out / s).exists() for s in shards)
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(out)  # loads as a normal HF checkpoint


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_merge_leaves_nothing(tmp_path, sig):
    # Big enough that the merge takes a while; the signal lands while shards are being written.
    models = family(tmp_path / "models", names=("pre", "general", "skill"), hidden_size=256,
                    intermediate_size=1024, num_hidden_layers=24, vocab_size=2048)
    cfg = write_recipe(tmp_path / "r.yml", models)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ptm_core", "merge", str(cfg), str(out), "--quiet"],
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and not any(
            p.name.startswith(".out.partial-") and any(p.iterdir()) for p in tmp_path.iterdir()):
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_killed_merge_leaves_no_out_dir_and_its_debris_is_cleared(tmp_path):
    """SIGKILL runs no cleanup: OUT_DIR must still not exist (the output only appears by
    rename), and the next merge to the same place removes the dead writer's temp dir."""
    models = family(tmp_path / "models", names=("pre", "general", "skill"), hidden_size=256,
                    intermediate_size=1024, num_hidden_layers=24, vocab_size=2048)
    cfg = write_recipe(tmp_path / "r.yml", models)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ptm_core", "merge", str(cfg), str(out), "--quiet"])
    deadline = time.time() + 120
    partial = lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]
    while time.time() < deadline and not any(any(p.iterdir()) for p in partial()):
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    assert not out.exists()
    assert partial(), "the killed writer's temp dir is expected to remain until the next run"
    assert main(["merge", str(cfg), str(out), "--quiet"]) == 0
    assert (out / "model.safetensors").exists() and not partial()
