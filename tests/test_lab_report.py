"""`python -m ptm_core lab report`: the lab's counterparts of the paper's tables, read from results."""

from __future__ import annotations

import json
import pytest

from ptm_core.analysis.paper import PAPER_SKILLS, paper_frame
from ptm_core.analysis.results import Results
from ptm_core.app.synthetic import synthetic_frame
from ptm_core.lab import report


@pytest.fixture(scope="module")
def text() -> str:
    res = Results.from_frame(synthetic_frame(), skills=["science", "coding", "safety"])
    return report.report(res, Results.from_frame(paper_frame(), skills=PAPER_SKILLS))


def rows_of(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


def test_every_paper_table_has_its_counterpart(text):
    for title in ("Tables 2-3", "Tables 4 and 6", "Table 5", "merge curves"):
        assert title in text
    frame = synthetic_frame()
    g = frame[frame["kind"] == "general"].iloc[0]
    # θ_G's measured scores, with the paper's Tülu numbers beside them (Table 4)
    row = rows_of(text, "θ_G")[-1]
    assert row[1] == f"{g['general']:.1f} (49.9)" and row[5] == f"{g['xstest_safe']:.1f} (99.2)"


def test_all_three_row_is_the_measured_merge(text):
    frame = synthetic_frame()
    ptm3 = frame[(frame["kind"] == "ptm") & (frame["skills"] == "science+coding+safety")].iloc[0]
    row = rows_of(text, "PTM (all 3)")[0]
    assert row[1] == f"{ptm3['general']:.1f} (51.1)"
    ties = rows_of(text, "TIES PTM (all 3)")[0]
    assert ties[2].endswith("(28.0)") and not ties[2].startswith("–")
    dare = rows_of(text, "DARE (linear) PTM (all 3)")[0]  # the synthetic frame has DARE (linear)
    assert dare[1].endswith("(49.9)") and not dare[1].startswith("–")


def test_curve_table_lists_every_cached_omega(text):
    section = text.split("**coding** (heuristic", 1)[1].split("**safety**", 1)[0]
    omegas = [line.split("|")[1].strip() for line in section.splitlines()
              if line.startswith("| ") and not line.startswith("| ω")]
    frame = synthetic_frame()
    ptm = frame[(frame["kind"] == "ptm") & (frame["skills"] == "coding")]
    want = sorted({0.0} | {float(json.loads(o)["coding"]) for o in ptm["omega"]})
    assert [float(o) for o in omegas] == want


def test_pairs_sit_next_to_the_paper_pair_with_the_same_skills(text):
    """Table 5 names pairs in another order ("Safety and Coding"): matched by skill set."""
    row = rows_of(text, "PTM (coding + safety)")[0]
    assert row[2].endswith("(18.8)") and row[1].endswith("(52.1)")
