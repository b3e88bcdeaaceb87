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
