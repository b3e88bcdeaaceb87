"""results_frame: one row per point, one 0-100 column per axis, imported references included."""

import json
import math

import pytest

from ptm_core.store.db import Store
from ptm_core.store.frame import POINT_COLUMNS, omega_of, results_frame
from ptm_core.orchestrate.jobs import plan_jobs
from ptm_core.store.jobs import record_for
from ptm_core.orchestrate.points import base_points, ptm_point
from ptm_core.testing.store import FakeBuilder, fake_fingerprinter, fake_lab


def put(store, spec, value, **kw):
    r = record_for(spec, metrics={"score": value, "score/easy": 1.0}, counts={"score": 3},
                   wall_s=0.1, swap_s=0.0, engine=kw.pop("engine", "fake"), versions={}, **kw)
    store.put_result(r)
    return r


@pytest.fixture
def lab(tmp_path):
    exp, b, resolver = fake_lab(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    store.register_experiment(exp)
    return store, exp, b, resolver


def test_empty_store_gives_the_columns_and_the_imported_references(lab):
    store, exp, b, resolver = lab
    df = results_frame(store, exp)
    axes = ["general", "science", "coding", "safety", "xstest_safe"]
    assert list(df.columns) == POINT_COLUMNS + axes + [f"{a}_{b}" for a in axes for b in ("lo", "hi")]
    assert len(df) == 1  # the RT reference with imported scores
    rt = df.iloc[0]
    assert rt.kind == "rt" and rt.source == "imported" and rt.general == 55.0 and math.isnan(rt.coding)
    assert rt.train_steps == 120 and rt.data_size == 200 and rt.skills == "science"


def test_per_suite_records_merge_into_one_row_per_point(lab):
    store, exp, b, resolver = lab
    points = [ptm_point(exp, b, {"science": 0.3}), ptm_point(exp, b, {"science": 0.2, "coding": 0.1})]
    specs = plan_jobs(exp, points, resolver, fake_fingerprinter, builder=FakeBuilder())
    assert len(specs) == 8
    for i, s in enumerate(specs):
        put(store, s, 10.0 * i)
    df = results_frame(store, exp)
    ptm = df[df.kind == "ptm"].set_index("skills")
    assert len(ptm) == 2 and len(df) == 3
    one = ptm.loc["science"]
    assert json.loads(one.omega) == {"science": 0.3} and omega_of(one.omega, "science") == 0.3
    assert (one.general, one.science, one.coding, one.safety, one.xstest_safe) == (0.0, 10.0, 20.0, 30.0, 30.0)
    assert one.data_size == 200 and one.train_steps == 20 and one.label == "ω_science=0.3"
    both = ptm.loc["science+coding"]
    assert both.heuristic and both.data_size == 300 and both.train_steps == 30
    assert json.loads(both.omega) == {"coding": 0.1, "science": 0.2}
    assert both.general == 40.0
    assert df[["general", "science", "coding", "safety", "xstest_safe"]].dtypes.eq("float64").all()


def test_row_kinds_and_partial_points(lab):
    store, exp, b, resolver = lab
    specs = plan_jobs(exp, base_points(exp, b), resolver, fake_fingerprinter, axes=["general"], builder=FakeBuilder())
    for s in specs:
        put(store, s, 50.0)
    df = results_frame(store, exp)
    assert list(df.kind) == ["base", "general", "skill", "skill", "rt"]
    assert df.omega.isna().sum() == 5
    assert df.general.tolist() == [50.0] * 4 + [55.0]
    assert df[df.kind != "rt"].science.isna().all()  # not measured yet: NaN, not 0


def test_the_experiments_engine_and_then_the_newest_record_wins(lab):
    store, exp, b, resolver = lab
    spec, = plan_jobs(exp, [ptm_point(exp, b, {"science": 0.3})], resolver, fake_fingerprinter,
                      axes=["general"], builder=FakeBuilder())
    put(store, spec, 11.0, created_at="2026-01-01T00:00:00.000Z")
    newer, = plan_jobs(exp.model_copy(update={"engine": "hf"}), [ptm_point(exp, b, {"science": 0.3})],
                       resolver, fake_fingerprinter, axes=["general"], builder=FakeBuilder())
    put(store, newer, 22.0, engine="hf", created_at="2026-02-01T00:00:00.000Z")
    assert results_frame(store, exp).set_index("kind").loc["ptm", "general"] == 11.0
    assert results_frame(store, exp.model_copy(update={"engine": "hf"})).set_index("kind").loc["ptm", "general"] == 22.0


def test_axis_metric_selection(lab):
    store, exp, b, resolver = lab
    spec, = plan_jobs(exp, [ptm_point(exp, b, {"science": 0.3})], resolver, fake_fingerprinter,
                      axes=["safety"], builder=FakeBuilder())
    r = record_for(spec, metrics={"score": 70.0, "refusal_rate": 12.0}, counts={}, wall_s=0, swap_s=0,
                   engine="fake", versions={})
    store.put_result(r)
    exp2 = exp.model_copy(update={"axes": {**exp.axes, "xstest_safe": exp.axes["xstest_safe"].model_copy(
        update={"metric": "refusal_rate"})}})
    row = results_frame(store, exp2).set_index("kind").loc["ptm"]
    assert row.safety == 70.0 and row.xstest_safe == 12.0
