"""cached_runs/: export -> import round trip, idempotent import, loads with no computation."""

import json

import pytest

from ptm_core.store.cached import (
    CachedRunsError, dumps_records, export_experiment, import_cached, import_file, loads_records,
)
from ptm_core.store.db import Store
from ptm_core.store.frame import results_frame
from ptm_core.orchestrate.jobs import enqueue_points
from ptm_core.orchestrate.points import base_points, ptm_point
from ptm_core.testing.store import FakeBuilder, FakeEngine, fake_fingerprinter, fake_lab
from ptm_core.orchestrate.worker import run_worker


@pytest.fixture
def measured(tmp_path, store_at):  # each test on each backend
    exp, b, resolver = fake_lab(tmp_path)
    store = Store(store_at("a"))
    store.store_at = store_at
    points = base_points(exp, b) + [ptm_point(exp, b, {"science": w}) for w in (0.0, 0.5, 1.0)]
    enqueue_points(store, exp, points, resolver, fake_fingerprinter, builder=FakeBuilder())
    stats = run_worker(store, lambda e: FakeEngine(), resolver, once=True, builder=FakeBuilder(),
                       fingerprinter=fake_fingerprinter)
    assert stats.done == 7 * 4
    return store, exp, tmp_path


def test_round_trip_through_cached_runs(measured):
    store, exp, tmp = measured
    path = export_experiment(store, exp.name, tmp / "cached_runs")
    assert path == tmp / "cached_runs" / "fakelab.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 28 and all(json.loads(x)["format"] == "ptm-result/1" for x in lines)
    # a fresh store (the app on a new checkout) loads them with no engine at all
    fresh = Store(store.store_at("fresh"), cached_dir=tmp / "cached_runs")
    assert fresh.import_report.new_records == 28 and fresh.import_report.files == ["fakelab.jsonl"]
    fresh.register_experiment(exp)
    a = results_frame(store, exp).drop(columns=["source"])
    b = results_frame(fresh, exp)
    assert (b.source[b.kind != "rt"] == "cached").all()
    assert b.drop(columns=["source"]).equals(a)
    orig = {r.key: r for r in store.results(exp.name)}
    for r in fresh.results(exp.name):
        o = orig[r.key]
        o.source = "cached"
        assert r == o  # every field survives, created_at included
    # cached results count as measured: asking for them makes no job
    _, b2, resolver = fake_lab(tmp)
    outs = enqueue_points(fresh, exp, [ptm_point(exp, b2, {"science": 0.5})], resolver, fake_fingerprinter, builder=FakeBuilder())
    assert {o.status for o in outs} == {"cached"}


def test_export_is_deterministic_and_diff_friendly(measured):
    store, exp, tmp = measured
    p = export_experiment(store, exp.name, tmp / "c1")
    fresh = Store(tmp / "fresh.sqlite", cached_dir=tmp / "c1")
    q = export_experiment(fresh, exp.name, tmp / "c2")
    assert p.read_bytes() == q.read_bytes()  # re-export of the same results: no diff
    first = json.loads(p.read_text().splitlines()[0])
    assert list(first) == sorted(first)  # keys sorted within a line
    assert first["kind"] == "base"  # lines sorted by kind, skills, omega, label, suite


def test_export_can_keep_one_engine_only(measured):
    """Results measured under an earlier engine setting stay in the store but are not shipped."""
    store, exp, tmp = measured
    assert {r.engine for r in store.results(exp.name)} == {"fake"}
    with pytest.raises(CachedRunsError, match="engine 'fake:dtype=float32'"):
        export_experiment(store, exp.name, tmp / "none", engine="fake:dtype=float32")
    assert not (tmp / "none" / "fakelab.jsonl").exists()
    path = export_experiment(store, exp.name, tmp / "one", engine="fake")
    assert len(path.read_text().splitlines()) == len(store.results(exp.name))


def test_export_drops_results_of_models_rebuilt_since(measured):
    store, exp, tmp = measured
    records = store.results(exp.name)
    some = next(r for r in records if len(r.fingerprints) == 1)  # a baseline: one model
    (path, fp), = some.fingerprints.items()
    kept = export_experiment(store, exp.name, tmp / "now", fingerprints={path: fp + "-rebuilt"})
    shipped = [json.loads(x) for x in kept.read_text().splitlines()]
    assert shipped and all(path not in r["fingerprints"] for r in shipped)
    assert len(shipped) == sum(path not in r.fingerprints for r in records)
    # unchanged fingerprints (or models it cannot check) drop nothing
    same = export_experiment(store, exp.name, tmp / "same", fingerprints={path: fp})
    assert len(same.read_text().splitlines()) == len(records)


def test_import_is_idempotent(measured):
    store, exp, tmp = measured
    export_experiment(store, exp.name, tmp / "cr")
    fresh = Store(tmp / "fresh.sqlite")
    first = import_cached(fresh, tmp / "cr")
    second = import_cached(fresh, tmp / "cr")
    assert first.new_records == 28 and second.skipped == ["fakelab.jsonl"] and second.new_records == 0
    assert import_file(fresh, tmp / "cr" / "fakelab.jsonl", force=True) == 0  # same records: no dupes
    assert len(fresh.results(exp.name)) == 28


def test_malformed_file_is_reported_with_file_and_line_and_nothing_is_imported(measured):
    store, exp, tmp = measured
    path = export_experiment(store, exp.name, tmp / "bad")
    lines = path.read_text().splitlines()
    d = json.loads(lines[2])
    d["metrics"] = {"score": 250.0}
    lines[2] = json.dumps(d)
    path.write_text("\n".join(lines) + "\n")
    fresh = Store(tmp / "fresh.sqlite")
    with pytest.raises(CachedRunsError, match=r"fakelab.jsonl:3: .*not a number in 0-100"):
        import_cached(fresh, tmp / "bad", strict=True)
    assert fresh.results() == []
    report = import_cached(fresh, tmp / "bad")  # non-strict (app startup): reported, others load
    assert report.errors and "fakelab.jsonl:3" in report.errors[0]
    with pytest.raises(CachedRunsError, match="<x>:1: not valid JSON"):
        loads_records("{nope\n", "<x>")
    with pytest.raises(CachedRunsError, match="lacks field"):
        loads_records('{"format": "ptm-result/1", "key": "k"}\n', "<x>")
    with pytest.raises(CachedRunsError, match="unknown format"):
        loads_records('{"format": "ptm-result/9"}\n', "<x>")


def test_export_of_nothing_is_an_error_and_writes_no_file(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(CachedRunsError, match="no results for experiment 'nope'"):
        export_experiment(store, "nope", tmp_path / "out")
    assert not (tmp_path / "out" / "nope.jsonl").exists()
    assert dumps_records([]) == ""


def test_results_shipped_from_another_checkout_are_reused(tmp_path):
    """Paths differ between machines; keys depend on roles and weights, not on paths."""
    import hashlib
    from pathlib import Path

    def same_weights(ref):  # the same model files, wherever they lie
        return hashlib.sha256(Path(ref).name.encode()).hexdigest()[:16]

    def measure(root, store):
        exp, b, resolver = fake_lab(root)
        pts = [ptm_point(exp, b, {"science": w}) for w in (0.0, 0.5)]
        outs = enqueue_points(store, exp, pts, resolver, same_weights, builder=FakeBuilder())
        run_worker(store, lambda e: FakeEngine(), resolver, once=True, builder=FakeBuilder(),
                   fingerprinter=same_weights)
        return exp, pts, outs

    exp_a, pts_a, _ = measure(tmp_path / "machine_a", Store(tmp_path / "a.sqlite"))
    export_experiment(Store(tmp_path / "a.sqlite"), "fakelab", tmp_path / "shipped")
    store_b = Store(tmp_path / "b.sqlite", cached_dir=tmp_path / "shipped")
    exp_b, b, resolver = fake_lab(tmp_path / "machine_b")
    assert exp_b.base != exp_a.base
    pts_b = [ptm_point(exp_b, b, {"science": w}) for w in (0.0, 0.5)]
    assert [p.recipe_key for p in pts_b] == [p.recipe_key for p in pts_a]  # same point ids
    outs = enqueue_points(store_b, exp_b, pts_b, resolver, same_weights, builder=FakeBuilder())
    assert {o.status for o in outs} == {"cached"}  # nothing to compute
    df = results_frame(store_b, exp_b)
    assert len(df[df.kind == "ptm"]) == 2 and df[df.kind == "ptm"].science.notna().all()
    # different weights under the same paths: not reused
    outs = enqueue_points(store_b, exp_b, pts_b[:1], resolver, lambda r: "retrained-" + same_weights(r),
                          builder=FakeBuilder())
    assert {o.status for o in outs} == {"queued"}


def test_the_cached_command_imports_and_exports_through_any_store(measured, capsys):
    """`python -m ptm_core cached import|export --store LOCATION` (a file or a postgresql:// URL)."""
    from ptm_core.store.cached_cli import main

    store, exp, tmp = measured
    assert main(["export", exp.name, "--store", str(store.store_at("a")), "--dir", str(tmp / "c")]) == 0
    fresh = str(store.store_at("cli"))
    assert main(["import", "--store", fresh, "--dir", str(tmp / "c")]) == 0
    assert "imported 28 new records from 1 file(s)" in capsys.readouterr().out
    assert {r.key for r in Store(fresh).results(exp.name)} == {r.key for r in store.results(exp.name)}
