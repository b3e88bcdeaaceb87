"""Intervals from the suites to the results frame: suites report them, records and the store
keep them, records stored before them get Wilson from score and count, means do not."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from ptm_core.engine.base import Sampling
from ptm_core.testing.engines import ScriptedEngine
from ptm_core.intervals import bootstrap_mean, wilson
from ptm_core.evals.lmeval import intervals_from_samples, scores_from_results
from ptm_core.evals.refusal_suite import RefusalSuite
from ptm_core.evals.suite import Item, PromptSuite
from ptm_core.store.cached import dumps_records, loads_records
from ptm_core.store.db import SCHEMA_VERSION, Store
from ptm_core.store.frame import results_frame
from ptm_core.orchestrate.jobs import plan_jobs
from ptm_core.store.jobs import record_for
from ptm_core.orchestrate.points import ptm_point
from ptm_core.store.records import RecordError, ResultRecord
from ptm_core.testing.store import FakeBuilder, fake_fingerprinter, fake_lab


def pct(iv):
    return [100 * iv[0], 100 * iv[1]]


# --- suites ------------------------------------------------------------------------------------
def test_prompt_suite_gives_wilson_for_rates_and_bootstrap_for_partial_credit():
    items = [Item(f"q{i}", "yes", "a" if i < 4 else "b") for i in range(10)]

    def scorer(item, outs):
        return {"match": float(outs[0] == item.target), "partial": 0.5 if outs[0] == "yes" else 0.25}

    suite = PromptSuite("s", "1", items, Sampling(), scorer, per_group=True)
    engine = ScriptedEngine(lambda p, s, i: "yes" if int(p[1:]) % 3 == 0 else "no")  # q0 q3 q6 q9
    r = suite.run(engine)
    assert r.metrics["match"] == 40.0 and r.counts["match"] == 10
    assert r.intervals["match"] == pytest.approx(pct(wilson(4, 10)))
    assert r.intervals["match/a"] == pytest.approx(pct(wilson(2, 4)))  # q0, q3 of q0-q3
    partial = [0.5 if i % 3 == 0 else 0.25 for i in range(10)]
    assert r.intervals["partial"] == pytest.approx(pct(bootstrap_mean(partial)))


def test_refusal_suite_counts_every_answer_as_a_trial():
    items = [Item(f"p{i}", "refuse") for i in range(5)]
    suite = RefusalSuite("r", "1", items, sampling=Sampling(n=2, temperature=0.8))
    r = suite.run(ScriptedEngine(lambda p, s, i: "I'm sorry, I can't." if i == 0 else "Sure."))
    assert r.metrics["refusal_rate"] == 50.0 and r.counts["refusal_rate"] == 10
    assert r.intervals["refusal_rate"] == pytest.approx(pct(wilson(5, 10)))


def test_lab_coding_suite_bootstraps_pass_at_k_over_problems(monkeypatch):
    from ptm_core.passk import pass_at_k
    from ptm_core.lab.suites import CodingSuite

    items = [Item(f"write f{i}", "assert True") for i in range(4)]
    suite = CodingSuite("c", "1", items, Sampling(temperature=0.8, n=4, seed=0), Sampling(), k=2,
                        per_group=False)
    passes = {0: [True, True, False, False, False], 1: [False] * 5, 2: [True] * 5,
              3: [False, True, False, False, False]}  # greedy first, then the 4 samples
    monkeypatch.setattr(suite, "_passes", lambda cases: [ok for i in range(4) for ok in passes[i]])
    r = suite.run(ScriptedEngine(lambda p, s, i: "x"))
    per_item = [pass_at_k(4, sum(passes[i][1:]), 2) for i in range(4)]
    assert r.metrics["pass@2"] == pytest.approx(100 * sum(per_item) / 4)
    assert r.intervals["pass@2"] == pytest.approx(pct(bootstrap_mean(per_item)))
    assert r.intervals["pass@1"] == pytest.approx(pct(wilson(2, 4)))  # greedy: a rate


def test_lmeval_intervals_come_from_per_sample_scores_when_they_average_to_the_metric():
    docs = [1.0, 0.0, 1.0, 1.0]
    results = {
        "results": {"t": {"acc,none": 0.75, "f1,none": 0.9, "em,strict": 0.5}},
        "n-samples": {"t": {"effective": 4}},
        "samples": {"t": [{"doc_id": i, "filter": "none", "metrics": ["acc", "f1"], "acc": v,
                           "f1": (v, 1.0)} for i, v in enumerate(docs)]
                   + [{"doc_id": i, "filter": "strict", "metrics": ["em"], "em": v}
                      for i, v in enumerate([0.0, 0.0, 1.0, 0.25])]},
    }
    metrics, _ = scores_from_results(results)
    iv = intervals_from_samples(results, metrics)
    assert iv["t/acc"] == pytest.approx(pct(wilson(3, 4)))
    assert "t/f1" not in iv  # a corpus metric: per-sample tuples, no mean
    assert "t/em/strict" not in iv  # mean 31.25 is not the reported 50: not a plain mean


# --- records and the store ---------------------------------------------------------------------
@pytest.fixture
def lab(tmp_path):
    exp, b, resolver = fake_lab(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    store.register_experiment(exp)
    specs = plan_jobs(exp, [ptm_point(exp, b, {"science": 0.3})], resolver, fake_fingerprinter,
                      builder=FakeBuilder())
    return store, exp, specs


def old_style(rec: ResultRecord) -> dict:
    d = {"format": "ptm-result/1", **rec.to_dict()}
    d.pop("intervals")
    return d


def test_records_without_intervals_still_load_and_rates_get_wilson(lab):
    store, exp, specs = lab
    rec = record_for(specs[0], metrics={"refusal": 30.0, "pass@1_sampled": 31.5, "pass@10": 50.0},
                     counts={"refusal": 60, "pass@1_sampled": 60, "pass@10": 60}, wall_s=1.0,
                     swap_s=0.0, engine="fake", versions={})
    rec.sampling = {"n": 10, "temperature": 0.8}
    back = ResultRecord.from_dict(old_style(rec))
    assert back.intervals["refusal"] == pytest.approx(pct(wilson(18, 60)))
    assert back.intervals["pass@10"] == pytest.approx(pct(wilson(30, 60)))  # pass@n: 0/1 per item
    assert "pass@1_sampled" not in back.intervals  # a mean without item scores: no interval


def test_an_interval_outside_0_100_or_for_no_metric_is_refused(lab):
    store, exp, specs = lab
    rec = record_for(specs[0], metrics={"score": 50.0}, counts={"score": 3}, wall_s=None,
                     swap_s=None, engine="fake", versions={}, intervals={"score": [40.0, 120.0]})
    with pytest.raises(RecordError, match="interval 'score'"):
        rec.validate()
    rec.intervals = {"other": [1.0, 2.0]}
    with pytest.raises(RecordError, match="interval 'other'"):
        rec.validate()


def test_intervals_survive_the_store_and_the_cached_runs_format(lab):
    store, exp, specs = lab
    rec = record_for(specs[0], metrics={"score": 50.0}, counts={"score": 3}, wall_s=None,
                     swap_s=None, engine="fake", versions={}, intervals={"score": (41.0, 59.5)})
    store.put_result(rec)
    assert store.get_result(rec.key, exp.name).intervals == {"score": [41.0, 59.5]}
    (again,) = loads_records(dumps_records([store.get_result(rec.key, exp.name)]))
    assert again.intervals == {"score": [41.0, 59.5]}


def test_a_schema_1_store_is_migrated_and_its_rates_get_wilson(lab, tmp_path):
    store, exp, specs = lab
    rec = record_for(specs[0], metrics={"compliance": 25.0}, counts={"compliance": 8}, wall_s=None,
                     swap_s=None, engine="fake", versions={})
    store.put_result(rec)
    con = sqlite3.connect(store.path)  # make it a schema-1 file: no intervals column
    con.execute("ALTER TABLE results DROP COLUMN intervals")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    got = Store(store.path).get_result(rec.key, exp.name)
    assert got.intervals == {"compliance": pytest.approx(pct(wilson(2, 8)))}
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "intervals" in {r[1] for r in con.execute("PRAGMA table_info(results)")}


def test_frame_has_lo_hi_per_axis_from_the_record_that_gave_the_score(lab):
    store, exp, specs = lab
    by_axis = {s.axes[0]: s for s in specs}
    for i, (axis, spec) in enumerate(sorted(by_axis.items())):
        ivs = {"score": [10.0 * i, 10.0 * i + 5]} if axis != "coding" else {}
        store.put_result(record_for(spec, metrics={"score": 10.0 * i + 2}, counts={"score": 3},
                                    wall_s=None, swap_s=None, engine="fake", versions={},
                                    intervals=ivs))
    df = results_frame(store, exp)
    row = df[df.kind == "ptm"].iloc[0]
    for i, axis in enumerate(sorted(by_axis)):
        if axis == "coding":  # "score" is no rate: nothing derived, no interval
            assert math.isnan(row["coding_lo"]) and math.isnan(row["coding_hi"])
        else:
            assert (row[f"{axis}_lo"], row[axis], row[f"{axis}_hi"]) == (10.0 * i, 10.0 * i + 2,
                                                                         10.0 * i + 5)
    ref = df[df.source == "imported"].iloc[0]  # the paper-style reference has scores only
    assert ref.general == 55.0 and math.isnan(ref.general_lo)
    assert df[["general_lo", "general_hi"]].dtypes.eq("float64").all()


def test_estimates_do_not_take_interval_columns_for_axes(lab):
    from ptm_core.store.frame import score_columns

    store, exp, specs = lab
    df = results_frame(store, exp)
    assert score_columns(df) == list(exp.axes)


def test_shipped_lab_records_get_an_interval_on_every_axis():
    """Every shipped lab record carries its headline score's interval; a record without one
    (results measured before intervals existed) gets the same Wilson interval when it is loaded,
    since every headline score is a rate (pass@10 of 10 samples included)."""
    from pathlib import Path

    from ptm_core.lab.suites import HEADLINE

    path = Path(__file__).resolve().parents[1] / "cached_runs" / "lab.jsonl"
    if not path.exists():
        pytest.skip("no shipped lab results")
    lines = path.read_text().splitlines()
    recs = loads_records("\n".join(lines))
    missing = [(r.label, r.suite) for r in recs if HEADLINE[r.suite] not in r.intervals]
    assert not missing
    stripped = []
    for line in lines:
        d = json.loads(line)
        d.pop("intervals", None)
        stripped.append(json.dumps(d))
    derived = loads_records("\n".join(stripped))
    for r, again in zip(recs, derived):
        assert again.intervals[HEADLINE[r.suite]] == pytest.approx(r.intervals[HEADLINE[r.suite]])
    coding = next(r for r in derived if r.suite == "lab_coding" and 0 < r.metrics["pass@10"] < 100)
    n = coding.counts["pass@10"]
    assert coding.intervals["pass@10"] == pytest.approx(
        pct(wilson(round(coding.metrics["pass@10"] * n / 100), n)))
    assert "pass@1_sampled" not in coding.intervals
