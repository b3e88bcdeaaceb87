"""The app on the shipped lab (data/lab/lab.yml + cached_runs/lab.jsonl), as a fresh clone sees it:
a new store that imports the shipped results, no CFT/RT checkpoints, no worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptm_core.app import testkit
from ptm_core.app.testkit import current_point, plotly_specs, run_page

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "data" / "lab" / "lab.yml"
SHIPPED = REPO / "cached_runs" / "lab.jsonl"
pytestmark = pytest.mark.skipif(not (LAB.exists() and SHIPPED.exists()),
                                reason="lab results not shipped yet")
PAGES = ["tradeoffs", "refusals", "interference", "merge", "search", "runs"]


@pytest.fixture
def lab_app(tmp_path, monkeypatch):
    for k, v in testkit.app_env("lab", tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PTM_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("PTM_LAB_EXPERIMENT", str(LAB))
    # the repository is the root, as under `make run` (the CFT/RT references point into runs/)
    monkeypatch.setenv("PTM_APP_ROOT", str(REPO))

    def run(page: str):
        at = run_page(tmp_path, page)
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        return at
    return run


def shipped(kind: str, omega: dict, suite: str) -> dict:
    """The metrics of one shipped record, read straight from the JSONL file."""
    want = json.dumps(omega, sort_keys=True, separators=(",", ":"))
    for line in SHIPPED.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == kind and r["suite"] == suite and r["omega"] and \
                json.dumps(json.loads(r["omega"]), sort_keys=True, separators=(",", ":")) == want:
            return r["metrics"]
    raise AssertionError(f"no shipped {kind} {omega} {suite}")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_shipped_lab(lab_app, page):
    at = lab_app(page)
    if page in ("tradeoffs", "refusals"):
        assert plotly_specs(at), "no chart"


def test_lab_slider_lands_on_the_shipped_measurement(lab_app):
    at = lab_app("tradeoffs")
    key = "tradeoffs:omega:coding:ptm"
    at.select_slider(key=key).set_value(0.3).run()
    a = current_point(plotly_specs(at)[1])
    at.select_slider(key=key).set_value(1.0).run()
    b = current_point(plotly_specs(at)[1])
    assert a != b
    general = shipped("ptm", {"coding": 1.0}, "lab_general")["exact_match"]
    coding = shipped("ptm", {"coding": 1.0}, "lab_coding")["pass@10"]
    assert b == pytest.approx((general, coding))


def test_lab_merge_page_shows_measured_scores_without_a_worker(lab_app):
    at = lab_app("merge")
    for s in ("science", "safety"):
        at.select_slider(key=f"merge:omega:{s}:ptm").set_value(0.0)
    at.select_slider(key="merge:omega:coding:ptm").set_value(0.5).run()
    assert any("Measured" in s.value for s in at.success)
    general = [m for m in at.metric if m.label == "General"][0]
    want = shipped("ptm", {"coding": 0.5}, "lab_general")["exact_match"]
    assert float(str(general.value).split()[0]) == pytest.approx(want, abs=0.05)
