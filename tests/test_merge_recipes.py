"""The methods and forms added after the first nine: bad recipes are refused before any I/O,
and the engine's in-memory swap builds exactly the tensors the exporter writes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from ptm_core.engine.resident import ResidentInputs
from ptm_core.errors import MergeError, RecipeError
from ptm_core.merge.export import export
from ptm_core.merge.recipe import Recipe
from ptm_core.testing.tiny import family

_S = lambda m, r: {"model": m, "layer_range": list(r)}  # noqa: E731

BAD = [
    ({"merge_method": "slerp", "models": [{"model": "x"}, {"model": "y"}]}, "needs base_model"),
    ({"merge_method": "slerp", "base_model": "x", "parameters": {"t": 0.5},
      "models": [{"model": "x"}, {"model": "y"}, {"model": "z"}]}, "exactly 1 model"),
    ({"merge_method": "nuslerp", "models": [{"model": "x", "parameters": {"weight": 1}}]}, "exactly 2"),
    ({"merge_method": "multislerp", "models": [{"model": "x", "parameters": {"weight": "a"}}]},
     "must be a number"),
    ({"merge_method": "karcher", "models": [{"model": "x"}], "parameters": {"max_iter": 2.5}},
     "whole number"),
    ({"merge_method": "karcher", "models": [{"model": "x"}], "parameters": {"tol": -1}}, "at least 0"),
    ({"merge_method": "model_stock", "base_model": "x", "models": [{"model": "y"}]}, "at least 2"),
    ({"merge_method": "sce", "base_model": "x", "models": [{"model": "y", "parameters": {"weight": 1}}]},
     "unknown parameter 'weight'"),
    ({"merge_method": "nearswap", "base_model": "x", "models": [{"model": "y"}],
      "parameters": {"t": float("nan")}}, "finite"),
    ({"merge_method": "passthrough", "models": [{"model": "x"}, {"model": "y"}]}, "exactly 1"),
    ({"merge_method": "ram", "models": [{"model": "y"}]}, "needs base_model"),
    ({"merge_method": "ram", "base_model": "x", "models": [{"model": "y"}],
      "parameters": {"epsilon": -0.1}}, "at least 0"),
    ({"merge_method": "ramplus_tl", "base_model": "x", "models": [{"model": "y"}],
      "parameters": {"r": "high"}}, "must be a number"),
    ({"merge_method": "ramplus_tl", "base_model": "x",
      "models": [{"model": "y", "parameters": {"weight": 1}}]}, "unknown parameter 'weight'"),
    ({"merge_method": "passthrough", "slices": [{"sources": [_S("x", (2, 1))]}]}, "layer_range"),
    ({"merge_method": "linear", "slices": [{"sources": [_S("x", (0, 2)), _S("y", (0, 3))]}]},
     "same number of layers"),
    ({"merge_method": "slerp", "base_model": "z", "parameters": {"t": 0.5},
      "slices": [{"sources": [_S("x", (0, 2)), _S("y", (0, 2))]}]}, "one of the slice's sources"),
    ({"merge_method": "linear", "models": [{"model": "x", "parameters": {"weight": 1}}],
      "slices": [{"sources": [_S("x", (0, 2))]}]}, "not both"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_recipes_are_refused(data, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.parse(data)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return {k: str(v) for k, v in family(tmp_path_factory.mktemp("m"), names=("pre", "g", "a", "b")).items()}


def _recipes(m):
    def r(method, names, base=None, **params):
        d = {"merge_method": method, "models": [{"model": m[n]} for n in names]}
        return Recipe.parse({**d, **({"base_model": m[base]} if base else {}),
                             **({"parameters": params} if params else {})})
    w = lambda names, base=None, **p: Recipe.parse({  # noqa: E731
        "merge_method": "multislerp" if len(names) > 2 else "nuslerp",
        "models": [{"model": m[n], "parameters": {"weight": 0.5 + i / 4}} for i, n in enumerate(names)],
        **({"base_model": m[base]} if base else {}), **({"parameters": p} if p else {})})
    return {
        "slerp": r("slerp", ["g", "a"], "g", t=[0.2, 0.7]),
        "nuslerp": w(["a", "b"], "pre"),
        "multislerp": w(["g", "a", "b"], "pre"),
        "karcher": r("karcher", ["g", "a", "b"]),
        "model_stock": r("model_stock", ["g", "a", "b"], "pre"),
        "sce": r("sce", ["a", "b"], "pre", select_topk=0.5),
        "nearswap": r("nearswap", ["a"], "g", t=0.01),
        "arcee_fusion": r("arcee_fusion", ["a"], "g"),
        "passthrough": r("passthrough", ["a"]),
        "ram": r("ram", ["g", "a", "b"], "pre", epsilon=0.02),
        "ramplus_tl": r("ramplus_tl", ["a", "b"], "pre", epsilon=0.02, r=0.4),
        "slices": Recipe.parse({"merge_method": "linear", "slices": [
            {"sources": [{**_S(m["g"], (0, 2)), "parameters": {"weight": 0.6}},
                         {**_S(m["a"], (1, 3)), "parameters": {"weight": 0.4}}]},
            {"sources": [{**_S(m["b"], (2, 3)), "parameters": {"weight": 1.0}},
                         {**_S(m["a"], (0, 1)), "parameters": {"weight": 0.0}}]}]}),
    }


@pytest.mark.parametrize("name", list(_recipes({k: k for k in ("pre", "g", "a", "b")})))
def test_swap_builds_the_exported_tensors(models, tmp_path, name):
    recipe = _recipes(models)[name]
    exported = load_file(export(recipe, tmp_path / "out") / "model.safetensors")
    swapped = dict(ResidentInputs().merged(recipe, num_layers=3))
    assert set(swapped) == set(exported)
    for k, v in swapped.items():
        assert torch.equal(v, exported[k]), k


def test_swap_refuses_a_frankenmerge_with_another_layer_count(models):
    recipe = Recipe.parse({"merge_method": "passthrough", "slices": [
        {"sources": [_S(models["a"], (0, 3))]}, {"sources": [_S(models["b"], (2, 3))]}]})
    with pytest.raises(MergeError, match="4 layers"):
        list(ResidentInputs().merged(recipe, num_layers=3))


# ---- the catalogue's SLERP-pair and unweighted entries, through the sweep ------------------
SWEEP_EXPERIMENT = """\
name: tinysweep
base: models/pre
general: {model: models/general, size: 1000, steps: 100}
skills:
  science: {model: models/science, size: 200, steps: 20}
  coding: {model: models/coding, size: 100, steps: 10}
axes:
  general: {suite: fake_general}
  science: {suite: fake_science}
  coding: {suite: fake_coding}
engine: fake
"""


@pytest.fixture(scope="module")
def sweep_points(tmp_path_factory):
    from ptm_core.orchestrate.points import Grid, MergeKitBuilder, grid_points
    from ptm_core.store.experiment import Experiment

    root = tmp_path_factory.mktemp("sweep")
    family(root / "models", names=("pre", "general", "science", "coding"))
    (root / "tinysweep.yml").write_text(SWEEP_EXPERIMENT)
    exp = Experiment.load(root / "tinysweep.yml")
    pts, notes = grid_points(exp, MergeKitBuilder(), Grid(
        omegas=[0.3], methods=["slerp", "nuslerp", "model_stock", "karcher"], baselines=False,
        references=False))
    assert notes == []
    return exp, pts


def test_the_sweep_builds_slerp_and_unweighted_points(sweep_points):
    exp, pts = sweep_points
    by = {(p.kind, p.skills): p for p in pts}
    assert sorted(by) == sorted([(k, s) for k in ("slerp", "nuslerp") for s in (("science",), ("coding",))]
                                + [(k, s) for k in ("model_stock", "karcher")
                                   for s in (("science",), ("coding",), ("science", "coding"))])
    slerp = Recipe.from_yaml(by["slerp", ("science",)].recipe_yaml)
    assert slerp.merge_method == "slerp" and slerp.base_model == exp.general.model
    assert slerp.parameters == {"t": 0.3} and slerp.inputs() == [exp.skills["science"].model]
    assert by["slerp", ("science",)].omega == {"science": 0.3}
    nu = Recipe.from_yaml(by["nuslerp", ("coding",)].recipe_yaml)
    assert nu.base_model == exp.base and [m.parameters["weight"] for m in nu.models] == [0.7, 0.3]
    stock = Recipe.from_yaml(by["model_stock", ("science", "coding")].recipe_yaml)
    assert stock.base_model == exp.base and stock.inputs() == [
        exp.general.model, exp.skills["science"].model, exp.skills["coding"].model]
    assert by["model_stock", ("science", "coding")].omega == {"science": 1.0, "coding": 1.0}
    assert by["model_stock", ("science",)].data_size == 200
    karcher = Recipe.from_yaml(by["karcher", ("coding",)].recipe_yaml)
    assert karcher.base_model is None and karcher.inputs() == [exp.general.model,
                                                               exp.skills["coding"].model]


@pytest.mark.parametrize("kind,skills", [("slerp", ("science",)), ("nuslerp", ("coding",)),
                                         ("model_stock", ("science", "coding")),
                                         ("karcher", ("science",))])
def test_swap_builds_the_exported_tensors_of_sweep_points(sweep_points, tmp_path, kind, skills):
    _, pts = sweep_points
    point, = [p for p in pts if p.kind == kind and p.skills == skills]
    recipe = Recipe.from_yaml(point.recipe_yaml)
    exported = load_file(export(recipe, tmp_path / "out") / "model.safetensors")
    swapped = dict(ResidentInputs().merged(recipe, num_layers=3))
    assert set(swapped) == set(exported)
    for k, v in swapped.items():
        assert torch.equal(v, exported[k]), k


def test_slerp_pair_ends_at_the_two_models(sweep_points, tmp_path):
    """ω = 0 is θ_G and ω = 1 is θ_D, as on every curve of the paper."""
    from ptm_core.merge.ptm import nuslerp, slerp
    exp, _ = sweep_points
    g = load_file(f"{exp.general.model}/model.safetensors")
    d = load_file(f"{exp.skills['science'].model}/model.safetensors")
    for build in (lambda w: slerp(exp.general.model, exp.skills["science"].model, w),
                  lambda w: nuslerp(exp.base, exp.general.model, exp.skills["science"].model, w)):
        for w, want in ((0.0, g), (1.0, d)):
            got = dict(ResidentInputs().merged(build(w), num_layers=3))
            worst = max((got[k] - want[k]).abs().max().item() for k in want)
            assert worst < 1e-5, (w, worst)
