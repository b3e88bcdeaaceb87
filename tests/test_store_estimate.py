"""Estimates at unmeasured ω: exact on a known quadratic, linear below 6 points, clipped, marked."""

import pandas as pd
import pytest

from ptm_core.store.estimate import EstimateError, estimate, estimate_from_frame, fit_quadratic


def f(w):
    return 20.0 + 70.0 * w - 30.0 * w * w


def pts(ws, fn=f, skill="science"):
    return [({skill: w}, fn(w)) for w in ws]


def test_quadratic_recovers_a_known_quadratic_exactly():
    grid = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    e = estimate(pts(grid), {"science": 0.3})
    assert e.is_estimate and e.model == "quadratic"
    assert e.value == pytest.approx(f(0.3), abs=1e-9)
    assert e.coefficients == pytest.approx({"1": 20.0, "science": 70.0, "science^2": -30.0}, abs=1e-9)
    assert e.rmse == pytest.approx(0.0, abs=1e-9)
    assert [dict(x)["science"] for x, _ in e.inputs] == grid  # says which points it used
    assert not e.extrapolated
    assert "quadratic fit over 6 measured point(s)" in e.describe()


def test_below_six_points_interpolates_linearly_between_the_nearest():
    e = estimate(pts([0.0, 0.5, 1.0, 0.2]), {"science": 0.3})
    assert e.model == "interpolation" and e.is_estimate
    lo, hi = f(0.2), f(0.5)
    assert e.value == pytest.approx(lo + (0.3 - 0.2) / 0.3 * (hi - lo))
    assert [dict(x)["science"] for x, _ in e.inputs] == [0.2, 0.5]


def test_outside_the_measured_range_uses_the_nearest_endpoint_and_says_so():
    e = estimate(pts([0.2, 0.4]), {"science": 0.9})
    assert e.model == "nearest" and e.extrapolated and e.value == pytest.approx(f(0.4))


def test_measured_point_is_returned_as_a_measurement():
    e = estimate(pts([0.0, 0.5, 1.0]), {"science": 0.5})
    assert not e.is_estimate and e.model == "measured" and e.value == pytest.approx(f(0.5))


def test_estimates_are_clipped_to_0_100():
    steep = lambda w: 150.0 * w * w - 20.0  # noqa: E731
    e = estimate(pts([0, .2, .4, .6, .8, 1.0], steep), {"science": 1.5})
    assert e.model == "quadratic" and e.extrapolated
    assert e.raw_value > 100 and e.value == 100.0
    e = estimate(pts([0.0, 1.0], lambda w: -10.0 + 0 * w), {"science": 0.5})
    assert e.value == 0.0 and e.raw_value == pytest.approx(-10.0)


def test_two_skills_quadratic_with_cross_term():
    def g(a, b):
        return 40 + 10 * a - 5 * b + 8 * a * a + 3 * b * b - 12 * a * b
    ws = [0.0, 0.25, 0.5, 0.75]
    points = [({"a": a, "b": b}, g(a, b)) for a in ws for b in ws]  # 16 >= 12
    e = estimate(points, {"a": 0.3, "b": 0.6})
    assert e.model == "quadratic"
    assert e.value == pytest.approx(g(0.3, 0.6), abs=1e-9)
    assert e.coefficients["a*b"] == pytest.approx(-12.0)
    # too few points: interpolation along one axis when the others match
    few = [({"a": 0.0, "b": 0.5}, 10.0), ({"a": 1.0, "b": 0.5}, 30.0), ({"a": 0.3, "b": 0.0}, 99.0)]
    e = estimate(few, {"a": 0.25, "b": 0.5})
    assert e.model == "interpolation" and e.value == pytest.approx(15.0)
    # no line through the query: inverse-distance weighting of the nearest d+1
    e = estimate(few, {"a": 0.9, "b": 0.9})
    assert e.model == "idw" and 10.0 <= e.value <= 99.0 and len(e.inputs) == 3


def test_degenerate_design_falls_back_instead_of_fitting():
    # 12 points all on the diagonal a == b: the quadratic in (a, b) is not identifiable
    points = [({"a": w, "b": w}, 50 + 10 * w) for w in [i / 11 for i in range(12)]]
    assert fit_quadratic(points) is None
    assert estimate(points, {"a": 0.5, "b": 0.5}).model != "quadratic"


def test_bad_input():
    with pytest.raises(EstimateError, match="no measured points"):
        estimate([], {"science": 0.1})
    with pytest.raises(EstimateError, match="expected"):
        estimate([({"coding": 0.1}, 5.0)], {"science": 0.1})


def test_estimate_from_frame_uses_only_the_curve_asked_for():
    rows = [{"kind": "ptm", "skills": "science", "omega": f'{{"science":{w}}}', "science": f(w)}
            for w in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    rows.append({"kind": "linear", "skills": "science", "omega": '{"science":0.3}', "science": 0.0})
    rows.append({"kind": "general", "skills": "", "omega": None, "science": 0.0})
    e = estimate_from_frame(pd.DataFrame(rows), kind="ptm", skills="science", axis="science",
                            omega={"science": 0.3})
    assert e.model == "quadratic" and e.value == pytest.approx(f(0.3))


def test_estimate_axes_over_a_results_frame(tmp_path):
    from ptm_core.store.db import Store
    from ptm_core.store.estimate import estimate_axes, estimate_scores
    from ptm_core.store.frame import results_frame
    from ptm_core.orchestrate.jobs import enqueue_points
    from ptm_core.orchestrate.points import ptm_point
    from ptm_core.testing.store import FakeBuilder, FakeEngine, fake_fingerprinter, fake_lab
    from ptm_core.orchestrate.worker import run_worker

    exp, b, resolver = fake_lab(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    pts = [ptm_point(exp, b, {"science": w}) for w in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    pts.append(ptm_point(exp, b, {"coding": 0.5}))
    enqueue_points(store, exp, pts, resolver, fake_fingerprinter, builder=FakeBuilder())
    run_worker(store, lambda e: FakeEngine(), resolver, once=True, builder=FakeBuilder(),
               fingerprinter=fake_fingerprinter)
    frame = results_frame(store, exp)
    est = estimate_axes(frame, "ptm", {"science": 0.3})
    assert set(est) == {"general", "science", "coding", "safety", "xstest_safe"}
    assert all(e.model == "quadratic" and e.is_estimate for e in est.values())
    assert est["science"].value == pytest.approx(f(0.3)) and est["general"].value == pytest.approx(60 - 20 * 0.09)
    # one measured coding point: its value, marked as the nearest point, extrapolated
    assert estimate_scores(frame, "ptm", {"coding": 0.25})["coding"] == pytest.approx(f(0.5))
    near = estimate_axes(frame, "ptm", {"coding": 0.25})["coding"]
    assert near.model == "nearest" and near.extrapolated and near.inputs == (((("coding", 0.5),), f(0.5)),)
    assert estimate_axes(frame, "linear", {"science": 0.3}) == {}
