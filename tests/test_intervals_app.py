"""Intervals in the app: error bars on the trade-off charts, and the best-of-method tables (the
app's and the lab report's) saying whether the best is separable from the runner-up."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from ptm_core.analysis import figures, tables
from ptm_core.analysis.paper import PAPER_SKILLS, paper_frame
from ptm_core.analysis.results import Results
from ptm_core.app.synthetic import synthetic_frame

AXES = ["general", "science", "coding", "safety", "xstest_safe"]


def with_intervals(frame: pd.DataFrame, below: float = 2.0, above: float = 3.0) -> pd.DataFrame:
    """Asymmetric intervals [score - below, score + above] on every axis."""
    frame = frame.copy()
    for a in AXES:
        frame[f"{a}_lo"] = frame[a] - below
        frame[f"{a}_hi"] = frame[a] + above
    return frame


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_interval_columns_are_not_axes():
    res = Results.from_frame(with_intervals(synthetic_frame()))
    assert res.axes == AXES


def test_tradeoff_traces_carry_asymmetric_error_arrays():
    res = Results.from_frame(with_intervals(synthetic_frame()))
    fig = figures.tradeoff_figure(res, "science")
    for name in ("PTM (task arithmetic)", "CFT", "θ_G (general)"):
        t = trace(fig, name)
        for bars in (t.error_x, t.error_y):
            assert bars.visible and bars.symmetric is False
            assert np.allclose(bars.array, 3.0) and np.allclose(bars.arrayminus, 2.0)
            assert len(bars.array) == len(t.x)
    json.loads(fig.to_json())  # NaN-free arrays serialize
    ptm = trace(fig, "PTM (task arithmetic)")
    assert f"{ptm.y[1]:.1f} [{ptm.y[1] - 2:.1f}–{ptm.y[1] + 3:.1f}, 95 %]" in ptm.hovertext[1]


def test_rows_without_an_interval_get_no_bar_and_frames_without_any_hide_them():
    frame = with_intervals(synthetic_frame())
    cft = frame["kind"] == "cft"
    frame.loc[cft, ["general_lo", "general_hi"]] = np.nan
    res = Results.from_frame(frame)
    bars = trace(figures.tradeoff_figure(res, "science"), "CFT").error_x
    assert np.all(np.isnan(np.asarray(bars.array, dtype=float))) or not bars.visible
    plain = figures.tradeoff_figure(Results.from_frame(synthetic_frame()), "science")
    assert trace(plain, "PTM (task arithmetic)").error_y.visible is False


def two_methods(gap: float, width: float) -> Results:
    """θ_G, one CFT and one PTM point on science, PTM ahead by `gap` on both axes; every
    interval is score ± width."""
    rows = [
        {"kind": "general", "skills": "", "omega": None, "label": "θ_G", "general": 50.0,
         "science": 20.0},
        {"kind": "cft", "skills": "science", "omega": None, "label": "cft", "data_size": 10,
         "train_steps": 5, "general": 50.0, "science": 40.0},
        {"kind": "ptm", "skills": "science", "omega": json.dumps({"science": 0.5}), "label": "ptm",
         "general": 50.0 + gap, "science": 40.0 + gap},
    ]
    df = pd.DataFrame(rows)
    for a in ("general", "science"):
        df[f"{a}_lo"], df[f"{a}_hi"] = df[a] - width, df[a] + width
    return Results.from_frame(df)


def test_best_table_marks_an_overlapping_pair_not_separable():
    best = tables.best_of_each_method(two_methods(gap=1.0, width=2.0), "science").set_index("method")
    assert best.loc["Best PTM (task arithmetic)", tables.SEPARABLE] == "not separable from Best CFT"
    assert best.loc["Best CFT", tables.SEPARABLE] == ""
    assert best.loc["Best PTM (task arithmetic)", "science_lo"] == 39.0


def test_best_table_marks_a_separated_pair_separable():
    best = tables.best_of_each_method(two_methods(gap=10.0, width=2.0), "science").set_index("method")
    assert best.loc["Best PTM (task arithmetic)", tables.SEPARABLE] == "separable from Best CFT"


def test_one_separating_axis_is_enough_and_skill_criterion_looks_at_the_skill_only():
    res = two_methods(gap=1.0, width=2.0)
    f = res.frame.copy()
    ptm = f["kind"] == "ptm"
    f.loc[ptm, "general"] = 60.0
    f.loc[ptm, ["general_lo", "general_hi"]] = [58.0, 62.0]  # disjoint from CFT's 48-52
    res = Results.from_frame(f.drop(columns=["row_id", "omega_d", "skill_set"]))
    avg = tables.best_of_each_method(res, "science").set_index("method")
    assert avg.loc["Best PTM (task arithmetic)", tables.SEPARABLE] == "separable from Best CFT"
    skill = tables.best_of_each_method(res, "science", criterion="skill").set_index("method")
    assert skill.loc["Best PTM (task arithmetic)", tables.SEPARABLE] == "not separable from Best CFT"


def test_best_table_without_intervals_says_so():
    paper = Results.from_frame(paper_frame(), skills=PAPER_SKILLS)
    best = tables.best_of_each_method(paper, "science")
    verdicts = [v for v in best[tables.SEPARABLE] if v]
    assert len(verdicts) == 1 and verdicts[0].startswith("no interval from ")


def test_formatted_best_table_shows_intervals_as_text():
    best = tables.best_of_each_method(two_methods(gap=1.0, width=2.0), "science")
    shown = tables.format_best_table(best).set_index("method")
    assert shown.loc["Best CFT", "Science 95 % CI"] == "38.0–42.0"
    assert shown.loc["Best CFT", "Science"] == 40.0
    assert not [c for c in shown.columns if c.endswith(("_lo", "_hi"))]
    assert list(shown.columns).index("Science 95 % CI") == list(shown.columns).index("Science") + 1


def test_lab_report_prints_intervals_and_the_verdict():
    from ptm_core.lab import report

    res = Results.from_frame(with_intervals(synthetic_frame()), skills=["science", "coding", "safety"])
    paper = Results.from_frame(paper_frame(), skills=PAPER_SKILLS)
    text = report.best_rows(res, paper, "science")
    header = text.splitlines()[0]
    assert "lab best vs runner-up" in header
    # cells split at unescaped pipes ("|D_i\\|" is escaped inside a cell)
    rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
            for line in text.splitlines()[2:]]
    cft = next(r for r in rows if r[0] == "Best CFT")
    score = float(cft[2].split(" [")[0])
    assert cft[2] == f"{score:.1f} [{score - 2:.1f}–{score + 3:.1f}]"
    assert sum(1 for r in rows if r[5].startswith(("separable from", "not separable from"))) == 1
