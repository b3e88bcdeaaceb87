"""The adapter: sources, confinement of user paths, merge requests, the store-backed queue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ptm_core.app import data, testkit


def test_export_names_are_confined(tmp_path):
    out = data.export_path("my-merge_1.0", tmp_path)
    assert out == (tmp_path / "my-merge_1.0").resolve()
    for bad in ("../escape", "/etc/x", "a/b", "", ".", "..", ".hidden", "x" * 101):
        with pytest.raises(data.AppDataError):
            data.export_path(bad, tmp_path)
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(data.AppDataError):
        data.confine("link/x", tmp_path)


def test_experiment_files_must_lie_under_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PTM_APP_ROOT", str(tmp_path / "root"))
    (tmp_path / "root").mkdir()
    outside = testkit.write_frame_experiment(tmp_path, "outside")
    with pytest.raises(data.AppDataError, match="outside"):
        data.open_source(str(outside))
    inside = testkit.write_frame_experiment(tmp_path / "root", "inside")
    src = data.open_source("inside")  # a directory with results.csv, relative to the root
    assert isinstance(src, data.FrameFileSource) and src.path == inside.resolve()
    with pytest.raises(data.AppDataError, match="no such file"):
        data.open_source("missing.csv")
    with pytest.raises(data.AppDataError, match="expected"):
        (tmp_path / "root" / "x.txt").write_text("hi")
        data.open_source("x.txt")


def test_results_are_rebuilt_only_when_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("PTM_APP_ROOT", str(tmp_path))
    path = testkit.write_frame_experiment(tmp_path, "f")
    src = data.open_source(str(path))
    a = src.results()
    assert src.results() is a
    os.utime(path, ns=(1, 1))
    assert src.results() is not a


def test_paper_source_is_read_only():
    src = data.open_source("paper")
    res = src.results()
    assert not res.empty and not src.can_queue()
    assert src.submit(data.MergeRequest.make("task_arithmetic", {"science": 0.5})).status == "unavailable"
    assert src.jobs().empty


def test_merge_requests():
    r = data.MergeRequest.make("ties", {"science": 0.25, "coding": 0.0}, density=0.3)
    assert r.kind == "ties" and r.active == {"science": 0.25} and r.density == 0.3
    assert "density=0.3" in r.label()
    with pytest.raises(data.AppDataError, match="one skill"):
        data.MergeRequest.make("linear", {"science": 0.2, "coding": 0.3})
    with pytest.raises(data.AppDataError, match="unknown method"):
        data.MergeRequest.make("soup", {"science": 0.2})
    assert data.MergeRequest.make("task_arithmetic", {"a": 0.1}) == \
        data.MergeRequest.make("task_arithmetic", {"a": 0.1})  # hashable, for the job table


def test_zip_of_an_export(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"x" * 10)
    import io
    import zipfile
    z = zipfile.ZipFile(io.BytesIO(data.zip_dir(d)))
    assert sorted(z.namelist()) == ["m/config.json", "m/model.safetensors"]


# --- the store-backed source, with the store's fakes (no models) -----------------------------
@pytest.fixture
def fake_store(tmp_path, monkeypatch):
    import ptm_core.testing.store as T
    from ptm_core.store.db import Store
    from ptm_core.orchestrate.jobs import enqueue_points
    from ptm_core.orchestrate.points import Grid, grid_points

    monkeypatch.setenv("PTM_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("PTM_CACHED_RUNS", str(tmp_path / "no_cached_runs"))
    monkeypatch.setenv("PTM_APP_ROOT", str(tmp_path))
    path = T.write_experiment(tmp_path)
    exp, b, resolver = T.fake_lab(tmp_path)
    store = Store(tmp_path / "store.sqlite")
    pts, _ = grid_points(exp, b, Grid(omegas=[0, 0.25, 0.5, 0.75, 1.0], heuristic=True, pairs=True))
    enqueue_points(store, exp, pts, resolver, T.fake_fingerprinter, builder=b)
    monkeypatch.setitem(data.WIRING, "builder", b)
    monkeypatch.setitem(data.WIRING, "suite_resolver", resolver)
    monkeypatch.setitem(data.WIRING, "fingerprinter", T.fake_fingerprinter)

    def work():
        from ptm_core.orchestrate.worker import run_worker
        return run_worker(store, lambda e: T.FakeEngine(), resolver, once=True, builder=b,
                          fingerprinter=T.fake_fingerprinter)
    work()
    return path, store, work


def test_store_source_queue_progress_and_measured_result(fake_store):
    path, store, work = fake_store
    src = data.open_source(str(path))
    res = src.results()
    assert res.skills == ["science", "coding"]
    assert res.heuristic_omega("science") == pytest.approx(0.2)
    req = data.MergeRequest.make("task_arithmetic", {"science": 0.3, "coding": 0.0})
    assert src.lookup(req) is None
    est = src.estimate(req)
    assert set(est) >= {"general", "science"}
    assert not src.worker().alive  # no worker running now: the page says points will wait
    sub = src.submit(req)
    assert sub.status == "queued" and sub.job_ids
    assert src.progress(sub.job_ids).state == "queued"
    assert src.queue_counts()["queued"] == len(sub.job_ids)
    assert not src.jobs().empty
    work()
    assert src.progress(sub.job_ids).state == "done"
    row = src.lookup(req)
    assert row is not None and row["label"] == "ω_science=0.3"
    assert src.submit(req).status == "cached"


def test_store_source_failed_job_is_readable(fake_store, monkeypatch):
    path, store, work = fake_store
    import ptm_core.testing.store as T
    src = data.open_source(str(path))
    bad = T.fake_suite_resolver(fail_axes={"general": "boom: the suite exploded"})
    monkeypatch.setitem(data.WIRING, "suite_resolver", bad)
    sub = src.submit(data.MergeRequest.make("task_arithmetic", {"science": 0.9}))
    from ptm_core.orchestrate.worker import run_worker
    run_worker(store, lambda e: T.FakeEngine(), bad, once=True, builder=data.WIRING["builder"],
               fingerprinter=T.fake_fingerprinter)
    p = src.progress(sub.job_ids)
    assert p.state == "failed" and "boom" in p.error
    jobs = src.jobs()
    assert jobs["error"].str.contains("boom").any()
    assert src.retry_failed() >= 1


def test_store_source_hides_results_of_a_rebuilt_model_until_it_is_measured_again(fake_store,
                                                                                   monkeypatch):
    """The app shows what was measured on the models as they are now (docs/store.md, "Current
    results"): a model rebuilt under the same path takes its results off the pages, and the
    page's cache notices without a new result being stored."""
    import ptm_core.testing.store as T
    from ptm_core.orchestrate.worker import run_worker

    path, store, _ = fake_store
    src = data.open_source(str(path))
    req = data.MergeRequest.make("task_arithmetic", {"science": 0.5, "coding": 0.0})
    before, version = src.results().frame, src.version()
    assert src.lookup(req) is not None
    science = src.exp.skills["science"].model
    (Path(science) / "model.safetensors").write_bytes(b"other weights")  # rebuilt
    rebuilt = lambda ref: T.fake_fingerprinter(ref + ("-v2" if ref == science else ""))  # noqa: E731
    monkeypatch.setitem(data.WIRING, "fingerprinter", rebuilt)
    assert src.version() != version
    after = src.results().frame
    uses_science = lambda f: f[f.kind.isin(["skill", "ptm"]) & f.skills.str.contains("science")]  # noqa: E731
    assert len(uses_science(before)) > 0 and uses_science(after).empty
    assert len(after[after.skills == "coding"]) == len(before[before.skills == "coding"])
    assert src.lookup(req) is None
    sub = src.submit(req)
    assert sub.status == "queued"  # new weights: not the stored result
    run_worker(store, lambda e: T.FakeEngine(), data.WIRING["suite_resolver"], once=True,
               builder=data.WIRING["builder"], fingerprinter=rebuilt)
    assert src.progress(sub.job_ids).state == "done"
    row = src.lookup(req)
    assert row is not None and row["label"] == "ω_science=0.5"
    frame = src.results().frame
    assert len(frame[frame.label == "ω_science=0.5"]) == 1
