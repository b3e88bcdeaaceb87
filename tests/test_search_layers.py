"""Per-layer-group ω: the search space of k skills × G gradient anchors (whole lattice or a
seeded sample), its suggestions as valid MergeKit recipes with gradient lists, the refusal of a
bad G, and `python -m ptm_core search --layer-groups` on the fake lab (whose suites score a
gradient by its first layer's ω for general and its last layer's for the skill)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from ptm_core.errors import PTMError
from ptm_core.merge.recipe import Recipe
from ptm_core.orchestrate.points import MergeKitBuilder, method_point
from ptm_core.search import acquisition, cli, space
from ptm_core.search.objective import Objective
from ptm_core.store.db import Store
from ptm_core.store.point import exact_resample, omega_json
from ptm_core.testing.store import (
    FakeBuilder, FakeEngine, fake_fingerprinter, fake_lab, fake_suite_resolver, write_experiment,
)

SKILLS = ("science", "coding")


def test_a_small_lattice_is_whole_and_in_order():
    sp = space.Space(SKILLS, 2, step=0.25)
    C = sp.candidates()
    assert not sp.sampled and C.shape == (5 ** 4, 4)
    np.testing.assert_array_equal(C, space.lattice(4, step=0.25))
    assert sp.columns() == ["ω_science[1]", "ω_science[2]", "ω_coding[1]", "ω_coding[2]"]
    assert "625 lattice points" in sp.describe() and "2 layer groups" in sp.describe()


def test_a_big_lattice_is_sampled_with_every_one_omega_point():
    sp = space.Space(("a", "b", "c"), 4, step=0.05, seed=3)  # 21^12 points: far too many
    C = sp.candidates()
    assert sp.sampled and C.shape == (space.MAX_CANDIDATES, 12)
    assert len({tuple(r) for r in C}) == len(C)  # distinct
    assert np.all((C >= 0) & (C <= 1)) and np.allclose(C / 0.05, np.round(C / 0.05))
    # the one-ω-per-skill points (all anchors equal) are all there, first, in lattice order
    diag = np.repeat(space.lattice(3, step=0.05), 4, axis=1)
    np.testing.assert_array_equal(C[:len(diag)], diag)
    assert "sampled" in sp.describe()
    np.testing.assert_array_equal(C, space.Space(("a", "b", "c"), 4, step=0.05, seed=3).candidates())
    assert not np.array_equal(C, space.Space(("a", "b", "c"), 4, step=0.05, seed=4).candidates())


@pytest.mark.parametrize("g", [0, 5, -1, 2.5, True, "2"])
def test_bad_layer_groups_are_refused(g):
    with pytest.raises(PTMError, match="layer groups"):
        space.check_groups(g)


def test_points_map_to_omega_and_back():
    sp = space.Space(SKILLS, 2)
    assert sp.omegas([0.2, 0.6, 0.3, 0.3]) == {"science": (0.2, 0.6), "coding": 0.3}
    assert sp.vector({"science": (0.2, 0.6), "coding": 0.3}) == (0.2, 0.6, 0.3, 0.3)
    assert sp.vector({"science": 0.5}) == (0.5, 0.5, 0.0, 0.0)  # a skill left out: ω = 0
    assert sp.label([0.2, 0.6, 0.3, 0.3]) == "ω_science=[0.2, 0.6], ω_coding=0.3"
    # a stored gradient counts in G groups only where G anchors give the same per-layer ω
    assert space.as_groups([0.2, 0.6], 3) == pytest.approx((0.2, 0.4, 0.6))
    assert space.as_groups([0.2, 0.4, 0.6], 2) == pytest.approx((0.2, 0.6))  # a straight line
    assert space.as_groups([0.2, 0.5, 0.6], 2) is None
    assert space.as_groups([0.2, 0.6], 1) is None and space.as_groups(0.3, 4) == (0.3,) * 4


def test_suggested_points_are_valid_recipes_with_gradient_lists(tmp_path):
    """Propose over synthetic scores in 2 skills × 3 groups; every suggestion becomes a real
    MergeKit recipe whose per-skill weight is a gradient list of length 3 in [0, 1] (2 when its
    anchors lie on a line, one number when they are equal: the same merge, shortest form)."""
    exp, _, _ = fake_lab(tmp_path)
    sp = space.Space(SKILLS, 3, step=0.25)
    C = sp.candidates()
    rng = np.random.default_rng(0)
    idx = space.initial_design(C, 8, seed=0)
    X = C[idx]
    scores = {"general": 60 - 20 * (X[:, 0] ** 2 + X[:, 3] ** 2),
              "science": 20 + 50 * X[:, 2] + rng.normal(0, 0.5, len(X)),
              "coding": 20 + 50 * X[:, 5] + rng.normal(0, 0.5, len(X))}
    obj = Objective(SKILLS, None, "general", 55.0)
    picks, _ = acquisition.propose(obj, X, scores, C, q=4, ref=[20.0, 20.0], exclude=idx)
    assert len(picks) == 4 and not set(picks) & set(idx)
    b = MergeKitBuilder()
    layered = 0
    for i in picks:
        p = method_point(exp, b, "task_arithmetic", sp.omegas(C[i]))
        r = Recipe.from_yaml(p.recipe_yaml)
        weights = {m.model: m.parameters["weight"] for m in r.models}
        for j, s in enumerate(SKILLS):
            w = weights[exp.skills[s].model]
            want = C[i][3 * j:3 * j + 3]
            if isinstance(w, list):
                layered += 1
                assert len(w) in (2, 3) and all(0 <= v <= 1 for v in w)
                # the candidate's per-layer ω (a straight one in its shortest form, 2 anchors)
                np.testing.assert_allclose(exact_resample(w, 3), want)
                assert p.omega[s] == tuple(w)
            else:
                assert np.allclose(want, w) and 0 <= w <= 1  # equal anchors: the one-ω point
        assert json.loads(omega_json(p.omega)) == {s: (list(v) if isinstance(v, tuple) else v)
                                                   for s, v in p.omega.items()}
    assert layered  # the search does use the per-layer dimensions


def test_a_per_layer_omega_is_refused_for_a_method_without_one(tmp_path):
    exp, b, _ = fake_lab(tmp_path)
    with pytest.raises(PTMError, match="per-layer"):
        method_point(exp, b, "linear", {"science": (0.2, 0.6)})


def run_search(argv, store):
    out = io.StringIO()
    rc = cli.main(argv, engine_factory=lambda exp: FakeEngine(), suite_resolver=fake_suite_resolver(),
                  builder=FakeBuilder(), fingerprinter=fake_fingerprinter, store=store, out=out)
    return rc, out.getvalue()


@pytest.mark.parametrize("g", ["0", "5"])
def test_search_refuses_a_bad_layer_groups(tmp_path, g):
    path = write_experiment(tmp_path)
    with pytest.raises(PTMError, match="layer groups"):
        run_search([str(path), "--layer-groups", g], Store(tmp_path / "s.sqlite"))


def test_search_over_layer_groups_stores_gradients_and_beats_one_omega(tmp_path):
    """Two groups on the fake lab: general reads the first layer's ω, each skill the last
    layer's, so a gradient rising over the layers keeps general and gains the skill, which no
    one-ω point can (within general ≥ 55: science + coding at most 2 × 41.2)."""
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    front = tmp_path / "front.json"
    rc, out = run_search([str(path), "--skills", "science,coding", "--layer-groups", "2",
                          "--budget", "12", "--init", "9", "--batch", "3", "--step", "0.25",
                          "--json", str(front)], store)
    assert rc == 0, out
    assert "2 layer groups per skill, 4 dimensions" in out and "batch 2:" in out
    exp = store.get_experiment("fakelab")
    records = store.results("fakelab")
    gradients = [r for r in records if r.omega and "[" in r.omega]
    assert gradients and all("[" in r.label for r in gradients)
    X, scores = cli.measured(store, exp, "task_arithmetic", ["science", "coding"],
                             ["science", "coding", "general"], groups=2)
    assert X.shape == (12, 4) and np.all((X >= 0) & (X <= 1))
    ok = scores["general"] >= 55
    assert np.max((scores["science"] + scores["coding"])[ok]) > 2 * 41.2 + 10
    # with one group the per-layer points are not points: only the one-ω ones count
    X1, _ = cli.measured(store, exp, "task_arithmetic", ["science", "coding"],
                         ["science", "coding", "general"])
    assert len(X1) == sum(1 for x in X if x[0] == x[1] and x[2] == x[3])
    rows = json.loads(front.read_text())["predicted_front"]
    assert rows and any(isinstance(v, list) and len(v) == 2 for r in rows for v in r["omega"].values())
