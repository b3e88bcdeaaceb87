"""`python -m ptm_core search` on the fake lab (fake engine, suites scoring the applied weights),
`sweep --product`, and the bench's replay: determinism for a seed and its JSON summary."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from ptm_core.errors import PTMError
from ptm_core.orchestrate import sweep
from ptm_core.orchestrate.points import Grid, grid_points, method_point
from ptm_core.search import bench, cli, replay
from ptm_core.search.objective import Objective
from ptm_core.store.db import Store
from ptm_core.testing.store import (
    FakeBuilder, FakeEngine, fake_fingerprinter, fake_lab, fake_suite_resolver, write_experiment,
)


def run_search(argv, store):
    out = io.StringIO()
    rc = cli.main(argv, engine_factory=lambda exp: FakeEngine(), suite_resolver=fake_suite_resolver(),
                  builder=FakeBuilder(), fingerprinter=fake_fingerprinter, store=store, out=out)
    return rc, out.getvalue()


def test_search_evaluates_ordinary_points_within_budget(tmp_path):
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    front = tmp_path / "front.json"
    rc, out = run_search([str(path), "--skills", "science,coding", "--budget", "9", "--init", "5",
                          "--batch", "2", "--step", "0.25", "--json", str(front)], store)
    assert rc == 0, out
    assert "batch 1:" in out and "after batch" in out and "predicted" in out
    X, scores = cli.measured(store, store.get_experiment("fakelab"), "task_arithmetic",
                             ["science", "coding"], ["science", "coding", "general"])
    assert len(X) == 9 and np.all((X >= 0) & (X <= 1))
    assert np.all(np.isclose(X / 0.25, np.round(X / 0.25)))  # lattice points only
    # the stored points are the sweep's own: same recipe key as method_point builds
    exp, b, _ = fake_lab(tmp_path / "again")
    keys = {r.point_id for r in store.results("fakelab")}
    assert method_point(exp, b, "task_arithmetic", {"science": X[1][0], "coding": X[1][1]}).recipe_key in keys
    data = json.loads(front.read_text())
    assert data["predicted_front"] and all(r["science_lo"] <= r["science"] <= r["science_hi"]
                                           for r in data["predicted_front"])
    # a rerun reuses what is stored and spends its own budget on new points
    rc, out = run_search([str(path), "--skills", "science,coding", "--budget", "2", "--batch", "2",
                          "--step", "0.25"], store)
    assert rc == 0 and len(cli.measured(store, store.get_experiment("fakelab"), "task_arithmetic",
                                        ["science", "coding"], ["science", "coding", "general"])[0]) == 11


def test_search_enqueue_without_waiting_queues_one_batch(tmp_path):
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    rc, out = run_search([str(path), "--skills", "science,coding", "--enqueue", "--wait", "0",
                          "--init", "3", "--step", "0.5"], store)
    assert rc == 0 and "still waiting" in out
    assert store.queue_counts("fakelab").get("queued", 0) == 3 * 3  # 3 points x 3 suites


@pytest.mark.parametrize("argv", [["--skills", "chemistry"], ["--objective", "nope"],
                                  ["--method", "linear"], ["--delta", "x"], ["--budget", "0"]])
def test_search_refuses_bad_arguments(tmp_path, argv):
    path = write_experiment(tmp_path)
    with pytest.raises(PTMError):
        run_search([str(path), "--step", "0.5", *argv], Store(tmp_path / "s.sqlite"))


def test_sweep_product_is_the_full_grid(tmp_path):
    exp, b, _ = fake_lab(tmp_path)
    pts, _ = grid_points(exp, b, Grid(omegas=[0.0, 0.5, 1.0], product=True, baselines=False,
                                      references=False))
    pairs = [p.omega for p in pts if len(p.skills) == 2]
    assert len(pairs) == 9 and {"science": 0.5, "coding": 1.0} in pairs


def _table():
    from ptm_core.search import space
    X = space.lattice(2, step=0.1)
    return replay.Table(X, {"general": 100 - 30 * (X ** 2).sum(axis=1),
                            "science": 100 * X[:, 0] * (1 - X[:, 1] / 2),
                            "safety": 100 * X[:, 1] * (1 - X[:, 0] / 2)})


def test_bench_replay_is_deterministic_and_reports_each_strategy():
    t = _table()
    obj = Objective(("science", "safety"), None, "general", 80.0)
    a = bench.run_bench(t, obj, [0, 0], budget=12, seeds=[0], batch=4)
    b = bench.run_bench(t, obj, [0, 0], budget=12, seeds=[0], batch=4)
    assert a["traces"] == b["traces"] and a["evals_to_95pct"] == b["evals_to_95pct"]
    assert a["grid_evals"] == 121 and len(a["traces"]["grid"]) == 121 and len(a["traces"]["search"]) == 12
    assert all(np.diff(a["traces"]["search"]) >= 0)  # hypervolume never falls
    assert a["traces"]["grid"][-1] == pytest.approx(a["grid_hv"])


def _bench_on_rows(tmp_path, monkeypatch, rows, budget, seeds) -> str:
    """`bench search` on a fixture grid of two skills (science, safety); what it printed."""
    monkeypatch.setattr(bench, "grid_rows", lambda *a, **k: rows)
    monkeypatch.setattr(bench, "loads_records", lambda *a, **k: [])
    grid = tmp_path / "grid.jsonl"
    grid.write_text("")
    exp = write_experiment(tmp_path, text=None)
    lab = tmp_path / "lab.yml"
    lab.write_text(exp.read_text().replace("coding: {model: models/coding", "safety: {model: models/coding")
                   .replace("  coding: {suite: fake_coding}\n", ""))
    out = io.StringIO()
    assert bench.main(["--grid", str(grid), "--experiment", str(lab), "--budget", str(budget),
                       "--seeds", str(seeds)], out=out) == 0
    return out.getvalue()


def test_bench_reads_a_grid_file_and_prints_json_last(tmp_path, monkeypatch):
    t = _table()
    rows = [{"omega": {"science": float(x[0]), "safety": float(x[1])},
             **{m: float(v[i]) for m, v in t.scores.items()}} for i, x in enumerate(t.X)]
    text = _bench_on_rows(tmp_path, monkeypatch, rows, budget=10, seeds=2)
    last = json.loads(text.strip().splitlines()[-1])
    assert set(last["evals_to_95pct"]) == {"search", "random", "grid"} and last["grid_evals"] == 121


def test_bench_says_a_grid_with_no_hypervolume_cannot_rank(tmp_path, monkeypatch):
    """The lab's grid today: no point beats ω = 0 on the skills within the floor."""
    t = _table()
    rows = [{"omega": {"science": float(x[0]), "safety": float(x[1])},
             **{m: (float(v[i]) if m == "general" else 0.0) for m, v in t.scores.items()}}
            for i, x in enumerate(t.X)]
    text = _bench_on_rows(tmp_path, monkeypatch, rows, budget=6, seeds=1)
    assert "not measurable on this grid" in text and " met " not in text
    assert json.loads(text.strip().splitlines()[-1])["degenerate"] is True
