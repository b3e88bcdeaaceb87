"""Answers in seconds: an uncached point is measured on a subsample of every suite first, then
on the full suites; the store keeps both records, the frame shows the full one where it exists
and marks a row preliminary where it does not, and the app replaces the first by the second."""

import pandas as pd
import pytest

from ptm_core.engine.base import Sampling
from ptm_core.evals.subsample import can_subsample, subsample_indices, subsample_suite
from ptm_core.evals.suite import Item, PromptSuite
from ptm_core.orchestrate.jobs import enqueue_points, plan_jobs
from ptm_core.orchestrate.points import ptm_point
from ptm_core.orchestrate.worker import run_worker
from ptm_core.store.db import Store
from ptm_core.store.experiment import ExperimentError
from ptm_core.store.frame import results_frame
from ptm_core.store.jobs import subsample_of
from ptm_core.testing.engines import ScriptedEngine
from ptm_core.testing.store import (
    EXPERIMENT_YAML, FakeBuilder, FakeEngine, fake_fingerprinter, fake_lab, quadratic_score,
    write_experiment,
)

K = 2  # the fake suites have 4 items


# --- the subsample of a suite -----------------------------------------------------------------
def test_subsample_is_a_fixed_nested_subset_in_suite_order():
    a = subsample_indices(60, 10)
    assert a == subsample_indices(60, 10) and a == sorted(a) and len(set(a)) == 10
    assert set(subsample_indices(60, 5)) <= set(a)  # a larger k contains a smaller one
    assert a != list(range(10))  # shuffled, not the head of the suite


def test_a_prompt_suite_subsample_is_the_same_suite_on_fewer_items():
    items = [Item(f"q{i}", f"a{i}") for i in range(20)]
    suite = PromptSuite("s", "v1", items, Sampling(max_tokens=4),
                        lambda item, outs: {"exact_match": float(outs[0] == item.target)})
    sub = subsample_suite(suite, 5)
    assert (sub.name, sub.version, sub.sampling) == (suite.name, suite.version, suite.sampling)
    assert [it.prompt for it in sub.items] == [f"q{i}" for i in subsample_indices(20, 5)]
    assert len(suite.items) == 20  # the full suite is untouched
    engine = ScriptedEngine(lambda prompt, sampling, i: "a" + prompt[1:])
    r = sub.run(engine)
    assert r.metrics == {"exact_match": 100.0} and r.counts == {"exact_match": 5}
    # the interval of 5 items is wider than that of 20
    full = suite.run(engine)
    assert r.intervals["exact_match"][0] < full.intervals["exact_match"][0]
    assert not can_subsample(suite, 20) and not can_subsample(object(), 1)
    with pytest.raises(ValueError):
        subsample_suite(suite, 20)


def test_an_axis_may_not_set_the_reserved_subsample_option(tmp_path):
    from ptm_core.store.experiment import Experiment
    text = EXPERIMENT_YAML.format(name="bad").replace(
        "science: {suite: fake_science}", "science: {suite: fake_science, options: {subsample: 3}}")
    with pytest.raises(ExperimentError, match="subsample is reserved"):
        Experiment.load(write_experiment(tmp_path, "bad", text))


# --- planning: two passes, distinct keys ------------------------------------------------------
@pytest.fixture
def lab(tmp_path):
    exp, builder, resolver = fake_lab(tmp_path)
    store = Store(tmp_path / "store.sqlite")
    store.register_experiment(exp)
    return store, exp, resolver


def test_plan_gives_the_subsample_pass_first_under_other_keys(lab):
    _, exp, resolver = lab
    points = [ptm_point(exp, FakeBuilder(), {"science": w}) for w in (0.2, 0.4)]
    full_only = plan_jobs(exp, points, resolver, fake_fingerprinter, builder=FakeBuilder())
    both = plan_jobs(exp, points, resolver, fake_fingerprinter, builder=FakeBuilder(), subsample=K)
    ks = [subsample_of(s.components["suite_options"]) for s in both]
    assert ks == [K] * len(full_only) + [None] * len(full_only)
    assert all(subsample_of(s.components["suite_options"]) is None for s in full_only)
    assert {s.key for s in both[len(full_only):]} == {s.key for s in full_only}  # same full keys
    assert len({s.key for s in both}) == 2 * len(full_only)  # the subsample keys differ
    # a suite with no more items than k gets no subsample job (it would be the same run)
    assert len(plan_jobs(exp, points, resolver, fake_fingerprinter, builder=FakeBuilder(),
                         subsample=4)) == len(full_only)


# --- the worker: subsample records first, both kept; the frame prefers the full one ----------
def _work(store, resolver, **kw):
    return run_worker(store, lambda e: FakeEngine(), resolver, once=True, builder=FakeBuilder(),
                      fingerprinter=fake_fingerprinter, lease_s=5, **kw)


def test_a_live_point_writes_subsample_records_then_full_ones_and_both_are_kept(lab, monkeypatch):
    store, exp, resolver = lab
    written = []
    complete = store.complete

    def recording(job, record, details):
        written.append(subsample_of(record.suite_options))
        return complete(job, record, details)

    monkeypatch.setattr(store, "complete", recording)
    point = ptm_point(exp, FakeBuilder(), {"science": 0.5})
    outs = enqueue_points(store, exp, [point], resolver, fake_fingerprinter, builder=FakeBuilder(),
                          subsample=K)
    n = len(exp.suite_groups())
    assert [o.status for o in outs] == ["queued"] * 2 * n
    stats = _work(store, resolver)
    assert stats.done == 2 * n
    assert written == [K] * n + [None] * n  # every suite's subsample before any full suite
    recs = store.results(exp.name)
    assert len({r.key for r in recs}) == 2 * n
    sub = [r for r in recs if subsample_of(r.suite_options) == K]
    assert len(sub) == n and all(r.counts == {"score": K} for r in sub)
    assert all(r.counts == {"score": 4} for r in recs if r not in sub)
    # asked again: everything is stored, nothing is queued
    again = enqueue_points(store, exp, [point], resolver, fake_fingerprinter, builder=FakeBuilder(),
                           subsample=K)
    assert {o.status for o in again} == {"cached"}


def test_no_subsample_job_for_a_suite_already_measured_in_full(lab):
    store, exp, resolver = lab
    point = ptm_point(exp, FakeBuilder(), {"science": 0.5})
    enqueue_points(store, exp, [point], resolver, fake_fingerprinter, builder=FakeBuilder(),
                   axes=["science"])
    _work(store, resolver)  # science measured in full, the other suites not at all
    outs = enqueue_points(store, exp, [point], resolver, fake_fingerprinter, builder=FakeBuilder(),
                          subsample=K)
    n = len(exp.suite_groups())
    assert len(outs) == 2 * (n - 1) + 1  # no subsample job for science; its full run: cached
    assert sorted(o.status for o in outs) == ["cached"] + ["queued"] * 2 * (n - 1)


def test_the_frame_marks_a_subsample_row_preliminary_then_prefers_the_full_record(lab):
    store, exp, resolver = lab
    point = ptm_point(exp, FakeBuilder(), {"science": 0.5})
    enqueue_points(store, exp, [point], resolver, fake_fingerprinter, builder=FakeBuilder(),
                   subsample=K)
    n = len(exp.suite_groups())
    _work(store, resolver, max_jobs=n)  # the subsample pass only
    weights = {exp.general.model: 1.0, exp.skills["science"].model: 0.5}
    exact = quadratic_score(exp, "science")(weights)
    row = results_frame(store, exp).set_index("label").loc["ω_science=0.5"]
    assert bool(row["preliminary"]) and row["subsample_n"] == K
    assert row["science"] == pytest.approx(exact + 0.5)  # the fake's subsample is 0.5 higher
    _work(store, resolver)  # the full pass
    df = results_frame(store, exp)
    row = df.set_index("label").loc["ω_science=0.5"]
    assert not bool(row["preliminary"]) and pd.isna(row["subsample_n"])
    assert row["science"] == pytest.approx(exact)
    assert (df["kind"] == "ptm").sum() == 1  # one row per point, whatever records it has


def test_one_suite_still_on_its_subsample_keeps_the_row_preliminary(lab):
    store, exp, resolver = lab
    point = ptm_point(exp, FakeBuilder(), {"science": 0.5})
    enqueue_points(store, exp, [point], resolver, fake_fingerprinter, builder=FakeBuilder(),
                   subsample=K)
    n = len(exp.suite_groups())
    _work(store, resolver, max_jobs=2 * n - 1)  # every full suite but the last one
    row = results_frame(store, exp).set_index("label").loc["ω_science=0.5"]
    assert bool(row["preliminary"]) and row["subsample_n"] == K


def test_sweeps_stay_full_only_unless_asked(lab, tmp_path):
    from ptm_core.orchestrate.sweep import main
    store, exp, resolver = lab
    args = [str(tmp_path / "fakelab.yml"), "--omegas", "0.5", "--skills", "science",
            "--no-baselines", "--no-references", "--methods", "task_arithmetic", "--enqueue"]
    kw = dict(suite_resolver=resolver, builder=FakeBuilder(), fingerprinter=fake_fingerprinter,
              store=store)
    point = ptm_point(exp, FakeBuilder(), {"science": 0.5})
    specs = plan_jobs(exp, [point], resolver, fake_fingerprinter, builder=FakeBuilder(), subsample=K)
    sub_keys = {s.key for s in specs if subsample_of(s.components["suite_options"]) is not None}
    full_keys = {s.key for s in specs} - sub_keys
    assert main(args, **kw) == 0
    assert {j.key for j in store.jobs(experiment=exp.name)} == full_keys
    store.cancel(experiment=exp.name)
    assert main(args + ["--subsample", str(K)], **kw) == 0
    queued = store.jobs(experiment=exp.name, statuses=["queued"])
    assert {j.key for j in queued} == sub_keys | full_keys
    # the subsample jobs are claimed first
    assert min(j.priority for j in queued if j.key in sub_keys) > \
        max(j.priority for j in queued if j.key in full_keys)


# --- the app: a preliminary point, then the full one -----------------------------------------
def test_the_merge_page_shows_the_subsample_first_then_the_full_measurement(tmp_path, monkeypatch):
    import ptm_core.testing.store as T
    from ptm_core.app import data, testkit
    from ptm_core.app.testkit import run_page

    monkeypatch.setenv("PTM_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("PTM_CACHED_RUNS", str(tmp_path / "no_cached_runs"))
    monkeypatch.setenv("PTM_APP_SUBSAMPLE", str(K))
    path = T.write_experiment(tmp_path)
    for k, v in testkit.app_env(path, tmp_path).items():
        monkeypatch.setenv(k, v)
    exp, b, resolver = T.fake_lab(tmp_path)
    store = Store(tmp_path / "store.sqlite")
    # θ_G and ω_science = 0.5 measured in full, so the page has neighbours to estimate from
    enqueue_points(store, exp, [ptm_point(exp, b, {"science": w}) for w in (0.0, 0.5, 1.0)],
                   resolver, fake_fingerprinter, builder=b)
    monkeypatch.setitem(data.WIRING, "builder", b)
    monkeypatch.setitem(data.WIRING, "suite_resolver", resolver)
    monkeypatch.setitem(data.WIRING, "fingerprinter", fake_fingerprinter)
    _work(store, resolver)

    at = run_page(tmp_path, "merge")
    at.toggle(key="merge:fine").set_value(True).run()
    at.slider(key="merge:fine:coding").set_value(0.0)
    at.slider(key="merge:fine:science").set_value(0.3).run()
    assert not at.exception
    assert any(m.label.endswith("(est.)") for m in at.metric)
    n = len(exp.suite_groups())
    assert store.queue_counts(exp.name)["queued"] == 2 * n

    _work(store, resolver, max_jobs=n)  # the worker's subsample pass
    at.run()
    assert not at.exception
    assert any("preliminary, n=2" in i.value for i in at.info)
    metrics = {m.label: m.value for m in at.metric}
    science = next(v for label, v in metrics.items() if label.startswith("Science"))
    weights = {exp.general.model: 1.0, exp.skills["science"].model: 0.3}
    exact = quadratic_score(exp, "science")(weights)
    assert f"{exact + 0.5:.1f}" == science  # the subsample's score
    assert all(label.endswith("(preliminary, n=2)") for label in metrics)
    assert not at.success  # not yet "Measured"

    _work(store, resolver)  # the full pass
    at.run()
    assert any("Measured" in s.value for s in at.success)
    assert not any("preliminary" in i.value for i in at.info)
    metrics = {m.label: m.value for m in at.metric}
    assert not any("preliminary" in label or "(est.)" in label for label in metrics)
    assert metrics["Science"] == f"{exact:.1f}"


# --- bench live: the contract on the fakes -----------------------------------------------------
def test_bench_live_reports_first_then_full_through_the_real_worker_loop(tmp_path):
    import json

    from ptm_core.bench import live_bench
    from ptm_core.testing.store import fake_suite_resolver

    path = write_experiment(tmp_path)
    r = live_bench.run(path, K, poll_s=0.05, timeout_s=60, engine_factory=lambda e: FakeEngine(),
                       suite_resolver=fake_suite_resolver(), builder=FakeBuilder(),
                       fingerprinter=fake_fingerprinter)
    json.dumps(r)  # the last line is JSON
    assert 0 < r["first_s"] <= r["full_s"] == r["live"]["full_s"]
    live = [j["subsample"] for j in r["live"]["jobs"]]
    n = len(live) // 2
    assert live == [K] * n + [None] * n  # every subsample job listed before the full ones
    assert [j["subsample"] for j in r["full_only"]["jobs"]] == [None] * n
    assert r["full_only"]["first_s"] == r["full_only"]["full_s"]  # nothing preliminary there
    text = live_bench.report(r)
    assert "first answer" in text and "load before" in text
