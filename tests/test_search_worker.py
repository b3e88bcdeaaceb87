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
