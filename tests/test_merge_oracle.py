"""MergeKit is the reference for what a recipe means: run `mergekit-yaml` on the same recipes.

Deterministic methods must agree to 1e-5 in float32 (max abs difference, printed with -s). DARE/DELLA draw random masks; MergeKit
draws from one global generator in its task order, we seed per tensor (order-independent), so
for those we check the same distribution: kept fraction and preserved L1 norm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ptm_core.merge.export import export
from ptm_core.merge.ptm import linear_interpolation, task_arithmetic, wise_ft
from ptm_core.merge.recipe import Recipe
from ptm_core.testing.tiny import family

MERGEKIT = Path(sys.executable).with_name("mergekit-yaml")
pytestmark = pytest.mark.skipif(not MERGEKIT.exists(), reason="mergekit is not installed in this venv")


def _recipes(m: dict[str, str]) -> dict[str, Recipe]:
    def r(method, weights, base="pre", **params):
        d = {"merge_method": method, "dtype": "float32",
             "models": [{"model": m[n], "parameters": {"weight": w}} for n, w in weights.items()]}
        if base:
            d["base_model"] = m[base]
        if params:
            d["parameters"] = params
        return Recipe.parse(d)

    def spread(method, per_model, base=None, **params):
        """A recipe with per-model parameters as given (None: no parameters)."""
        d = {"merge_method": method, "dtype": "float32",
             "models": [{"model": m[n], **({"parameters": p} if p else {})}
                        for n, p in per_model.items()]}
        if base:
            d["base_model"] = m[base]
        if params:
            d["parameters"] = params
        return Recipe.parse(d)

    def sliced(method, slices, base=None, slice_params=None, **params):
        """A slices: recipe; each slice a list of (model, layer_range[, parameters])."""
        out = []
        for i, sources in enumerate(slices):
            sl = {"sources": [{"model": m[src[0]], "layer_range": list(src[1]),
                               **({"parameters": src[2]} if len(src) > 2 else {})} for src in sources]}
            if slice_params and slice_params[i]:
                sl["parameters"] = slice_params[i]
            out.append(sl)
        d = {"merge_method": method, "dtype": "float32", "slices": out}
        if base:
            d["base_model"] = m[base]
        if params:
            d["parameters"] = params
        return Recipe.parse(d)

    return {
        "task_arithmetic": r("task_arithmetic", {"general": 1.0, "a": 0.35, "b": 0.6}),
        "task_arithmetic_lambda": r("task_arithmetic", {"a": 0.5, "b": 0.5}, normalize=True, **{"lambda": 0.8}),
        "linear": r("linear", {"general": 0.7, "a": 0.3}, base=None),
        "ties": r("ties", {"general": 1.0, "a": 0.4, "b": 0.4}, density=0.5),
        "breadcrumbs": r("breadcrumbs", {"a": 1.0, "b": 0.5}, density=0.6, gamma=0.05),
        "breadcrumbs_ties": r("breadcrumbs_ties", {"a": 1.0, "b": 0.5}, density=0.6, gamma=0.05),
        "dare_ties_full": r("dare_ties", {"a": 0.6, "b": 0.4}, density=1.0),
        "dare_linear": r("dare_linear", {"a": 1.0}, density=0.4),
        "dare_ties": r("dare_ties", {"a": 1.0, "b": 0.5}, density=0.4),
        "della": r("della", {"a": 1.0}, density=0.5, epsilon=0.1),
        "della_linear": r("della_linear", {"a": 1.0}, density=0.5, epsilon=0.1),
        "filters_gradient": Recipe.parse({"merge_method": "task_arithmetic", "base_model": m["pre"],
                                          "dtype": "float32", "models": [
            {"model": m["general"], "parameters": {"weight": 1.0}},
            {"model": m["a"], "parameters": {"weight": [{"filter": "mlp", "value": [0.1, 0.9]},
                                                         {"value": 0.3}]}}]}),
        "ptm_task_arithmetic": task_arithmetic(m["pre"], m["general"], {"x": m["a"], "y": m["b"]},
                                               {"x": 0.22, "y": 0.57}),
        "ptm_linear": linear_interpolation(m["pre"], m["general"], m["a"], 0.3),
        "ptm_wise_ft": wise_ft(m["general"], m["b"], 0.45),
        # the slerp family
        "slerp": spread("slerp", {"general": None, "a": None}, "general", t=0.3),
        "slerp_gradient": spread("slerp", {"a": None}, "general", t=[0.1, 0.6]),
        "slerp_filters": spread("slerp", {"general": None, "b": None}, "general", t=[
            {"filter": "self_attn", "value": [0.0, 0.5, 1.0]}, {"filter": "mlp", "value": [1.0, 0.2]},
            {"value": 0.65}]),
        "nuslerp": spread("nuslerp", {"a": {"weight": 0.3}, "b": {"weight": 0.7}}),
        "nuslerp_base_rows": spread("nuslerp", {"a": {"weight": 1.0}, "b": {"weight": 0.5}}, "pre",
                                    nuslerp_row_wise=True, nuslerp_flatten=False),
        "nuslerp_columns": spread("nuslerp", {"a": {"weight": 0.2}, "general": {"weight": 0.6}},
                                  nuslerp_flatten=False),
        "multislerp": spread("multislerp", {"general": {"weight": 1.0}, "a": {"weight": 0.4},
                                            "b": {"weight": 0.3}}, "pre"),
        "multislerp_unnormalized": spread("multislerp", {"a": {"weight": 0.6}, "b": {"weight": 0.3}},
                                          normalize_weights=False),
        # methods that weigh the inputs themselves
        "karcher": spread("karcher", {"general": None, "a": None, "b": None}),
        "karcher_few_iterations": spread("karcher", {"a": None, "b": None}, max_iter=2, tol=1e-7),
        "model_stock": spread("model_stock", {"general": None, "a": None, "b": None}, "pre"),
        "model_stock_filter_wise": spread("model_stock", {"a": None, "b": None}, "pre", filter_wise=True),
        "sce": spread("sce", {"general": None, "a": None, "b": None}, "pre", select_topk=0.5),
        "sce_all": spread("sce", {"a": None, "b": None}, "pre"),
        "nearswap": spread("nearswap", {"a": None}, "general", t=0.02),
        "arcee_fusion": spread("arcee_fusion", {"general": None, "a": None}, "general"),
        "passthrough": spread("passthrough", {"a": {"scale": 0.5}}),
        # RAM: the tiny deltas are dense, so an epsilon near their scale makes some entries
        # unique to one model and some shared
        "ram": spread("ram", {"general": None, "a": None, "b": None}, "pre", epsilon=0.02),
        "ram_default": spread("ram", {"a": None, "b": None}, "pre"),
        "ramplus_tl": spread("ramplus_tl", {"general": None, "a": None, "b": None}, "pre",
                             epsilon=0.015, r=0.5, alpha=0.3),
        "ramplus_tl_default": spread("ramplus_tl", {"a": None, "b": None}, "pre"),
        "bf16_ram": spread("ram", {"bf_a": None, "bf_b": None}, "bf_pre", epsilon=0.01),
        # slices: (model, layer_range, parameters) per source; the tiny models have 3 layers
        "slices_frankenmerge": sliced("passthrough", [[("a", (0, 2))], [("b", (1, 3))]]),
        "slices_frankenmerge_sharded": sliced("passthrough", [[("a", (0, 3))], [("b", (1, 2), {"scale": 0.5})]]),
        "slices_linear": sliced("linear", [[("general", (0, 3), {"weight": 0.7}), ("a", (0, 3), {"weight": 0.3})]]),
        "slices_slerp": sliced("slerp", [[("general", (0, 2)), ("a", (0, 2))], [("general", (2, 3)), ("a", (1, 2))]],
                               "general", slice_params=[{"t": [0.1, 0.6]}, None], t=0.4),
        "slices_task_arithmetic": sliced("task_arithmetic", [[
            ("pre", (0, 3)), ("a", (0, 3), {"weight": [{"filter": "mlp", "value": 0.8}, {"value": 0.2}]}),
            ("b", (0, 3), {"weight": 0.5})]], "pre"),
        # tied embeddings; bfloat16 inputs merged in float32
        "tied_slerp": spread("slerp", {"tied_pre": None, "tied_a": None}, "tied_pre", t=0.7),
        "tied_model_stock": spread("model_stock", {"tied_a": None, "tied_b": None}, "tied_pre"),
        "tied_frankenmerge": sliced("passthrough", [[("tied_a", (0, 2))], [("tied_b", (0, 3))]]),
        "bf16_multislerp": spread("multislerp", {"bf_a": {"weight": 0.5}, "bf_b": {"weight": 0.5}}, "bf_pre"),
        "bf16_sce": spread("sce", {"bf_a": None, "bf_b": None}, "bf_pre", select_topk=0.3),
        # inputs saved in shards with an index (each model several files)
        "sharded_inputs_ties": r("ties", {"sh_a": 0.7, "sh_b": 0.4}, base="sh_pre", density=0.6),
        "sharded_inputs_slerp": spread("slerp", {"sh_pre": None, "sh_a": None}, "sh_pre", t=[0.2, 0.9]),
        "sharded_inputs_model_stock": spread("model_stock", {"sh_a": None, "sh_b": None}, "sh_pre"),
        "sharded_inputs_frankenmerge": sliced("passthrough", [[("sh_a", (0, 2))], [("sh_b", (1, 3))]]),
    }


RANDOM = {"dare_linear", "dare_ties", "della", "della_linear"}
TOLERANCE = 1e-5  # float32; the arithmetic methods agree to 1e-7, the spherical ones to ~1e-6


# One process runs every merge through mergekit-yaml's own command (its click entry point), so
# the interpreter, torch and transformers load once instead of once per recipe.
_RUN_ALL = """
import json, sys
from mergekit.scripts.run_yaml import main
for cfg, out in json.loads(sys.argv[1]):
    main.main([cfg, out, "--random-seed", "0"], standalone_mode=False)
"""


def _selected(request) -> list[str]:
    """The recipes the selected tests of this module compare (all of them without -k)."""
    names = {item.callspec.params["name"] for item in request.session.items
             if item.module is request.module and hasattr(item, "callspec")
             and "name" in item.callspec.params}
    return [n for n in _recipes(_NAMES) if n in names]


FAMILIES = {"": {}, "tied_": {"tie_word_embeddings": True, "seed": 1},
            "bf_": {"dtype": torch.bfloat16, "seed": 2},
            "sh_": {"max_shard_size": "100KB", "seed": 3}}  # ~540 KB models: several shards
_NAMES = {p + k: p + k for p in FAMILIES for k in ("pre", "general", "a", "b")}


def _load(out: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for shard in sorted(out.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("oracle")
    models = {}
    for prefix, options in FAMILIES.items():
        names = tuple(prefix + k for k in ("pre", "general", "a", "b"))
        models.update({k: str(v.resolve()) for k, v in family(root / (prefix or "plain"), names=names,
                                                                **options).items()})
    recipes = {n: r for n, r in _recipes(models).items() if n in _selected(request)}
    jobs = []
    for name, recipe in recipes.items():
        cfg = root / f"{name}.yml"
        cfg.write_text(recipe.to_yaml())  # our YAML, unchanged, is MergeKit's input
        jobs.append((str(cfg), str(root / f"mk_{name}")))
    proc = subprocess.run([sys.executable, "-c", _RUN_ALL, json.dumps(jobs)], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mk = {n: root / f"mk_{n}" for n in recipes}
    ours = {n: export(r, root / f"ours_{n}", shard_bytes=20_000 if "sharded" in n else 2**31)
            for n, r in recipes.items()}
    states = {k: _load(Path(v)) for k, v in models.items()}
    assert all(len(list(Path(v).glob("*.safetensors"))) > 1 for k, v in models.items()
               if k.startswith("sh_"))
    yield recipes, mk, ours, states
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", [n for n in _recipes(_NAMES) if n not in RANDOM])
def test_same_weights_as_mergekit(runs, name):
    _, mk, ours, _ = runs
    a, b = _load(ours[name]), _load(mk[name])
    assert set(a) == set(b)
    if "sharded" in name:
        assert len(list(ours[name].glob("*.safetensors"))) > 1
    layers = [json.loads((d / "config.json").read_text())["num_hidden_layers"] for d in (ours[name], mk[name])]
    assert layers[0] == layers[1], f"{name}: num_hidden_layers {layers}"
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"{name}: max abs difference {worst:.3g}")
    assert worst <= TOLERANCE, f"{name}: max abs difference {worst}"


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_methods_same_distribution_as_mergekit(runs, name):
    recipes, mk, ours, states = runs
    a, b = load_file(ours[name] / "model.safetensors"), load_file(mk[name] / "model.safetensors")
    pre = states["pre"]
    density = recipes[name].parameters["density"]
    big = [k for k in a if pre[k].numel() >= 4096]
    for k in big:
        kept_ours = ((a[k] - pre[k]) != 0).float().mean().item()
        kept_mk = ((b[k] - pre[k]) != 0).float().mean().item()
        assert abs(kept_ours - kept_mk) < 0.05, k
        if "ties" not in name and name != "della":  # sign election changes norms; single-model L1 rescale holds
            l1_a, l1_b = (a[k] - pre[k]).abs().sum(), (b[k] - pre[k]).abs().sum()
            torch.testing.assert_close(l1_a, l1_b, rtol=1e-3, atol=0)
    assert 0 < density < 1


def test_the_methods_are_mergekits_registry():
    """Every method of the installed MergeKit's registry, with its parameter names, scopes,
    defaults and input contract; no method MergeKit lacks."""
    from mergekit.merge_methods import registry

    from ptm_core.merge.methods import METHODS

    theirs = {m.spec.name: m.spec for m in registry.registered_methods()}
    assert sorted(METHODS) == sorted(theirs)
    for name, spec in theirs.items():
        ours = METHODS[name]
        want = {p.name: (p.scope.value, None if p.required else p.default, p.required)
                for p in spec.parameters}
        have = {p.name: (p.scope, None if p.required else p.default, p.required)
                for p in ours.params}
        assert have == want, name
        c = spec.contract
        assert c.base.value == ("required" if ours.needs_base else
                                "optional" if ours.optional_base else "ignored"), name
        # MergeKit counts a required base among the inputs; ours are the models besides it
        req = int(c.base.value == "required")
        low = c.min_non_base if c.min_non_base is not None else c.min_inputs - req
        high = c.max_non_base if c.max_non_base is not None else \
            None if c.max_inputs is None else c.max_inputs - req
        # a recipe lists at least one model: without a required base, minimum 0 is minimum 1
        least = ours.min_inputs if req else max(1, ours.min_inputs)
        assert (least, ours.max_inputs) == (low, high), name
