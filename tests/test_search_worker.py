"""`python -m ptm_core search --enqueue` with a live worker (the worker loop in a thread, the fake
engine and suites): the search queues a batch, the worker stores its results, and the search
refits on them and continues. The search's own engine factory raises, so every score it sees
came from the worker."""

from __future__ import annotations

import io
import re
import threading

import numpy as np

from ptm_core.orchestrate.worker import run_worker
from ptm_core.search import cli
from ptm_core.store.db import Store
from ptm_core.testing.store import (
    FakeBuilder, FakeEngine, fake_fingerprinter, fake_suite_resolver, quadratic_score, write_experiment,
)


def _no_inline_engine(exp):
    raise AssertionError("the search evaluated a point itself instead of queueing it")


def test_enqueued_batches_are_measured_by_a_live_worker_and_the_search_continues(tmp_path):
    path = write_experiment(tmp_path)
    db = tmp_path / "s.sqlite"
    resolver = fake_suite_resolver()
    stop = threading.Event()
    stats = {}

    def worker():
        stats["w"] = run_worker(Store(db), lambda e: FakeEngine(), resolver, poll_s=0.05,
                                builder=FakeBuilder(), fingerprinter=fake_fingerprinter, stop=stop)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    out = io.StringIO()
    try:
        rc = cli.main([str(path), "--skills", "science,coding", "--enqueue", "--wait", "60",
                       "--budget", "6", "--init", "3", "--batch", "3", "--step", "0.25"],
                      engine_factory=_no_inline_engine, suite_resolver=resolver, builder=FakeBuilder(),
                      fingerprinter=fake_fingerprinter, store=Store(db), out=out)
    finally:
        stop.set()
        t.join(30)
    text = out.getvalue()
    assert rc == 0, text
    assert not t.is_alive()
    # two batches: the initial design, then the acquisition's, each refitted on stored results
    assert "batch 1:" in text and "batch 2:" in text and "still waiting" not in text
    assert re.search(r"after batch 1: 3 evaluated here, 3 measured", text), text
    assert re.search(r"after batch 2: 6 evaluated here, 6 measured", text), text
    store = Store(db)
    exp = store.get_experiment("fakelab")
    X, scores = cli.measured(store, exp, "task_arithmetic", ["science", "coding"],
                             ["science", "coding", "general"])
    assert len({tuple(x) for x in X}) == 6
    # every job ran in the worker: 6 points × 3 suites (general and the two skills)
    assert stats["w"].done == 18 and stats["w"].failed == 0
    assert store.queue_counts("fakelab").get("queued", 0) == 0
    # and the stored scores are the fake suites' closed form at each ω
    for i, (ws, wc) in enumerate(X):
        assert scores["general"][i] == quadratic_score(exp, "general")(
            {exp.skills["science"].model: ws, exp.skills["coding"].model: wc})
    # the second batch was chosen from the first's measurements: none of them again
    batches = [line.split(":", 1)[1] for line in text.splitlines() if line.startswith("batch ")]
    first = set(batches[0].split(";"))
    assert not first & set(batches[1].split(";"))
    assert np.all((X >= 0) & (X <= 1))


def test_a_per_layer_job_is_measured_by_the_worker_and_read_back_intact(tmp_path):
    """A point with a gradient ω goes through the queue (its spec as JSON), the worker applies
    the recipe's list (the fake suites read its first and last layers' ω), and the store, its
    frame, the cached-runs export, the app's Results and the search read the gradient back."""
    import yaml

    from ptm_core.analysis.results import Results
    from ptm_core.orchestrate.jobs import enqueue_points
    from ptm_core.orchestrate.points import method_point
    from ptm_core.search.measured import measured_points
    from ptm_core.store.cached import dumps_records, loads_records
    from ptm_core.store.estimate import estimate_point
    from ptm_core.store.frame import results_frame
    from ptm_core.testing.store import fake_lab

    exp, b, resolver = fake_lab(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    layered = method_point(exp, b, "task_arithmetic", {"science": (0.0, 1.0), "coding": 0.5})
    flat = method_point(exp, b, "task_arithmetic", {"science": 0.5, "coding": 0.5})
    enqueue_points(store, exp, [layered, flat], resolver, fake_fingerprinter, builder=b,
                   axes=["general", "science", "coding"])
    queued = store.jobs(experiment="fakelab", statuses=["queued"])
    assert {j.label for j in queued} == {"ω_science=[0, 1], ω_coding=0.5", "ω_science=0.5, ω_coding=0.5"}
    stats = run_worker(store, lambda e: FakeEngine(), resolver, once=True, builder=b,
                       fingerprinter=fake_fingerprinter)
    assert stats.done == 6 and stats.failed == 0
    want = '{"coding":0.5,"science":[0.0,1.0]}'
    recs = [r for r in store.results("fakelab") if r.point_id == layered.point_id]
    assert len(recs) == 3 and {r.omega for r in recs} == {want}
    weights = [m["parameters"]["weight"] for m in yaml.safe_load(recs[0].recipe_yaml)["models"]]
    assert [0.0, 1.0] in weights  # the worker applied the list, not one number
    by_suite = {r.suite: r.metrics["score"] for r in recs}
    # general reads the first layer (ω_science 0, ω_coding 0.5), science the last (1)
    assert by_suite == {"fake_general": 60 - 20 * 0.25, "fake_science": 60.0,
                        "fake_coding": 20 + 35 - 7.5}
    assert {r.omega for r in loads_records(dumps_records(recs), "export")} == {want}
    frame = results_frame(store, exp)
    row = frame[frame["point_id"] == layered.point_id].iloc[0]
    assert row["omega"] == want and row["science"] == 60.0
    res = Results.from_frame(frame)
    r = res.lookup("ptm", {"science": (0.0, 1.0), "coding": 0.5})
    assert r is not None and r["omega_all"] == {"science": (0.0, 1.0), "coding": 0.5}
    assert r["omega_d"] == {}  # on no one-ω curve: sliders and estimates never read it
    assert res.lookup("ptm", {"science": 1.0, "coding": 0.5}) is None
    # the one-ω curve's estimate reads the one-ω point only (the gradient is no input)
    assert estimate_point(frame, "ptm", {"science": 0.4, "coding": 0.5}, axes=["science"]) \
        == {"science": 20 + 35 - 7.5}
    assert estimate_point(frame, "ptm", {"science": (0.0, 0.5), "coding": 0.5}, axes=["science"]) is None
    X, scores = measured_points(frame, "task_arithmetic", ["science", "coding"], ["science"], 2)
    assert sorted(map(tuple, X)) == [(0.0, 1.0, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)]
    X1, _ = measured_points(frame, "task_arithmetic", ["science", "coding"], ["science"])
    assert X1.tolist() == [[0.5, 0.5]]
