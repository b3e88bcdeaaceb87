"""Cache keys: stable across runs and dict orders, sensitive to every component."""

import math

import pytest

from ptm_core.engine.base import Sampling
from ptm_core.store.keys import canonical_json, diff_components, key_components, result_key

BASE = dict(
    recipe_key="a" * 64,
    fingerprints=["fp-pre", "fp-general", "fp-science"],
    suite="lab_science",
    suite_version="3",
    sampling=Sampling(temperature=0.0, max_tokens=64),
    engine="vllm",
    suite_options={"limit": 50, "split": "test"},
)


def test_key_is_stable_and_a_sha256_hex():
    k1, k2 = result_key(**BASE), result_key(**dict(BASE))
    assert k1 == k2
    assert len(k1) == 64 and set(k1) <= set("0123456789abcdef")
    # Golden value: changing how keys are composed must be deliberate (bump KEY_SCHEMA),
    # because it silently invalidates every stored and shipped result.
    assert k1 == GOLDEN


def test_key_ignores_dict_order_and_tuple_vs_list():
    a = result_key(**{**BASE, "suite_options": {"split": "test", "limit": 50}})
    b = result_key(**{**BASE, "sampling": {**Sampling(temperature=0.0, max_tokens=64).as_dict()}})
    assert a == result_key(**BASE) == b


@pytest.mark.parametrize("field,value", [
    ("recipe_key", "b" * 64),
    ("fingerprints", ["fp-pre", "fp-general", "fp-science-v2"]),
    ("fingerprints", ["fp-general", "fp-pre", "fp-science"]),  # order = which model is which
    ("suite", "lab_science_v2"),
    ("suite_version", "4"),
    ("sampling", Sampling(temperature=0.8, max_tokens=64)),
    ("sampling", Sampling(temperature=0.0, max_tokens=64, n=10)),
    ("sampling", Sampling(temperature=0.0, max_tokens=64, seed=1)),
    ("sampling", Sampling(temperature=0.0, max_tokens=64, stop=("\n",))),
    ("engine", "hf"),
    ("suite_options", {"limit": 51, "split": "test"}),
])
def test_every_component_changes_the_key(field, value):
    assert result_key(**{**BASE, field: value}) != result_key(**BASE)


def test_non_finite_and_unknown_values_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        canonical_json({"x": math.nan})
    with pytest.raises(TypeError):
        canonical_json({"x": object()})
    with pytest.raises(ValueError):
        result_key(**{**BASE, "engine": ""})


def test_negative_zero_and_zero_are_the_same_key():
    a = result_key(**{**BASE, "sampling": {"temperature": -0.0}})
    b = result_key(**{**BASE, "sampling": {"temperature": 0.0}})
    assert a == b


def test_diff_components_names_what_changed():
    a = key_components(**BASE)
    b = key_components(**{**BASE, "suite_version": "4"})
    diffs = diff_components(a, b)
    assert len(diffs) == 1 and diffs[0].startswith("suite_version:") and '"4"' in diffs[0]


GOLDEN = "11635584a46ce1dcc06787bcf5290fb1ddda9e7e2857b98f1b63eba1a18ce71a"


def test_engine_key_carries_the_dtype_that_changes_outputs():
    from ptm_core.store.keys import engine_key

    assert engine_key("vllm") == engine_key("vllm", {"dtype": "auto"}) == "vllm"
    assert engine_key("vllm", {"dtype": "float32", "max_model_len": 512}) == "vllm:dtype=float32"
    assert result_key(**{**BASE, "engine": engine_key("vllm", {"dtype": "float32"})}) \
        != result_key(**BASE)


# ---- keys of MergeKit recipes: every model the result depends on is in the key -------------
def _tokenizer_recipes(exp):
    """The same task-arithmetic merge of science into θ_G, with the output tokenizer taken from
    a model that is not merged (coding's, or the CFT model's), or from none."""
    from ptm_core.merge.recipe import Recipe

    def recipe(**tok):
        return Recipe.parse({"merge_method": "task_arithmetic", "base_model": exp.base, **tok,
                             "models": [{"model": exp.general.model, "parameters": {"weight": 1.0}},
                                        {"model": exp.skills["science"].model,
                                         "parameters": {"weight": 0.5}}]})
    coding, cft = exp.skills["coding"].model, exp.references[0].model
    return {"coding": recipe(tokenizer_source=coding), "coding_again": recipe(tokenizer_source=coding),
            "cft": recipe(tokenizer_source=cft), "cft_spec": recipe(tokenizer={"source": cft}),
            "none": recipe()}


def _keys(exp, recipes, fingerprints):
    from ptm_core.orchestrate.jobs import plan_jobs
    from ptm_core.orchestrate.points import MergeKitBuilder
    from ptm_core.store.point import make_point
    from ptm_core.testing.store import fake_suite_resolver

    points = {n: make_point(exp, r, kind="ptm", skills=("science",), omega={"science": 0.5},
                            label=n, data_size=None, train_steps=None, method="task_arithmetic")
              for n, r in recipes.items()}
    specs = plan_jobs(exp, list(points.values()), fake_suite_resolver(), fingerprints.__getitem__,
                      axes=["general"], builder=MergeKitBuilder())
    # the worker re-derives each key from the recipe it is about to apply: the same keys
    from ptm_core.orchestrate.evaluate import Evaluator

    check = Evaluator(lambda e: None, fake_suite_resolver(), fingerprinter=fingerprints.__getitem__)
    for s in specs:
        check.verify(exp, s, MergeKitBuilder().load(s.point.recipe_yaml),
                     check.suite(exp, s.suite_ref), "fake")
    return {s.point.label: s.key for s in specs}, points


def test_a_tokenizer_model_outside_the_merge_is_part_of_the_key(tmp_path):
    from ptm_core.testing.store import fake_lab

    exp, _, _ = fake_lab(tmp_path)
    fps = {ref: f"fp-{i}" for i, ref in enumerate(exp.model_refs())}
    recipes = _tokenizer_recipes(exp)
    keys, points = _keys(exp, recipes, fps)
    coding = exp.skills["coding"].model
    assert points["coding"].model_refs[-1] == coding  # the merge inputs, then the tokenizer model
    assert keys["coding"] == keys["coding_again"]  # identical recipes share a result
    assert len({keys["coding"], keys["cft"], keys["cft_spec"], keys["none"]}) == 4
    assert points["coding"].point_id != points["cft"].point_id  # and a point id
    # the same tokenizer model with other content (a new fingerprint) is another result
    changed, _ = _keys(exp, recipes, {**fps, coding: "fp-coding-edited"})
    assert changed["coding"] != keys["coding"]
    assert changed["cft"] == keys["cft"] and changed["none"] == keys["none"]


def test_a_recipe_without_a_tokenizer_model_keeps_its_key(tmp_path):
    """recipe_refs is model_refs for every recipe without a tokenizer model: stored keys stay."""
    from ptm_core.store.jobs import weights_key
    from ptm_core.testing.store import fake_lab

    exp, _, _ = fake_lab(tmp_path)
    r = _tokenizer_recipes(exp)["none"]
    fps = {ref: f"fp-{i}" for i, ref in enumerate(exp.model_refs())}
    keys, points = _keys(exp, {"none": r}, fps)
    assert list(points["none"].model_refs) == r.model_refs() == r.all_refs()
    assert keys["none"] == result_key(
        recipe_key=r.with_refs({ref: f"{i}:{fps[ref]}" for i, ref in enumerate(r.model_refs())}).key(),
        fingerprints=[fps[ref] for ref in r.model_refs()], suite="fake_general", suite_version="1",
        sampling=Sampling(), engine="fake", suite_options={})
    assert weights_key(r, [fps[ref] for ref in r.model_refs()]) == \
        r.with_refs({ref: f"{i}:{fps[ref]}" for i, ref in enumerate(r.model_refs())}).key()


def test_a_tokenizer_model_outside_the_experiment_is_refused(tmp_path):
    from ptm_core.merge.recipe import Recipe
    from ptm_core.store.jobs import JobMismatchError
    from ptm_core.testing.store import fake_lab

    exp, _, _ = fake_lab(tmp_path)
    r = Recipe.parse({"merge_method": "linear", "tokenizer_source": str(tmp_path / "elsewhere"),
                      "models": [{"model": exp.general.model, "parameters": {"weight": 1.0}}]})
    with pytest.raises(JobMismatchError, match="elsewhere"):
        _keys(exp, {"stray": r}, {ref: "fp" for ref in exp.model_refs()})


def test_a_per_layer_omega_has_its_own_key_and_equal_anchors_are_the_one_omega_point(tmp_path):
    """A gradient ω is part of the recipe, so of the point's key: each per-layer ω its own key;
    the same ω at every layer in fewer anchors is the same merge (equal anchors: the one-ω
    point, as MergeKit interpolates them to that weight), so the same key and stored results."""
    from ptm_core.orchestrate.points import MergeKitBuilder, ptm_point
    from ptm_core.testing.store import fake_lab

    exp, _, _ = fake_lab(tmp_path)
    b = MergeKitBuilder()

    def key(w):
        return ptm_point(exp, b, {"science": w, "coding": 0.5}).recipe_key

    keys = {key(w) for w in ((0.2, 0.6), (0.6, 0.2), (0.2, 0.5, 0.6), (0.2, 0.3, 0.5, 0.6),
                             0.2, 0.6, 0.4)}
    assert len(keys) == 7
    assert key((0.3, 0.3)) == key(0.3) == key([0.3, 0.3, 0.3])
    assert key((0.2, 0.6)) == key([0.2, 0.6]) == key((0.2000000001, 0.6))
    # a straight gradient is its two ends: the same ω at every layer, so the same merge
    assert key((0.2, 0.4, 0.6)) == key((0.2, 0.6)) == key((0.2, 0.4 / 3 + 0.2, 0.8 / 3 + 0.2, 0.6))
    p = ptm_point(exp, b, {"science": (0.3, 0.3)})
    assert p.omega == {"science": 0.3} and p.omega_json == '{"science":0.3}'
    assert ptm_point(exp, b, {"science": [0.2, 0.4, 0.6]}).omega == {"science": (0.2, 0.6)}
