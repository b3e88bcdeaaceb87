"""ptm_core/search: hypervolume against hand-computed values, objectives, surrogates and the
acquisition on synthetic functions whose fronts are known."""

from __future__ import annotations

import numpy as np
import pytest

from ptm_core.errors import PTMError
from ptm_core.search import acquisition, front as front_mod, replay, space, surrogate
from ptm_core.search.hypervolume import hypervolume, pareto_mask
from ptm_core.search.objective import Objective, parse_objective


# ---- hypervolume ---------------------------------------------------------------------------
def test_hypervolume_2d_by_hand():
    # staircase (3,1) (2,2) (1,3) over ref (0,0): 3·1 + 2·1 + 1·1 = 6
    assert hypervolume([[3, 1], [2, 2], [1, 3]], [0, 0]) == pytest.approx(6.0)
    # a dominated point and a point below ref add nothing
    assert hypervolume([[3, 1], [2, 2], [1, 3], [1, 1], [-1, 9]], [0, 0]) == pytest.approx(6.0)
    assert hypervolume([[2, 2]], [1, 1]) == pytest.approx(1.0)
    assert hypervolume(np.zeros((0, 2)), [0, 0]) == 0.0


def test_hypervolume_3d_and_1d_by_hand():
    # two boxes 2x2x1 and 1x1x2 over the origin, overlapping in 1x1x1: 4 + 2 - 1 = 5
    assert hypervolume([[2, 2, 1], [1, 1, 2]], [0, 0, 0]) == pytest.approx(5.0)
    assert hypervolume([[1, 1, 1]], [0, 0, 0]) == pytest.approx(1.0)
    assert hypervolume([[4.0], [7.0]], [5.0]) == pytest.approx(2.0)


def test_hypervolume_matches_monte_carlo_in_3d():
    rng = np.random.default_rng(3)
    pts = rng.random((6, 3))
    samples = rng.random((200_000, 3))
    covered = np.any(np.all(samples[:, None, :] <= pts[None, :, :], axis=2), axis=1).mean()
    assert hypervolume(pts, [0, 0, 0]) == pytest.approx(covered, abs=0.01)


def test_pareto_mask():
    assert pareto_mask([[3, 1], [2, 2], [1, 1], [1, 3]]).tolist() == [True, True, False, True]


# ---- objective -----------------------------------------------------------------------------
def test_parse_objective_pareto_weighted_and_errors():
    axes = ["general", "science", "safety"]
    o = parse_objective("science,safety", known_axes=axes, constraint_axis="general", floor=40.0)
    assert o.axes == ("science", "safety") and o.weights is None and o.metrics == ("science", "safety", "general")
    assert o.feasible({"general": 40.0}) and not o.feasible({"general": 39.9})
    w = parse_objective("science=1,safety=3", known_axes=axes, constraint_axis=None, floor=None)
    assert w.values({"science": 10, "safety": 20}).tolist() == [70.0]
    for bad in ("", "chemistry", "science=1,safety", "science,science", "science=x", "science=0"):
        with pytest.raises(PTMError):
            parse_objective(bad, known_axes=axes, constraint_axis=None, floor=None)


# ---- surrogates ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", surrogate.KINDS)
def test_surrogate_recovers_a_quadratic_with_a_band(kind):
    X = space.lattice(2, step=0.25)
    f = lambda X: 50 + 30 * X[:, 0] - 20 * X[:, 1] ** 2 + 10 * X[:, 0] * X[:, 1]
    m = surrogate.fit(kind, X, f(X), seed=0)
    test = np.array([[0.1, 0.6], [0.9, 0.3]])
    mean, sd = m.predict(test)
    assert np.allclose(mean, f(test), atol=2.0)
    assert np.all(sd >= 0) and np.all(sd < 10)


def test_gp_is_less_sure_far_from_data():
    X = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [0.05, 0.05]])
    m = surrogate.fit("gp", X, [10.0, 12.0, 11.0, 13.0, 11.5], seed=0)
    _, sd = m.predict([[0.05, 0.05], [1.0, 1.0]])
    assert sd[1] > 2 * sd[0]


def test_surrogate_constant_and_bad_input():
    m = surrogate.fit("gp", [[0.0], [1.0]], [5.0, 5.0])
    assert m.predict([[0.5]])[0].tolist() == [5.0]
    with pytest.raises(PTMError):
        surrogate.fit("gp", [[0.0]], [float("nan")])
    with pytest.raises(PTMError):
        surrogate.fit("spline", [[0.0], [1.0]], [1.0, 2.0])


# ---- acquisition on a synthetic problem with a known front ---------------------------------
def synthetic() -> tuple[replay.Table, Objective]:
    """a = ω1(1 − ω2/2), b = ω2(1 − ω1/2), both × 100: the front runs along the upper corner;
    g = 100 − 30|ω|² must stay ≥ 80, which cuts off ω far from the origin."""
    X = space.lattice(2, step=0.1)
    t = replay.Table(X, {"a": 100 * X[:, 0] * (1 - X[:, 1] / 2),
                         "b": 100 * X[:, 1] * (1 - X[:, 0] / 2),
                         "g": 100 - 30 * (X ** 2).sum(axis=1)})
    return t, Objective(("a", "b"), None, "g", 80.0)


def test_proposals_are_new_in_range_candidates():
    t, obj = synthetic()
    idx = space.initial_design(t.X, 5, seed=1)
    assert idx[0] == 0 and len(set(idx)) == 5  # the origin first: θ_G's weights anchor the floor
    picks, models = acquisition.propose(obj, t.X[idx], {m: v[idx] for m, v in t.scores.items()},
                                        t.X, q=4, ref=[0, 0], seed=1, exclude=idx)
    assert len(picks) == 4 and len(set(picks) | set(idx)) == 9
    assert np.all((t.X[picks] >= 0) & (t.X[picks] <= 1))
    assert set(models) == {"a", "b", "g"}


def test_search_beats_random_on_the_synthetic_front():
    t, obj = synthetic()
    full = replay.hv_trace(t, replay.grid_order(t), obj, [0, 0])[-1]
    order = replay.search_order(t, obj, [0, 0], budget=30, seed=0)
    assert len(set(order)) == len(order) == 30
    s = replay.evals_to(replay.hv_trace(t, order, obj, [0, 0]), 0.95 * full)
    r = [replay.evals_to(replay.hv_trace(t, replay.random_order(t, 121, seed), obj, [0, 0]),
                         0.95 * full) for seed in range(5)]
    assert s is not None and s <= 30 and s < min(r)


def test_predicted_front_is_feasible_nondominated_with_bands():
    t, obj = synthetic()
    models = surrogate.fit_all("gp", t.X, t.scores, seed=0)
    f = front_mod.predicted_front(models, obj, t.X)
    assert len(f.omega) >= 3
    assert np.all(pareto_mask(f.mean)) and np.all(f.p_feasible >= 0.5)
    assert np.all(f.lo <= f.mean) and np.all(f.mean <= f.hi)
    assert np.all(np.diff(f.mean[:, 0]) <= 0)  # sorted by the first objective
    true_g = 100 - 30 * (f.omega ** 2).sum(axis=1)
    assert np.all(true_g >= 80 - 3)  # fitted on the full grid: the predicted front is the real one


def test_lattice_and_design_validate():
    assert space.lattice(2, step=0.5).tolist() == [[0, 0], [0, .5], [0, 1], [.5, 0], [.5, .5],
                                                   [.5, 1], [1, 0], [1, .5], [1, 1]]
    for args in [(0,), (2, 1.0, 0.0), (2, 0.0, 1.0, 0.0), (6, 0.0, 1.0, 0.05)]:
        with pytest.raises(PTMError):
            space.lattice(*args)
    X = space.lattice(3, step=0.25)
    assert space.initial_design(X, 7, 0) == space.initial_design(X, 7, 0)
