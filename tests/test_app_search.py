"""The Search page under AppTest: on a store experiment whose two-skill points are measured by
the fake worker (known closed-form scores), it draws the predicted front with its band beside
the measured points, suggests valid ω, queues them as jobs, and opens a front point in Merge &
export; with too few points it says so instead of drawing a front."""

from __future__ import annotations

import numpy as np
import pytest

from ptm_core.app import data, testkit
from ptm_core.app.testkit import plotly_array, plotly_specs, run_page

GRID = [0.0, 0.25, 0.5, 0.75, 1.0]


def true_scores(ws: float, wc: float) -> dict[str, float]:
    """ptm_core.testing.store.quadratic_score for the fake lab's skills science and coding."""
    return {"general": 60 - 20 * (ws ** 2 + wc ** 2), "science": 20 + 70 * ws - 30 * ws ** 2,
            "coding": 20 + 70 * wc - 30 * wc ** 2}


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A fake lab in the store; `measure(omegas)` measures task-arithmetic points over science +
    coding through the real worker loop (fake engine and suites)."""
    import ptm_core.testing.store as T
    from ptm_core.orchestrate.jobs import enqueue_points
    from ptm_core.orchestrate.points import method_point
    from ptm_core.orchestrate.worker import run_worker
    from ptm_core.store.db import Store

    monkeypatch.setenv("PTM_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("PTM_CACHED_RUNS", str(tmp_path / "no_cached_runs"))
    path = T.write_experiment(tmp_path)
    for k, v in testkit.app_env(path, tmp_path).items():
        monkeypatch.setenv(k, v)
    exp, b, resolver = T.fake_lab(tmp_path)
    store = Store(tmp_path / "store.sqlite")
    monkeypatch.setitem(data.WIRING, "builder", b)
    monkeypatch.setitem(data.WIRING, "suite_resolver", resolver)
    monkeypatch.setitem(data.WIRING, "fingerprinter", T.fake_fingerprinter)

    def work():
        run_worker(store, lambda e: T.FakeEngine(), resolver, once=True, builder=b,
                   fingerprinter=T.fake_fingerprinter)

    def measure(omegas):
        pts = [method_point(exp, b, "task_arithmetic", {"science": s, "coding": c}) for s, c in omegas]
        enqueue_points(store, exp, pts, resolver, T.fake_fingerprinter, builder=b,
                       axes=["general", "science", "coding"])
        work()
    return store, measure, work


def traces(at) -> dict[str, dict]:
    spec = [s for s in plotly_specs(at) if "predicted front" in s["layout"]["title"]["text"]
            or "measured points" in s["layout"]["title"]["text"]]
    assert len(spec) == 1, [s["layout"]["title"]["text"] for s in plotly_specs(at)]
    out = {}
    for t in spec[0]["data"]:
        t = dict(t)
        for k in ("x", "y"):
            t[k] = plotly_array(t.get(k))
        for k in ("error_x", "error_y"):
            if isinstance(t.get(k), dict):
                t[k] = {**t[k], **{a: plotly_array(t[k][a]) for a in ("array", "arrayminus") if a in t[k]}}
        out[t["name"]] = t
    return out


def test_the_page_draws_the_predicted_front_with_its_band(tmp_path, lab):
    store, measure, _ = lab
    measure([(s, c) for s in GRID for c in GRID])  # a 5 x 5 grid, 25 points
    at = run_page(tmp_path, "search")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.multiselect(key="search:skills").value == ["science", "coding"]
    t = traces(at)
    # measured points: the 25 grid points, split by the floor general ≥ 60 − 5
    feas = [(s, c) for s in GRID for c in GRID if true_scores(s, c)["general"] >= 55]
    assert len(t["measured"]["x"]) == len(feas)
    assert len(t["measured"]["x"]) + len(t["measured, below the floor"]["x"]) == 25
    np.testing.assert_allclose(
        sorted(zip(t["measured"]["x"], t["measured"]["y"])),
        sorted((true_scores(s, c)["science"], true_scores(s, c)["coding"]) for s, c in feas))
    # the predicted front: marked as predicted, error bars and a closed, filled band
    front, band = t["predicted front (surrogate mean)"], t["predicted front, 95 % band"]
    assert front["line"]["dash"] == "dash" and "predicted" in front["hovertext"][0]
    assert band["fill"] == "toself" and len(band["x"]) == 2 * len(front["x"]) + 1
    assert front["error_x"]["visible"] and front["error_y"]["visible"]
    assert min(band["x"]) <= min(front["x"]) and max(band["y"]) >= max(front["y"])
    # ... which is near the truth: the front's ω keep general near the floor, and the band
    # holds the true scores at most of its points
    table = [r for r in at.dataframe if "p_feasible" in r.value.columns][0].value
    truth = [true_scores(s, c) for s, c in zip(table["ω_science"], table["ω_coding"])]
    assert all(abs(tr["general"] - 55) < 4 for tr in truth), table
    inside = [(r["science_lo"] <= tr["science"] <= r["science_hi"]) and
              (r["coding_lo"] <= tr["coding"] <= r["coding_hi"]) for (_, r), tr in zip(table.iterrows(), truth)]
    assert np.mean(inside) >= 0.8
    # it beats every measured feasible point somewhere: the front is not the measured set
    best_measured = max(true_scores(s, c)["science"] for s, c in feas if c >= 0.25)
    assert max(tr["science"] for tr, wc in zip(truth, table["ω_coding"]) if wc >= 0.25) > best_measured


def test_suggestions_are_valid_omega_and_queue_jobs(tmp_path, lab):
    store, measure, work = lab
    measure([(s, c) for s in (0, 0.5, 1) for c in (0, 0.5, 1)])
    at = run_page(tmp_path, "search")
    at.button(key="search:suggest").click().run()
    assert not at.exception and not at.error
    shown = [r for r in at.dataframe if "why" in r.value.columns][0].value
    assert len(shown) == 4
    om = shown[["ω_science", "ω_coding"]].to_numpy()
    assert np.all((om >= 0) & (om <= 1)) and np.allclose(om / 0.05, np.round(om / 0.05))
    measured = {(s, c) for s in (0, 0.5, 1) for c in (0, 0.5, 1)}
    assert not {tuple(r) for r in om} & measured and len({tuple(r) for r in om}) == 4
    assert "suggested next (predicted)" in traces(at)  # drawn on the chart at their predictions
    before = store.queue_counts("fakelab").get("queued", 0)
    at.button(key="search:queue").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Queued" in s.value for s in at.success)
    jobs = [j for j in store.jobs(experiment="fakelab", statuses=["queued"])]
    assert store.queue_counts("fakelab")["queued"] - before == len(jobs) >= 4
    labels = {j.label for j in jobs}  # one job per suite of each point
    assert len(labels) == 4, labels
    for w_s, w_c in om:
        assert any(f"{w_s:g}" in lab and f"{w_c:g}" in lab for lab in labels), (w_s, w_c, labels)
    # once measured, they are data: the page counts them and suggests other points
    work()
    at.button(key="search:suggest").click().run()
    assert any(f"{9 + 4} distinct ω measured" in c.value for c in at.caption)
    again = [r for r in at.dataframe if "why" in r.value.columns][0].value
    assert not {tuple(r) for r in again[["ω_science", "ω_coding"]].to_numpy()} & {tuple(r) for r in om}


def test_a_front_point_opens_in_merge_and_export(tmp_path, lab):
    _, measure, _ = lab
    measure([(s, c) for s in (0, 0.5, 1) for c in (0, 0.5, 1)])
    at = run_page(tmp_path, "search")
    table = [r for r in at.dataframe if "p_feasible" in r.value.columns][0].value
    at.selectbox(key="search:pick").set_value(1).run()
    at.button(key="search:open").click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Merge & export"]
    for s in ("science", "coding"):
        want = float(table.iloc[1][f"ω_{s}"])
        got = (at.slider(key=f"merge:fine:{s}").value if at.toggle(key="merge:fine").value
               else at.select_slider(key=f"merge:omega:{s}:ptm").value)
        assert got == pytest.approx(want)


def test_too_few_points_says_so_instead_of_a_front(tmp_path, lab):
    _, measure, _ = lab
    measure([(0, 0), (0.5, 0.5), (1, 0)])
    at = run_page(tmp_path, "search")
    assert not at.exception and not at.error
    assert any("needs at least 5" in i.value for i in at.info)
    t = traces(at)
    assert not [n for n in t if "predicted" in n]  # no front drawn, the measured points are
    assert len(t["measured"]["x"]) + len(t.get("measured, below the floor", {"x": []})["x"]) == 3
    # suggest next proposes the initial design instead, none of it measured
    at.button(key="search:suggest").click().run()
    shown = [r for r in at.dataframe if "why" in r.value.columns][0].value
    assert set(shown["why"]) == {"initial design"} and len(shown) == 4
    assert not {tuple(r) for r in shown[["ω_science", "ω_coding"]].to_numpy()} & {(0, 0), (0.5, 0.5), (1, 0)}


def test_the_quadratic_surrogate_needs_six(tmp_path, lab):
    _, measure, _ = lab
    measure([(s, c) for s in (0, 1) for c in (0, 0.5, 1)][:5])
    at = run_page(tmp_path, "search")
    assert "predicted front (surrogate mean)" in traces(at)  # the GP: 5 are enough
    at.radio(key="search:surrogate").set_value("quadratic").run()
    assert any("needs at least 6" in i.value for i in at.info)
    assert "predicted front (surrogate mean)" not in traces(at)


def test_read_only_fixture_draws_and_cannot_queue(tmp_path, monkeypatch):
    """The synthetic CSV: PTM curves of science and safety and θ_G count as points (ω = 0 for
    the skill left out); a read-only source says how to measure instead of queueing."""
    for k, v in testkit.app_env(testkit.write_frame_experiment(tmp_path), tmp_path).items():
        monkeypatch.setenv(k, v)
    at = run_page(tmp_path, "search")
    at.multiselect(key="search:skills").set_value(["science", "safety"]).run()
    assert not at.exception and not at.error
    assert "predicted front (surrogate mean)" in traces(at)
    at.button(key="search:suggest").click().run()
    assert not at.get("button") or all(b.key != "search:queue" for b in at.button)
    assert any("read-only" in c.value for c in at.caption)


def test_layer_groups_search_per_layer_omega_and_open_in_merge(tmp_path, lab):
    """Two layer groups: each skill has two gradient anchors (first layer, last layer); the
    one-ω points count as equal anchors beside the measured per-layer ones, the suggestions are
    per-layer ω on the 4-D lattice (step 0.1), they queue as jobs with their gradient, and a
    per-layer front point opens in Merge & export as anchors, not as one ω."""
    store, measure, _ = lab
    measure([(s, c) for s in (0, 0.5, 1) for c in (0, 0.5, 1)]
            + [((0.0, 1.0), 0.5), (0.5, (0.0, 1.0))])
    at = run_page(tmp_path, "search")
    at.radio(key="search:groups").set_value(2).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Per-layer ω: 14,641 lattice points" in c.value for c in at.caption)
    assert any(f"{9 + 2} distinct ω measured" in c.value for c in at.caption)
    cols = ["ω_science[1]", "ω_science[2]", "ω_coding[1]", "ω_coding[2]"]
    front = [r for r in at.dataframe if "p_feasible" in r.value.columns][0].value
    assert set(cols) <= set(front.columns) and len(front)
    assert "predicted front (surrogate mean)" in traces(at)
    # suggestions: valid per-layer ω, none measured
    at.button(key="search:suggest").click().run()
    assert not at.exception and not at.error
    shown = [r for r in at.dataframe if "why" in r.value.columns][0].value
    om = shown[cols].to_numpy()
    assert len(shown) == 4 and np.all((om >= 0) & (om <= 1)) and np.allclose(om / 0.1, np.round(om / 0.1))
    measured = {(s, s, c, c) for s in (0, 0.5, 1) for c in (0, 0.5, 1)} | {(0, 1, .5, .5), (.5, .5, 0, 1)}
    assert not {tuple(r) for r in om} & measured
    layered = [r for r in om if r[0] != r[1] or r[2] != r[3]]
    assert layered, om  # the search uses the per-layer dimensions
    at.button(key="search:queue").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = {j.label for j in store.jobs(experiment="fakelab", statuses=["queued"])}
    assert set(shown["label"]) <= labels and any("[" in lab for lab in labels), labels
    # a per-layer point of the predicted front opens in Merge & export with its anchors
    front = [r for r in at.dataframe if "p_feasible" in r.value.columns][0].value
    i = next(i for i, r in front.iterrows() if r[cols[0]] != r[cols[1]] or r[cols[2]] != r[cols[3]])
    at.selectbox(key="search:pick").set_value(int(i)).run()
    at.button(key="search:open").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [t.value for t in at.title] == ["Merge & export"]
    assert at.toggle(key="merge:layered").value and at.radio(key="merge:groups").value == 2
    for s, (a, b) in {"science": cols[:2], "coding": cols[2:]}.items():
        got = [at.number_input(key=f"merge:layer:{s}:2:{g}").value for g in (0, 1)]
        assert got == pytest.approx([float(front.loc[i, a]), float(front.loc[i, b])])
    assert "[" in at.subheader[0].value  # the request's label: a gradient, not one ω
