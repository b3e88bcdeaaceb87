"""The worker loop on fake engines and suites: results, failures, staleness, warm engines."""

import pytest

from ptm_core.store.db import Store, StoreError
from ptm_core.store.frame import results_frame
from ptm_core.orchestrate.jobs import enqueue_points
from ptm_core.orchestrate.points import base_points, ptm_point
from ptm_core.testing.store import (
    FakeBuilder, FakeEngine, fake_fingerprinter, fake_lab, fake_suite_resolver, ptm_specs,
)
from ptm_core.orchestrate.worker import run_worker


@pytest.fixture
def lab(tmp_path, store_at):  # each test on each backend
    exp, builder, resolver = fake_lab(tmp_path)
    store = Store(store_at())
    store.register_experiment(exp)
    return store, exp, resolver


def work(store, resolver, engine_kw=None, **kw):
    made = []

    def factory(exp):
        e = FakeEngine(**(engine_kw or {}))
        made.append(e)
        return e

    stats = run_worker(store, factory, resolver, once=True, builder=FakeBuilder(),
                       fingerprinter=fake_fingerprinter, lease_s=5, **kw)
    return stats, made


def test_worker_runs_jobs_and_results_match_the_suite(lab):
    store, exp, resolver = lab
    b = FakeBuilder()
    points = [ptm_point(exp, b, {"science": w}) for w in (0.0, 0.5, 1.0)]
    outs = enqueue_points(store, exp, points, resolver, fake_fingerprinter, builder=FakeBuilder())
    assert [o.status for o in outs] == ["queued"] * 12  # 3 points x 4 suite groups
    stats, engines = work(store, resolver)
    assert stats.done == 12 and stats.failed == 0
    assert len(engines) == 1  # one warm engine for the whole queue
    # consecutive jobs on the same recipe do not swap weights again
    assert len(engines[0].applied) == 3
    df = results_frame(store, exp).set_index("label")
    assert df.loc["ω_science=0.5", "science"] == pytest.approx(20 + 70 * 0.5 - 30 * 0.25)
    assert df.loc["ω_science=0.5", "general"] == pytest.approx(60 - 20 * 0.25)
    # safety and xstest_safe come from one suite run
    assert df.loc["ω_science=1", "safety"] == df.loc["ω_science=1", "xstest_safe"] == 60.0
    r = store.results(exp.name)[0]
    assert r.engine == "fake" and r.versions["ptm_core"] and r.wall_s > 0
    assert r.counts == {"score": 4} and r.train_steps == 20 and r.recipe_yaml.startswith("merge_method")
    assert len(store.result_details(r.key)) == 4
    row = store.jobs(experiment=exp.name)[0]
    assert row.status == "done" and row.progress_msg == "done" and row.progress_total == 4


def test_same_job_asked_twice_runs_once(lab):
    store, exp, resolver = lab
    specs = ptm_specs(exp, [0.3], axes=["science"], resolver=resolver)
    store.enqueue_many(specs)
    store.enqueue_many(specs)
    stats, engines = work(store, resolver)
    assert stats.done == 1 and len(resolver.made[(exp.name, "science")].runs) == 1
    # asked again after it ran: nothing to do
    assert store.enqueue_many(specs)[0].status == "cached"
    stats, _ = work(store, resolver)
    assert stats.done == 0


def test_failing_job_records_its_error_and_the_worker_goes_on(lab):
    store, exp, _ = lab
    resolver = fake_suite_resolver(fail_axes={"coding": "suite file coding.jsonl lacks column 'tests'"})
    b = FakeBuilder()
    enqueue_points(store, exp, [ptm_point(exp, b, {"science": 0.2})], resolver, fake_fingerprinter, builder=FakeBuilder())
    stats, _ = work(store, resolver)
    assert stats.done == 3 and stats.failed == 1
    failed, = store.jobs(statuses=["failed"])
    assert failed.suite_ref == "coding"
    assert "RuntimeError: suite file coding.jsonl lacks column 'tests'" in failed.error
    assert "worker.py" in failed.error or "testing.py" in failed.error  # where it happened
    df = results_frame(store, exp)
    row = df[df.kind == "ptm"].iloc[0]
    assert row["general"] == pytest.approx(60 - 20 * 0.04) and row["coding"] != row["coding"]  # NaN


def test_engine_that_fails_to_start_fails_jobs_with_a_clear_error(lab):
    store, exp, resolver = lab
    store.enqueue_many(ptm_specs(exp, [0.1, 0.2], axes=["general"], resolver=resolver))

    def factory(exp):
        raise FileNotFoundError("models/general/config.json")

    stats = run_worker(store, factory, resolver, once=True, builder=FakeBuilder(),
                       fingerprinter=fake_fingerprinter)
    assert stats.failed == 2 and stats.done == 0
    errs = [r.error for r in store.jobs(statuses=["failed"])]
    assert all("could not start the engine for experiment 'fakelab'" in e and "config.json" in e for e in errs)


def test_engine_failure_during_apply_is_recorded(lab):
    store, exp, resolver = lab
    store.enqueue_many(ptm_specs(exp, [0.1, 0.9], axes=["general"], resolver=resolver))
    fail = lambda recipe: 0.9 in recipe.weights().values()  # noqa: E731
    stats, _ = work(store, resolver, engine_kw={"fail_apply": fail})
    assert (stats.done, stats.failed) == (1, 1)
    assert "simulated engine failure" in store.jobs(statuses=["failed"])[0].error


def test_stale_job_is_refused_with_the_reason(lab):
    """A job queued under suite version 1 must not be stored as version 2's result."""
    store, exp, resolver = lab
    store.enqueue_many(ptm_specs(exp, [0.4], axes=["science"], resolver=resolver))
    stats, _ = work(store, fake_suite_resolver(version="2"))
    assert stats.failed == 1
    err = store.jobs(statuses=["failed"])[0].error
    assert "no longer matches" in err and 'suite_version: queued with "1", now "2"' in err
    assert store.results() == []


def test_job_whose_recipe_does_not_fit_the_experiment(lab, tmp_path):
    store, exp, resolver = lab
    spec, = ptm_specs(exp, [0.4], axes=["science"], resolver=resolver)
    store.enqueue(spec)
    # the experiment is re-registered without the science skill's model
    changed = exp.model_copy(update={"skills": {**exp.skills, "science": exp.skills["science"].model_copy(
        update={"model": str(tmp_path / "models" / "other")})}})
    store.register_experiment(changed)
    stats, _ = work(store, resolver)
    assert stats.failed == 1
    assert "not part of experiment 'fakelab'" in store.jobs(statuses=["failed"])[0].error


def test_full_disk_while_writing_a_result_fails_the_job_readably(lab, monkeypatch):
    store, exp, resolver = lab
    store.enqueue_many(ptm_specs(exp, [0.1, 0.2], axes=["general"], resolver=resolver))
    real = type(store).complete
    calls = []

    def full_once(self, job, record, details=None):
        calls.append(job.id)
        if len(calls) == 1:
            # what Store raises when SQLite reports SQLITE_FULL (rolled back)
            raise StoreError(f"store {self.path}: could not write the result: database or disk is full")
        return real(self, job, record, details)

    monkeypatch.setattr(type(store), "complete", full_once)
    stats, _ = work(store, resolver)
    assert (stats.done, stats.failed) == (1, 1)
    failed = store.jobs(statuses=["failed"])[0]
    assert failed.error.startswith("could not write the result:") and "disk is full" in failed.error
    assert len(store.results()) == 1 and store.check() == "ok"
    assert not store.has_result(failed.key)


def test_baselines_and_references_flow_through_the_worker(lab):
    store, exp, resolver = lab
    b = FakeBuilder()
    enqueue_points(store, exp, base_points(exp, b), resolver, fake_fingerprinter, axes=["general"], builder=FakeBuilder())
    stats, _ = work(store, resolver)
    assert stats.done == 4
    df = results_frame(store, exp)
    assert sorted(df.kind) == ["base", "general", "rt", "skill", "skill"]  # + imported RT scores
    assert df.set_index("label").loc["θ_D science", "general"] == pytest.approx(40.0)


def test_axis_metric_the_suite_does_not_report_fails_the_job_readably(tmp_path):
    """A `metric:` the suite never reports must not leave an axis silently empty."""
    from ptm_core.engine.base import Sampling
    from ptm_core.evals.suite import SuiteResult
    from ptm_core.store.experiment import Experiment
    from ptm_core.testing.store import EXPERIMENT_YAML, write_experiment

    class ComplianceSuite:  # reports a fixed metric name, as the real refusal suite does
        name, version, sampling = "compliance", "1", Sampling()

        def run(self, engine):
            return SuiteResult(self.name, self.version, {"compliance_rate": 50.0},
                               {"compliance_rate": 3}, 0.01)

    text = EXPERIMENT_YAML.format(name="typo").replace(
        "general: {suite: fake_general}", "general: {suite: compliance, metric: refusal_rate}")
    exp = Experiment.load(write_experiment(tmp_path, name="typo", text=text))
    store = Store(tmp_path / "store.sqlite")
    store.register_experiment(exp)
    fake = fake_suite_resolver()
    resolver = lambda e, axis: ComplianceSuite() if axis == "general" else fake(e, axis)
    enqueue_points(store, exp, [ptm_point(exp, FakeBuilder(), {"science": 0.3})], resolver,
                   fake_fingerprinter, builder=FakeBuilder())
    stats, _ = work(store, resolver)
    assert stats.failed == 1 and stats.done == 3  # the other axes still ran
    failed, = store.jobs(statuses=["failed"])
    assert "axis 'general' asks suite 'compliance' for 'refusal_rate'" in failed.error
    assert "reports compliance_rate" in failed.error
    assert not [r for r in store.results(exp.name) if "general" in r.axes]


def test_engine_dtype_option_is_part_of_the_key_and_the_record(tmp_path):
    """A float32 run and a default-dtype run of the same point are different results."""
    exp, _, resolver = fake_lab(tmp_path)
    exp32 = exp.model_copy(update={"engine_options": {"dtype": "float32"}})
    point = ptm_point(exp, FakeBuilder(), {"science": 0.5})
    keys = {}
    for e in (exp, exp32):
        store = Store(tmp_path / f"{e.engine_options.get('dtype', 'auto')}.sqlite")
        store.register_experiment(e)
        outs = enqueue_points(store, e, [point], resolver, fake_fingerprinter, builder=FakeBuilder())
        keys[e.engine_options.get("dtype")] = {o.key for o in outs}
        stats, _ = work(store, resolver)
        assert stats.done == len(outs) and stats.failed == 0
        assert {r.engine for r in store.results(e.name)} == \
            {"fake:dtype=float32" if e is exp32 else "fake"}
    assert not keys[None] & keys["float32"]
