"""Pure parts of the app: the results frame, look-ups, Pareto, estimates, figures and tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly
import plotly.graph_objects as go
import pytest

from ptm_core.analysis import figures, tables
from ptm_core.analysis.paper import PAPER_SKILLS, paper_frame
from ptm_core.analysis.results import Results, pareto_front, point_key
from ptm_core.app.synthetic import D_SIZES, G_SIZE, synthetic_frame


@pytest.fixture(scope="module")
def res() -> Results:
    return Results.from_frame(synthetic_frame())


@pytest.fixture(scope="module")
def paper() -> Results:
    return Results.from_frame(paper_frame(), skills=PAPER_SKILLS)


def trace(fig: go.Figure, name_prefix: str):
    found = [t for t in fig.data if (t.name or "").startswith(name_prefix)]
    assert found, f"no trace {name_prefix!r} in {[t.name for t in fig.data]}"
    return found[0]


# --- results -----------------------------------------------------------------------------------
def test_frame_is_indexed_by_method_and_omega(res):
    assert res.skills == ["science", "coding", "safety"]
    assert res.axes == ["general", "science", "coding", "safety", "xstest_safe"]
    row = res.lookup("ptm", {"science": 0.3})
    assert row["label"] == "PTM science ω=0.3"
    # zero weights drop out: ω_coding = 0 is the single-skill science merge
    assert res.lookup("ptm", {"science": 0.3, "coding": 0.0})["row_id"] == row["row_id"]
    # every ω at 0 is θ_G
    assert res.lookup("ptm", {"science": 0.0})["kind"] == "general"
    assert res.lookup("ptm", {"science": 0.35}) is None
    assert res.lookup("linear", {"coding": 0.5})["kind"] == "linear"
    assert point_key("ptm", {"a": 0.30000001}) == point_key("ptm", {"a": 0.3})


def test_grid_and_heuristic(res):
    h = D_SIZES["science"] / G_SIZE
    assert res.heuristic_omega("science") == pytest.approx(h)
    grid = res.grid("science")
    assert grid[0] == 0.0 and grid[-1] == 1.0 and round(h, 4) in grid
    assert len(grid) == 12  # 0, 0.1 ... 1.0 and the heuristic


def test_pareto_front_is_the_non_dominated_set():
    xs = [1, 2, 3, 2, 0.5, 3]
    ys = [5, 4, 1, 2, 6, 1]
    front = pareto_front(xs, ys)
    assert sorted(front) == [0, 1, 4, 5] or sorted(front) == [0, 1, 2, 4]
    pts = list(zip(xs, ys))
    for i in front:
        assert not any(a >= pts[i][0] and b >= pts[i][1] and (a, b) != pts[i] for a, b in pts)


def test_one_estimator_for_every_source(res):
    from ptm_core.store.estimate import estimate_axes, estimate_point

    g = res.general_row()
    general = {a: res.score(g, a) for a in res.axes}
    est = lambda kind, om: estimate_point(res.frame, kind, om, axes=res.axes, general=general)  # noqa: E731
    a = res.lookup("ptm", {"science": 0.3})
    assert est("ptm", {"science": 0.3}) == {ax: pytest.approx(a[ax]) for ax in res.axes}  # measured
    mid = est("ptm", {"science": 0.35})  # the store's estimator, not a second interpolation
    assert mid == {ax: e.value for ax, e in estimate_axes(res.frame[["kind", "skills", "omega", *res.axes]],
                                                          "ptm", {"science": 0.35}, res.axes).items()}
    assert mid["science"] != pytest.approx((a["science"] + res.lookup("ptm", {"science": 0.4})["science"]) / 2)
    # TIES has no single-skill curve here: read on task arithmetic's
    assert est("ties", {"science": 0.3}) == est("ptm", {"science": 0.3})
    # a science+coding merge is measured (at the heuristic ω): that curve answers
    pair = res.frame[res.frame["skills"] == "science+coding"].iloc[0]
    assert est("ptm", {"science": 0.3, "coding": 0.3})["general"] == pytest.approx(pair["general"])
    # none measured: each skill's change from θ_G, added (no interference assumed)
    singles = res.frame[res.frame["skill_set"].map(len) <= 1]
    both = estimate_point(singles, "ptm", {"science": 0.3, "coding": 0.3}, axes=res.axes, general=general)
    c = res.lookup("ptm", {"coding": 0.3})
    assert both["general"] == pytest.approx(a["general"] + c["general"] - g["general"])
    assert est("ptm", {"science": 0.0, "coding": 0.0}) == general
    assert est("cft", {"science": 0.3}) is None  # not a merge


# --- trade-off figure ------------------------------------------------------------------------------
def test_tradeoff_figure_has_every_element(res, paper):
    fig = figures.tradeoff_figure(res, "science", current_omega=0.3, reference=paper)
    names = [t.name for t in fig.data]
    for prefix in ("Pareto frontier", "PTM", "Linear interpolation", "WiSE-FT", "CFT", "RT",
                   "θ_G", "heuristic ω", "Paper", "current"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    ptm = trace(fig, "PTM")
    assert "ω = 0.3" in " ".join(ptm.hovertext)  # ω on hover
    cft = trace(fig, "CFT")
    assert all("data size" in h and "training steps" in h for h in cft.hovertext)
    assert len(cft.x) == 5 and len(trace(fig, "RT").x) == 5
    row = res.lookup("ptm", {"science": 0.3})
    cur = trace(fig, "current")
    assert (cur.x[0], cur.y[0]) == (row["general"], row["science"])
    # clicking a point maps back to its row
    assert int(ptm.customdata[1]) == int(res.curve("ptm", "science").iloc[1]["row_id"])


def test_slider_moves_the_highlighted_point(res):
    a = trace(figures.tradeoff_figure(res, "coding", current_omega=0.2), "current")
    b = trace(figures.tradeoff_figure(res, "coding", current_omega=0.8), "current")
    assert (a.x[0], a.y[0]) != (b.x[0], b.y[0])
    none = trace(figures.tradeoff_figure(res, "coding", current_omega=0.55), "current")
    assert len(none.x) == 0  # not cached: nothing highlighted (the merge page shows an estimate)


def test_heuristic_marker_sits_on_the_measured_point(res):
    h = res.heuristic_omega("safety")
    row = res.lookup("ptm", {"safety": h})
    m = trace(figures.tradeoff_figure(res, "safety"), "heuristic")
    assert (m.x[0], m.y[0]) == (row["general"], row["safety"])


def test_pareto_trace_only_uses_non_dominated_points(res):
    fig = figures.tradeoff_figure(res, "science")
    front = trace(fig, "Pareto frontier")
    xs, ys = np.asarray(front.x), np.asarray(front.y)
    assert np.all(np.diff(xs) >= 0) and np.all(np.diff(ys) <= 0)  # a staircase down and right


def test_paper_points_only_where_axes_agree(res, paper):
    fig = figures.tradeoff_figure(res, "coding", reference=paper)
    ref = trace(fig, "Paper")
    sources = " ".join(ref.hovertext)
    assert "Table 5, row 4" in sources  # PTM (Coding): general and coding
    assert "Table 2" not in sources  # science-only rows are not coding points


def test_estimate_is_drawn_open_and_named(res):
    fig = figures.tradeoff_figure(res, "science", current_point={
        "general": 40.0, "science": 30.0, "label": "x", "estimated": True})
    cur = trace(fig, "current")
    assert cur.name == "current (estimate)" and cur.marker.symbol == "circle-open"


def test_empty_results_give_a_message_not_an_error():
    empty = Results.from_frame(pd.DataFrame())
    fig = figures.tradeoff_figure(empty, "science")
    assert fig.layout.annotations and "No" in fig.layout.annotations[0].text
    assert len(figures.refusal_figures(empty)) == 2


def test_refusal_figures(res, paper):
    gen, saf = figures.refusal_figures(res, reference=paper)
    assert gen.layout.xaxis.title.text == "General"
    assert saf.layout.xaxis.title.text.startswith("Safety")
    for fig in (gen, saf):
        assert fig.layout.yaxis.title.text == "XSTest-safe compliance"
        names = [t.name for t in fig.data]
        assert any(n.startswith("heuristic") for n in names)
        assert any(n.startswith("Multi-skill") for n in names)


def test_chart_config_downloads_png_or_svg():
    for fmt in ("png", "svg"):
        cfg = figures.chart_config("my chart", fmt)
        assert cfg["toImageButtonOptions"]["format"] == fmt
        assert cfg["toImageButtonOptions"]["filename"] == "my chart"


def test_composed_figure_equals_the_pure_one(res):
    """The app's fast path (cached figure + swapped highlight) draws what the builder draws."""
    from ptm_core.app import ui
    fast = ui.tradeoff_fig("science", 0.4, None, res, None).to_dict()
    pure = json.loads(figures.tradeoff_figure(res, "science", current_omega=0.4).to_json())
    fast = json.loads(json.dumps(fast, cls=plotly.utils.PlotlyJSONEncoder))
    assert [t.get("name") for t in fast["data"]] == [t.get("name") for t in pure["data"]]
    assert fast["data"][-1]["x"] == pure["data"][-1]["x"]
    assert fast["data"][-1]["y"] == pure["data"][-1]["y"]


# --- tables ------------------------------------------------------------------------------------
def test_best_of_each_method_reproduces_paper_table_2(paper):
    best = tables.best_of_each_method(paper, "science", criterion="skill").set_index("method")
    cft = best.loc["Best CFT"]
    # Table 2: best CFT 33.7 general, 40.6 science; Table 3: -32.5 % general vs Tülu (49.9)
    assert (cft["general"], cft["science"]) == (33.7, 40.6)
    assert cft["% Δ general"] == pytest.approx(-32.5, abs=0.05)
    assert best.loc["θ_G (general only)", "general"] == 49.9
    # the paper's own "best" rows compete (they carry no ω), and their pool cost is the one
    # reported, not a sum over duplicate rows of one model
    avg = tables.best_of_each_method(paper, "science").set_index("method")
    ptm = avg.loc["Best PTM (task arithmetic)"]
    assert (ptm["general"], ptm["science"], ptm["training steps"]) == (47.1, 38.2, 479)
    assert avg.loc["Best CFT", "training steps"] == 1005


def test_best_falls_back_to_points_where_the_general_model_scores_zero():
    """The lab's θ_G scores 0 on every skill, so % change is undefined; best still ranks."""
    frame = synthetic_frame()
    general = frame["kind"] == "general"
    frame.loc[general, "science"] = 0.0
    best = tables.best_of_each_method(Results.from_frame(frame), "science").set_index("method")
    assert "Best CFT" in best.index and "Best PTM (task arithmetic)" in best.index
    assert math.isnan(best.loc["Best CFT", "% Δ science"])
    cft = frame[(frame["kind"] == "cft") & frame["skills"].astype(str).str.contains("science")]
    gain = (cft["general"] - frame.loc[general, "general"].iloc[0] + cft["science"]) / 2
    assert best.loc["Best CFT", "science"] == cft.loc[gain.idxmax(), "science"]


def test_omega_zero_is_theta_g_not_a_candidate_of_the_method():
    frame = synthetic_frame()
    top = {"kind": "ptm", "skills": "science", "omega": json.dumps({"science": 0.0}),
           "label": "ω=0", "general": 99.0, "science": 99.0}
    frame = pd.concat([frame, pd.DataFrame([top])], ignore_index=True)
    best = tables.best_of_each_method(Results.from_frame(frame), "science").set_index("method")
    assert best.loc["Best PTM (task arithmetic)", "detail"] != "ω science=0"
    assert best.loc["Best PTM (task arithmetic)", "general"] < 99.0


def test_pool_steps_follow_the_paper(res):
    best = tables.best_of_each_method(res, "science").set_index("method")
    cft = res.of_kind("cft", "science")
    assert best.loc["Best CFT", "training steps"] == cft["train_steps"].sum()  # Σ|D_i|
    rt = res.of_kind("rt", "science")
    assert best.loc["Best RT", "training steps"] == rt["train_steps"].sum()  # n|G| + Σ|D_i|
    ptm = best.loc["Best PTM (task arithmetic)", "training steps"]
    assert ptm == res.of_kind("skill", "science")["train_steps"].iloc[0]  # |D| once
    assert ptm < best.loc["Best CFT", "training steps"] < best.loc["Best RT", "training steps"]


def test_interference_table_reproduces_paper_table_5(paper):
    table, missing = tables.interference_table(paper)
    assert not missing
    cell = table[(table["skills"] == "coding+safety") & (table["metric"] == "science")].iloc[0]
    # science is neither skill: the reference is the mean of PTM (Coding) and PTM (Safety)
    assert cell["value"] == 18.8
    assert cell["reference"] == pytest.approx((24.9 + 25.6) / 2)
    assert cell["delta"] == pytest.approx(18.8 - 25.25)
    own = table[(table["skills"] == "science+safety") & (table["metric"] == "science")].iloc[0]
    assert own["reference"] == 34.8  # PTM (Science)
    fig = figures.interference_figure(table)
    assert isinstance(fig.data[0], go.Heatmap)
    assert "18.8" in json.dumps(fig.data[0].text.tolist())
    scores = tables.scores_table(paper)
    assert scores.loc["PTM (coding + safety)", "science"] == 18.8
    assert list(scores.index[:4]) == ["θ_G", "PTM (science)", "PTM (coding)", "PTM (safety)"]


def test_interference_at_unmeasured_omega_reports_missing(res):
    table, missing = tables.interference_table(res, {"science": 0.5, "coding": 0.5, "safety": 0.5})
    assert table.empty
    assert {m["skills"] for m in missing} >= {("science", "coding"), ("science", "safety"),
                                              ("coding", "safety")}


def test_derived_table3_points_are_marked(paper):
    d = paper.frame[paper.frame["source"].str.startswith("Table 3")]
    assert len(d) == 12 and d["source"].str.contains("derived").all()
    assert d[["general", "science", "coding", "safety", "xstest_safe"]].max().max() <= 100
    pm = paper.frame[paper.frame["label"] == "Best PTM (Ex. Ref.)"].iloc[0]
    assert pm["xstest_safe"] == pytest.approx(99.2 * (1 - 0.0645), abs=0.01)
    assert math.isnan(pm["general"])
