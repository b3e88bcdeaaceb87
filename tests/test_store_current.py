"""Results of rebuilt models: the frame the app and the reports read, and the exported file,
show only results measured on the models as they are now (store/current.py,
merge/fingerprint.py, docs/store.md "Current results"), on both backends; results of models
that are not materialized here (the shipped results on a checkout without checkpoints) stay."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ptm_core.merge.fingerprint import (
    current_fingerprints, legacy_fingerprint, model_dir_fingerprint, models_stamp,
)
from ptm_core.orchestrate.jobs import enqueue_points
from ptm_core.orchestrate.points import base_points, ptm_point, reference_points
from ptm_core.orchestrate.worker import run_worker
from ptm_core.store.cached import export_experiment, loads_records
from ptm_core.store.current import CurrentModels, current_records
from ptm_core.store.db import Store
from ptm_core.store.frame import results_frame
from ptm_core.testing.store import FakeBuilder, FakeEngine, fake_lab

REPO = Path(__file__).resolve().parents[1]
MODELS = ("pre", "general", "science", "coding", "cft_science")


def build_model(path: Path, seed: int) -> None:
    """A real (tiny) model directory: what fingerprints and `Checkpoint` read."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"num_hidden_layers": 1}))
    w = np.random.default_rng(seed).standard_normal((64, 64)).astype(np.float32)
    save_file({"model.layers.0.mlp.weight": w}, str(path / "model.safetensors"))


def materialized_lab(root: Path):
    exp, b, resolver = fake_lab(root)
    for i, m in enumerate(MODELS):
        build_model(root / "models" / m, seed=i)
    return exp, b, resolver


def measure(store, exp, b, resolver, points, *, subsample=None, max_jobs=None):
    """Queue and run the points with the real checkpoint fingerprints (no fakes for those)."""
    enqueue_points(store, exp, points, resolver, None, builder=b, subsample=subsample)
    return run_worker(store, lambda e: FakeEngine(), resolver, once=True, builder=b,
                      max_jobs=max_jobs)


def science_rows(df):
    return df[(df.skills == "science") & (df.kind != "rt")]  # rt: imported scores, no model


@pytest.fixture
def lab(tmp_path, store_at):
    exp, b, resolver = materialized_lab(tmp_path)
    store = Store(store_at("a"))
    store.store_at = store_at
    points = [*base_points(exp, b), *reference_points(exp, b),
              ptm_point(exp, b, {"science": 0.5}), ptm_point(exp, b, {"coding": 0.5})]
    stats = measure(store, exp, b, resolver, points)
    assert stats.done == len(points) * 4 and stats.failed == 0
    return store, exp, b, resolver, tmp_path


def test_the_light_fingerprint_is_the_checkpoints(tmp_path):
    from ptm_core.merge.checkpoint import Checkpoint
    build_model(tmp_path / "m", seed=3)
    (tmp_path / "m" / "tokenizer.json").write_text("{}")
    with Checkpoint.open(str(tmp_path / "m")) as ck:
        assert model_dir_fingerprint(str(tmp_path / "m")) == ck.fingerprint()
    prints = current_fingerprints([str(tmp_path / "m"), str(tmp_path / "absent")])
    assert prints[str(tmp_path / "absent")] == ()  # what is not here cannot be checked
    assert prints[str(tmp_path / "m")] == (ck.fingerprint(), legacy_fingerprint(str(tmp_path / "m")))


def test_a_rebuilt_model_leaves_the_frame_until_it_is_measured_again(lab):
    store, exp, b, resolver, root = lab
    before = results_frame(store, exp, current=current_fingerprints(exp))
    assert before.attrs["stale_records"] == 0
    assert before.equals(results_frame(store, exp))  # nothing stale: the same frame
    assert len(science_rows(before)) == 3  # θ_D science, its CFT checkpoint, ω = 0.5
    stamp = models_stamp(exp)

    build_model(root / "models" / "science", seed=99)  # other weights, same path
    assert models_stamp(exp) != stamp  # what the app's cache key sees
    now = current_fingerprints(exp)
    df = results_frame(store, exp, current=now)
    assert df.attrs["stale_records"] == 2 * 4  # θ_D science and ω = 0.5, four suite runs each
    assert list(science_rows(df).kind) == ["cft"]  # its CFT checkpoint was not rebuilt
    others = before[before.skills != "science"].reset_index(drop=True)
    assert df[df.skills != "science"].reset_index(drop=True).equals(others)
    assert len(science_rows(results_frame(store, exp))) == 3  # unfiltered, the stale ones show

    stats = measure(store, exp, b, resolver, [ptm_point(exp, b, {"science": 0.5})])
    assert stats.done == 4  # new weights, new keys: measured again
    df = results_frame(store, exp, current=now)
    rows = df[(df.kind == "ptm") & (df.skills == "science")]
    assert len(rows) == 1 and rows.general.notna().all()  # the new result, once
    assert df.attrs["stale_records"] == 2 * 4  # the old ones are still stored, not shown

    # export: the same rule, whatever the store holds
    path = export_experiment(store, exp.name, root / "cached_runs", fingerprints=now)
    shipped = {r.key for r in loads_records(path.read_text())}
    stale = {r.key for r in current_records(store.results(exp.name), now).stale}
    assert len(stale) == 8 and not shipped & stale
    assert shipped == {r.key for r in store.results(exp.name)} - stale


def test_a_quick_first_pass_on_the_rebuilt_model_beats_the_old_full_run(lab):
    """A full run beats a subsample run, but not one of weights that are gone."""
    store, exp, b, resolver, root = lab
    build_model(root / "models" / "science", seed=99)
    stats = measure(store, exp, b, resolver, [ptm_point(exp, b, {"science": 0.5})], subsample=2,
                    max_jobs=4)  # the quick pass of the four suite groups; the full one waits
    assert stats.done == 4 and store.cancel(experiment=exp.name) == 4
    row = results_frame(store, exp, current=current_fingerprints(exp)).set_index("label").loc["ω_science=0.5"]
    old = results_frame(store, exp).set_index("label").loc["ω_science=0.5"]
    assert bool(row.preliminary) and not bool(old.preliminary)
    assert row.general == pytest.approx(old.general + 0.5)  # FakeSuite: a subsample scores +0.5


def test_shipped_results_stay_where_the_models_are_not_materialized(lab, tmp_path):
    store, exp, _, _, root = lab
    shipped = export_experiment(store, exp.name, tmp_path / "cached_runs")
    n = len(store.results(exp.name))

    elsewhere = tmp_path / "clone"  # another checkout: cached_runs/ imported, no checkpoints
    exp_b, _, _ = fake_lab(elsewhere)
    for m in MODELS:
        shutil.rmtree(elsewhere / "models" / m)
    fresh = Store(store.store_at("fresh"), cached_dir=shipped.parent)
    assert set(current_fingerprints(exp_b).values()) == {()}
    assert not CurrentModels(current_fingerprints(exp_b))
    df = results_frame(fresh, exp_b, current=current_fingerprints(exp_b))
    assert df.attrs["stale_records"] == 0
    assert df.drop(columns=["source"]).equals(results_frame(store, exp).drop(columns=["source"]))

    # the same weights materialized there (other paths): still current, found by their role
    for m in MODELS:
        shutil.copytree(root / "models" / m, elsewhere / "models" / m)
    df = results_frame(fresh, exp_b, current=current_fingerprints(exp_b))
    assert df.attrs["stale_records"] == 0 and len(df) == len(results_frame(store, exp))
    # ... and a model rebuilt there makes the shipped results of it stale there too
    build_model(elsewhere / "models" / "science", seed=99)
    split = current_records(fresh.results(exp_b.name), current_fingerprints(exp_b))
    assert len(split.stale) == 8 and len(split.current) == n - 8
    assert all("science" in json.dumps(r.fingerprints) for r in split.stale)


def _record():
    from ptm_core.store.records import ResultRecord
    return ResultRecord(key="k", experiment="e", point_id="p", kind="base", skills="", omega=None,
                        label="θ_pre", data_size=None, train_steps=None, method="base",
                        recipe_key=None, recipe_yaml=None, heuristic=False, suite="s",
                        suite_version="1", suite_options={}, axes=["general"],
                        metrics={"score": 1.0}, counts={"score": 1}, wall_s=None, swap_s=None,
                        engine="fake", versions={}, sampling={}, fingerprints={})


def test_foreign_paths_match_one_local_model_or_none():
    m = CurrentModels({"/here/data/lab/models/pre": "a", "/here/runs/lab/models/pre-1": "b",
                       "/here/x/models/skill": "c", "/here/y/models/skill": "d"})
    assert m.local_path("/there/data/lab/models/pre") == "/here/data/lab/models/pre"
    assert m.local_path("/there/runs/lab/models/pre-1") == "/here/runs/lab/models/pre-1"
    assert m.local_path("/there/pre") is None  # one shared component is not enough
    assert m.local_path("/there/z/models/skill") is None  # two candidates equally close
    assert m.local_path("/there/x/models/skill") == "/here/x/models/skill"
    # a model of the experiment that is not materialized is never taken for another one
    m = CurrentModels({"/here/data/lab/models/pre": "a", "/here/runs/lab/models/pre": ()})
    assert m.local_path("/there/runs/lab/models/pre") == "/here/runs/lab/models/pre"
    record = dataclasses.replace(_record(), fingerprints={"/here/runs/lab/models/pre": "z",
                                                          "/there/data/lab/models/pre": "a"})
    assert m.status(record) == "current"
    assert m.status(dataclasses.replace(record, fingerprints={"/there/data/lab/models/pre": "b"})) == "stale"


def test_results_under_the_older_fingerprint_scheme_are_current_until_measured_again(lab):
    """Scheme 1 named the same weights otherwise: those records are current, and give way to
    a record of the same measurement keyed under the current scheme."""
    store, exp, _, _, _ = lab
    now = current_fingerprints(exp)
    records = store.results(exp.name)
    legacy = [dataclasses.replace(r, key="old-" + r.key,
                                  fingerprints={p: now[p][1] for p in r.fingerprints})
              for r in records]
    split = current_records(legacy, now)
    assert len(split.current) == len(records) and not split.stale
    split = current_records(records + legacy, now)
    assert split.current == records and split.superseded == legacy
    rebuilt = {**now, exp.base: ("other", "other-legacy")}
    assert all(r in current_records(legacy, rebuilt).stale for r in legacy
               if exp.base in r.fingerprints)


def test_the_shipped_lab_results_are_all_current_on_the_shipped_models(tmp_path):
    """cached_runs/lab.jsonl was keyed under fingerprint scheme 1, on the checkpoints shipped in
    data/lab/models: none of it is stale here, so the README's lab tables read all of it."""
    from ptm_core.store.experiment import Experiment

    exp = Experiment.load(REPO / "data" / "lab" / "lab.yml")
    records = loads_records((REPO / "cached_runs" / "lab.jsonl").read_text())
    now = current_fingerprints(exp)
    assert str(REPO / "data" / "lab" / "models" / "pre") in now
    split = current_records(records, now)
    assert not split.stale and not split.superseded and len(split.current) == len(records)
    checked = CurrentModels(now)
    assert any(checked.local_path(p) for r in records for p in r.fingerprints)  # really compared
