"""One catalogue entry is all a new merge method needs: it shows in the sweep's method choices,
its points get their kind, order, title, colour and marker, and it appears in the Merge page's
menu, the trade-off chart, the best-of-each-method table and the tradeoffs page's
"open in Merge" link."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
import yaml

from ptm_core import catalogue
from ptm_core.analysis import figures, tables
from ptm_core.analysis.results import Results
from ptm_core.app import data, testkit
from ptm_core.app.synthetic import synthetic_frame
from ptm_core.orchestrate import sweep
from ptm_core.orchestrate.points import Grid, grid_points
from ptm_core.testing.store import FakeBuilder, fake_lab

DELLA = catalogue.Kind("della", "DELLA (test)", "#123456", "pentagon", method="della",
                       method_title="DELLA: a method added in one entry", merge_method="della",
                       sparse=True)


@pytest.fixture
def della(monkeypatch):
    monkeypatch.setattr(catalogue, "KINDS", dict(catalogue.KINDS))  # undone after the test
    return catalogue.register(DELLA)


def frame_with_della() -> pd.DataFrame:
    df = synthetic_frame()
    row = df[(df["kind"] == "ptm") & (df["label"] == "PTM science ω=0.5")].iloc[0].copy()
    row["kind"], row["label"], row["recipe_key"] = "della", "DELLA science ω=0.5", "della:1"
    row["general"] += 3.0  # off every other method's point, so it is the best of its own
    return pd.concat([df, row.to_frame().T], ignore_index=True)


def test_the_catalogue_matches_what_the_tables_used_to_say():
    assert catalogue.kind_order() == ["base", "general", "skill", "ptm", "linear", "wise_ft",
                                      "ties", "dare_ties", "dare_linear", "slerp", "nuslerp",
                                      "multislerp", "model_stock", "sce", "karcher", "cft", "rt"]
    assert {m: e.kind for m, e in catalogue.methods().items()} == {
        "task_arithmetic": "ptm", "linear": "linear", "wise_ft": "wise_ft", "ties": "ties",
        "dare_ties": "dare_ties", "dare_linear": "dare_linear", "slerp": "slerp",
        "nuslerp": "nuslerp", "multislerp": "multislerp", "model_stock": "model_stock",
        "sce": "sce", "karcher": "karcher"}
    assert catalogue.sparse_methods() == ("ties", "dare_ties", "dare_linear")
    assert [m for m, e in catalogue.methods().items() if e.one_skill] == \
        ["linear", "wise_ft", "slerp", "nuslerp"]
    assert [m for m, e in catalogue.methods().items() if not e.weighted] == \
        ["model_stock", "sce", "karcher"]
    assert catalogue.method("wise_ft").merge_method == "task_arithmetic"
    assert catalogue.curve_kinds() == ("ptm", "linear", "wise_ft", "slerp", "nuslerp", "multislerp")
    assert catalogue.curve_of("ties") == "ptm" and catalogue.curve_of("linear") == "linear"
    with pytest.raises(ValueError, match="needs a method"):
        catalogue.register(catalogue.Kind("half", "Half", "#000000"))
    with pytest.raises(ValueError, match="no ω curve"):
        catalogue.register(catalogue.Kind("odd", "Odd", "#000000", method="odd",
                                          merge_method="karcher", form="unweighted", curve=True))


def test_a_new_method_reaches_the_sweep(della, tmp_path):
    assert "della" in sweep.build_parser().format_help()
    exp, _, _ = fake_lab(tmp_path)
    pts, notes = grid_points(exp, FakeBuilder(), Grid(omegas=[0.5], methods=["della"],
                                                      baselines=False, references=False))
    assert notes == [] and [p.kind for p in pts] == ["della"] * len(exp.skills)
    recipe = yaml.safe_load(pts[0].recipe_yaml)
    assert recipe["merge_method"] == "della" and recipe["parameters"]["density"] == 0.5
    assert pts[0].label.startswith("della ω_")


def test_a_new_method_reaches_the_analysis(della):
    res = Results.from_frame(frame_with_della())
    assert res.lookup("della", {"science": 0.5})["label"] == "DELLA science ω=0.5"
    fig = figures.tradeoff_figure(res, "science")
    trace, = [t for t in fig.data if t.name == "DELLA (test)"]
    assert trace.marker.color == "#123456" and trace.marker.symbol == "pentagon"
    best = tables.best_of_each_method(res, "science")
    assert "Best DELLA (test)" in set(best["method"])


def test_a_new_method_is_in_the_merge_menu_and_renders(della, tmp_path, monkeypatch):
    path = testkit.write_frame_experiment(tmp_path, frame=frame_with_della())
    for k, v in testkit.app_env(path, tmp_path).items():
        monkeypatch.setenv(k, v)
    assert data.method_menu()["della"] == DELLA.method_title
    at = testkit.run_page(tmp_path, "merge")
    menu = at.selectbox(key="merge:method")
    assert "della" in menu.options or DELLA.method_title in menu.options
    menu.set_value("della").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.slider(key="merge:density").value == 0.5  # sparse: the density control shows
    at.select_slider(key="merge:omega:science:ptm").set_value(0.5).run()
    for s in ("coding", "safety"):
        at.select_slider(key=f"merge:omega:{s}:ptm").set_value(0.0).run()
    assert any("Measured" in s.value for s in at.success)  # the della row is found


def test_a_new_methods_point_opens_in_merge_from_the_tradeoffs_page(della, tmp_path, monkeypatch):
    path = testkit.write_frame_experiment(tmp_path, frame=frame_with_della())
    for k, v in testkit.app_env(path, tmp_path).items():
        monkeypatch.setenv(k, v)
    at = testkit.run_page(tmp_path, "tradeoffs")
    res = Results.from_frame(frame_with_della())
    at.session_state["tradeoffs:selected:science"] = int(res.lookup("della", {"science": 0.5})["row_id"])
    at.run()
    at.button(key="tradeoffs:open:science").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Merge & export"]
    assert at.selectbox(key="merge:method").value == "della"


def test_the_spherical_and_unweighted_entries_reach_the_sweep(tmp_path):
    help_text = sweep.build_parser().format_help()
    assert "slerp" in help_text and "model_stock" in help_text
    exp, _, _ = fake_lab(tmp_path)
    pts, notes = grid_points(exp, FakeBuilder(), Grid(
        omegas=[0.0, 0.5], methods=["slerp", "model_stock", "karcher"], baselines=False,
        references=False))
    assert notes == []
    slerp = [p for p in pts if p.kind == "slerp"]
    assert [(p.skills, p.omega) for p in slerp] == [
        (("science",), {"science": 0.0}), (("science",), {"science": 0.5}),
        (("coding",), {"coding": 0.0}), (("coding",), {"coding": 0.5})]
    r = yaml.safe_load(slerp[1].recipe_yaml)
    assert r["merge_method"] == "slerp" and r["parameters"] == {"t": 0.5}
    assert r["base_model"] == exp.general.model == r["models"][0]["model"]
    stock = [p for p in pts if p.kind == "model_stock"]  # no ω grid: one point per skill set
    assert [p.skills for p in stock] == [("science",), ("coding",), ("science", "coding")]
    assert stock[2].omega == {"science": 1.0, "coding": 1.0}
    r = yaml.safe_load(stock[2].recipe_yaml)
    assert r["base_model"] == exp.base and [m["model"] for m in r["models"]] == [
        exp.general.model, exp.skills["science"].model, exp.skills["coding"].model]
    karcher = yaml.safe_load([p for p in pts if p.kind == "karcher"][0].recipe_yaml)
    assert "base_model" not in karcher


def test_an_unweighted_method_takes_skills_not_omega_on_the_merge_page(tmp_path, monkeypatch):
    path = testkit.write_frame_experiment(tmp_path)
    for k, v in testkit.app_env(path, tmp_path).items():
        monkeypatch.setenv(k, v)
    req = data.MergeRequest.make("model_stock", {"science": 0.3, "coding": 0.0})
    assert req.omegas == (("science", 1.0), ("coding", 0.0)) and "Model Stock" in req.label()
    with pytest.raises(data.AppDataError, match="at least one skill"):
        data.MergeRequest.make("sce", {"science": 0.0})
    at = testkit.run_page(tmp_path, "merge")
    at.selectbox(key="merge:method").set_value("model_stock").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [s for s in at.select_slider if s.key and s.key.startswith("merge:omega")]
    assert at.checkbox(key="merge:include:science").value is True
    at.checkbox(key="merge:include:coding").check().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Model Stock θ_G + science + coding" in h.value for h in at.subheader)
    at.selectbox(key="merge:method").set_value("slerp").run()
    assert not at.exception, [e.value for e in at.exception]
