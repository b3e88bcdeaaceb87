"""The Search page's pure parts without Streamlit: the measured points read from a results frame
(search/measured.py), the predicted front and suggestions (app/suggest.py) on a frame whose
scores are a known closed form, and the front figure's traces (analysis/front_figure.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ptm_core.analysis.front_figure import NAMES, band_polygon, front_figure
from ptm_core.app import suggest
from ptm_core.app.errors import AppDataError
from ptm_core.search.measured import measured_points


def truth(ws, wc):
    return {"general": 60 - 20 * (ws ** 2 + wc ** 2), "science": 20 + 70 * ws - 30 * ws ** 2,
            "coding": 20 + 70 * wc - 30 * wc ** 2}


def frame(points, *, single=(), general=True, method="task_arithmetic", kind="ptm") -> pd.DataFrame:
    """A results frame: two-skill merges at `points`, single-skill science merges at `single`."""
    rows = []
    if general:
        rows.append({"kind": "general", "skills": None, "omega": None, "label": "θ_G", **truth(0, 0)})
    for ws, wc in points:
        rows.append({"kind": kind, "skills": "science+coding", "method": method,
                     "omega": json.dumps({"science": ws, "coding": wc}), "label": "", **truth(ws, wc)})
    for ws in single:
        rows.append({"kind": kind, "skills": "science", "method": method,
                     "omega": json.dumps({"science": ws}), "label": "", **truth(ws, 0)})
    return pd.DataFrame(rows)


AXES = ["general", "science", "coding"]


def test_measured_points_count_subsets_only_for_task_arithmetic():
    f = frame([(0.5, 0.5)], single=[0.25, 1.0])
    X, s = measured_points(f, "task_arithmetic", ["science", "coding"], AXES)
    assert sorted(map(tuple, X)) == [(0, 0), (0.25, 0), (0.5, 0.5), (1.0, 0)]
    assert s["general"][X.tolist().index([0.25, 0])] == pytest.approx(truth(0.25, 0)["general"])
    ties = frame([(0.5, 0.5)], single=[0.25], method="ties", kind="ties")
    X, _ = measured_points(ties, "ties", ["science", "coding"], AXES)
    assert X.tolist() == [[0.5, 0.5]]  # TIES: a left-out skill is not ω = 0; θ_G is not a TIES merge
    # an axis not scored yet, an estimate, another skill: not a point
    f = frame([(0.5, 0.5), (0.25, 0.25), (1, 1)], general=False)
    f.loc[0, "coding"] = np.nan
    f["estimated"] = [False, True, False]
    f.loc[2, "omega"] = json.dumps({"science": 1, "safety": 1})
    assert len(measured_points(f, "task_arithmetic", ["science", "coding"], AXES)[0]) == 0


def test_front_of_a_known_problem_is_near_the_truth_and_bands_hold_it():
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    view = suggest.front_view(frame([(a, b) for a in grid for b in grid]),
                              suggest.FrontRequest(("science", "coding"), delta=5.0), AXES)
    assert view.floor == pytest.approx(55.0) and view.have == 25 and view.need == 5
    f = view.front
    assert len(f) >= 5 and (f["p_feasible"] >= 0.5).all()
    assert (f["science_lo"] <= f["science"]).all() and (f["science"] <= f["science_hi"]).all()
    tr = [truth(a, b) for a, b in zip(f["ω_science"], f["ω_coding"])]
    # the true front is the quarter circle ω_s² + ω_c² = 0.25 (general = 55)
    assert all(abs(t["general"] - 55) < 4 for t in tr)
    # non-dominated among themselves, ordered by the first objective
    assert list(f["science"]) == sorted(f["science"], reverse=True)
    # Pareto: no front point dominates another
    m = f[["science", "coding"]].to_numpy()
    assert not any(np.all(m[i] >= m[j]) and np.any(m[i] > m[j]) for i in range(len(m)) for j in range(len(m)))


def test_weighted_objective_has_one_best_point():
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    view = suggest.front_view(frame([(a, b) for a in grid for b in grid]),
                              suggest.FrontRequest(("science", "coding"), weights=(1.0, 0.0), delta=5.0), AXES)
    assert len(view.front) == 1
    ws, wc = view.front.iloc[0][["ω_science", "ω_coding"]]
    assert ws >= 0.35 and wc <= 0.15  # all the budget of general on science: ω_s ≈ 0.5


def test_too_few_points_and_missing_anchor_are_said():
    v = suggest.front_view(frame([(0.5, 0.5)]), suggest.FrontRequest(("science", "coding")), AXES)
    assert v.front is None and "needs at least 5" in v.message and v.have == 2
    s = suggest.suggest(v, 3)
    assert list(s["why"]) == ["initial design"] * 3
    assert not {tuple(r) for r in s[["ω_science", "ω_coding"]].to_numpy()} & {(0, 0), (0.5, 0.5)}
    grid = [0.0, 0.5, 1.0]
    no_g = frame([(a, b) for a in grid for b in grid if (a, b) != (0, 0)], general=False)
    v = suggest.front_view(no_g, suggest.FrontRequest(("science", "coding")), AXES)
    assert v.front is None and "not measured" in v.message
    v = suggest.front_view(no_g, suggest.FrontRequest(("science", "coding"), delta=None), AXES)
    assert v.front is not None and not v.front.empty  # unconstrained: no anchor needed
    with pytest.raises(AppDataError):
        suggest.front_view(no_g, suggest.FrontRequest(("science", "safety")), AXES)


def test_suggestions_are_lattice_points_not_measured_nor_excluded():
    grid = [0.0, 0.5, 1.0]
    v = suggest.front_view(frame([(a, b) for a in grid for b in grid]),
                           suggest.FrontRequest(("science", "coding")), AXES)
    s = suggest.suggest(v, 4)
    om = s[["ω_science", "ω_coding"]].to_numpy()
    assert len(s) == 4 and np.all((om >= 0) & (om <= 1))
    assert np.allclose(om / 0.05, np.round(om / 0.05))
    assert not {tuple(r) for r in om} & {(a, b) for a in grid for b in grid}
    assert (s["science_lo"] <= s["science_hi"]).all()
    again = suggest.suggest(v, 4, exclude=[{"science": a, "coding": b} for a, b in om])
    assert not {tuple(r) for r in again[["ω_science", "ω_coding"]].to_numpy()} & {tuple(r) for r in om}
    assert suggest.suggest(v, 4).equals(s)  # seeded: the same batch again


# --- the figure ---------------------------------------------------------------------------------
def _front(n=3):
    x = np.linspace(10, 30, n)
    y = 40 - x
    return pd.DataFrame({"science": x, "science_lo": x - 2, "science_hi": x + 3,
                         "coding": y, "coding_lo": y - 1, "coding_hi": y + 2,
                         "label": [f"p{i}" for i in range(n)]})


def test_band_polygon_closes_around_the_front():
    f = _front()
    bx, by = band_polygon(f, "science", "coding")
    assert len(bx) == 2 * len(f) + 1 and (bx[0], by[0]) == (bx[-1], by[-1])
    assert list(bx[:3]) == list(f["science_hi"]) and list(bx[3:6]) == list(f["science_lo"][::-1])
    bx, by = band_polygon(_front(1), "science", "coding")  # one point: its box
    assert sorted(set(bx)) == [8, 13] and sorted(set(by)) == [29, 32]


def test_front_figure_marks_predicted_apart_from_measured():
    measured = pd.DataFrame({"science": [12.0, 20.0, 5.0], "coding": [20.0, 15.0, 40.0],
                             "label": ["a", "b", "c"], "feasible": [True, True, False]})
    sug = pd.DataFrame({"science": [25.0], "coding": [16.0], "label": ["s"]})
    fig = front_figure(measured, _front(), "science", "coding", suggested=sug, floor=("general", 55.0))
    by = {t.name: t for t in fig.data}
    assert set(by) == {NAMES["band"], NAMES["front"], NAMES["measured"], NAMES["infeasible"],
                       NAMES["suggested"]}
    assert by[NAMES["band"]].fill == "toself"
    assert list(by[NAMES["front"]].error_x.array) == [3, 3, 3]
    assert list(by[NAMES["front"]].error_x.arrayminus) == [2, 2, 2]
    assert by[NAMES["front"]].line.dash == "dash" and "predicted" in by[NAMES["front"]].hovertext[0]
    assert list(by[NAMES["measured"]].x) == [12, 20] and list(by[NAMES["infeasible"]].x) == [5]
    assert not fig.layout.shapes  # the floor is on general, not an axis of this chart
    fig = front_figure(measured.assign(general=[56, 57, 50]), None, "general", "science",
                       floor=("general", 55.0))
    assert [t.name for t in fig.data] == [NAMES["measured"], NAMES["infeasible"]]  # no front: none drawn
    assert fig.layout.shapes[0].x0 == 55.0
    assert front_figure(measured.iloc[0:0], None, "science", "coding").layout.annotations  # empty


def test_one_skill_is_charted_against_general_and_has_one_best_point():
    view = suggest.front_view(frame([], single=[0.25, 0.5, 0.75, 1.0]),
                              suggest.FrontRequest(("science",), delta=5.0), AXES)
    assert view.need == 3 and view.have == 5 and suggest.plot_axes(view) == ("general", "science")
    assert len(view.front) == 1  # one objective: its predicted best
    assert abs(view.front.iloc[0]["ω_science"] - 0.5) <= 0.1  # general 60 − 20 ω² ≥ 55
    assert suggest.lattice_step(2) == 0.05 and suggest.lattice_step(3) == 0.1
