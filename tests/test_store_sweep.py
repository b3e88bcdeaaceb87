"""`python -m ptm_core sweep`: grids, inline runs through one warm engine, enqueue, skipping cached."""

import io
import json

import pytest

from ptm_core import catalogue
from ptm_core.errors import PTMError
from ptm_core.orchestrate import sweep
from ptm_core.store.db import Store
from ptm_core.store.frame import results_frame
from ptm_core.orchestrate.points import Grid, grid_points
from ptm_core.orchestrate.sweep import parse_omegas
from ptm_core.testing.store import (
    FakeBuilder, FakeEngine, fake_fingerprinter, fake_lab, fake_suite_resolver, write_experiment,
)
from ptm_core.orchestrate.worker import run_worker


def run(argv, store, resolver=None, factory=None):
    out = io.StringIO()
    engines = []

    def default_factory(exp):
        engines.append(FakeEngine())
        return engines[-1]

    rc = sweep.main(argv, engine_factory=factory or default_factory,
                    suite_resolver=resolver or fake_suite_resolver(), builder=FakeBuilder(),
                    fingerprinter=fake_fingerprinter, store=store, out=out)
    return rc, out.getvalue(), engines


def test_parse_omegas():
    assert parse_omegas("0:1:0.1") == [i / 10 for i in range(11)]
    assert 0.3 in parse_omegas("0:1:0.1")  # rounded: 3 * 0.1 is not 0.30000000000000004 here
    assert parse_omegas("0.5, 0,0.5") == [0.0, 0.5]
    assert parse_omegas("0:0.05:0.025") == [0.0, 0.025, 0.05]
    for bad in ("0:1", "a:b:c", "1:0:0.1", "0:1:0", ""):
        with pytest.raises(PTMError, match="--omegas"):
            parse_omegas(bad)


def test_grid_contents(tmp_path):
    exp, b, _ = fake_lab(tmp_path)
    pts, notes = grid_points(exp, b, Grid(omegas=[0.0, 1.0], methods=["task_arithmetic", "wise_ft", "dare_ties"],
                                          pairs=True, heuristic=True))
    kinds = [p.kind for p in pts]
    assert kinds[:5] == ["base", "general", "skill", "skill", "cft"]
    # 2 skills x (2 ω + heuristic), + the pair at the heuristic ω (with two skills the pair is
    # also "all skills": deduplicated by recipe key)
    assert kinds.count("ptm") == 2 * 3 + 1
    assert kinds.count("wise_ft") == 3 and kinds.count("dare_ties") == 7
    assert any("no CFT checkpoint for coding" in n for n in notes)
    pair = [p for p in pts if p.kind == "ptm" and len(p.skills) == 2]
    assert len(pair) == 1 and pair[0].omega == {"science": 0.2, "coding": 0.1} and pair[0].heuristic
    dare = [p for p in pts if p.kind == "dare_ties"][0]
    assert "density: 0.5" in dare.recipe_yaml and "dare_ties" in dare.recipe_yaml
    assert len({p.recipe_key for p in pts}) == len(pts)  # deduplicated
    # --omegas none: only the heuristic points (each skill, then the pair)
    pts, _ = grid_points(exp, b, Grid(omegas=parse_omegas("none"), methods=["ties"],
                                      heuristic=True, baselines=False, references=False))
    assert [(p.kind, p.omega) for p in pts] == [
        ("ties", {"science": 0.2}), ("ties", {"coding": 0.1}), ("ties", {"science": 0.2, "coding": 0.1})]
    with pytest.raises(PTMError, match="unknown method"):
        grid_points(exp, b, Grid(methods=["magic"]))
    with pytest.raises(PTMError, match="unknown skill"):
        grid_points(exp, b, Grid(skills=["poetry"]))


def test_inline_sweep_stores_results_and_a_second_run_computes_nothing(tmp_path):
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    rc, out, engines = run([str(path), "--omegas", "0:1:0.5"], store)
    assert rc == 0, out
    # θ_pre, θ_G, 2 θ_D, 1 CFT checkpoint, 2 skills x 3 ω
    assert "11 points x 4 suite(s) = 44 evaluations" in out and "0 cached, 44 evaluated, 0 failed" in out
    assert len(engines) == 1  # one warm engine
    assert len(engines[0].applied) == 11  # one weight swap per point, not per suite
    df = results_frame(store, "fakelab")
    assert len(df[df.kind == "ptm"]) == 6 and df.general.notna().all()

    def no_engine(exp):
        raise AssertionError("a cached sweep must not start an engine")

    rc, out, _ = run([str(path), "--omegas", "0:1:0.5"], store, factory=no_engine)
    assert rc == 0 and "44 cached, 0 evaluated" in out


def test_enqueue_then_worker_matches_inline(tmp_path):
    path = write_experiment(tmp_path)
    inline, queued = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    assert run([str(path), "--omegas", "0,0.4", "--pairs"], inline)[0] == 0
    rc, out, engines = run([str(path), "--omegas", "0,0.4", "--pairs", "--enqueue", "--priority", "3"], queued)
    assert rc == 0 and "queued 40 job(s)" in out and engines == []
    assert {j.priority for j in queued.jobs()} == {3}
    rc, out, _ = run([str(path), "--omegas", "0,0.4", "--pairs", "--enqueue"], queued)
    assert "queued 0 job(s); 40 already queued or running" in out
    stats = run_worker(queued, lambda e: FakeEngine(), fake_suite_resolver(), once=True,
                       builder=FakeBuilder(), fingerprinter=fake_fingerprinter)
    assert stats.done == 40
    cols = ["kind", "skills", "omega", "label", "general", "science", "coding", "safety"]
    assert results_frame(queued, "fakelab")[cols].equals(results_frame(inline, "fakelab")[cols])


def test_dry_run_and_suite_selection(tmp_path):
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    run([str(path), "--omegas", "0", "--suites", "general", "--no-baselines", "--no-references"], store)
    rc, out, engines = run([str(path), "--omegas", "0,1", "--suites", "general,science",
                            "--no-baselines", "--no-references", "--dry-run"], store)
    assert rc == 0 and engines == []
    lines = [x for x in out.splitlines() if x.startswith("  ")]
    assert len(lines) == 2 * 2 * 2  # 2 skills x 2 ω x 2 suites
    assert sum(x.lstrip().startswith("cached") for x in lines) == 2  # ω=0 general, both skills
    with pytest.raises(PTMError, match="unknown axis"):
        run([str(path), "--suites", "poetry"], store)


def test_inline_failures_are_reported_and_the_rest_is_stored(tmp_path):
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    resolver = fake_suite_resolver(fail_axes={"coding": "coding sandbox unavailable"})
    rc, out, _ = run([str(path), "--omegas", "0.5", "--no-baselines", "--no-references"], store, resolver)
    assert rc == 1
    assert out.count("FAILED") == 2 and "coding sandbox unavailable" in out
    assert len(store.results("fakelab")) == 2 * 3


def test_engine_that_cannot_start_stops_the_sweep_with_a_clear_error(tmp_path):
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")

    def broken(exp):
        raise OSError("models/general: config.json missing")

    rc, out, _ = run([str(path), "--omegas", "0.5"], store, factory=broken)
    assert rc == 1 and out.count("FAILED") == 1
    assert "could not start the engine for experiment 'fakelab'" in out and "config.json" in out
    assert store.results() == []


def test_export_flag_writes_cached_runs(tmp_path):
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    rc, out, _ = run([str(path), "--omegas", "0.5", "--export", str(tmp_path / "cr")], store)
    assert rc == 0 and (tmp_path / "cr" / "fakelab.jsonl").read_text().count("\n") == 7 * 4


def test_export_drops_results_of_a_model_rebuilt_since_even_when_this_sweep_skips_it(tmp_path):
    path = write_experiment(tmp_path)
    store = Store(tmp_path / "s.sqlite")
    out_dir = tmp_path / "cr"
    run([str(path), "--omegas", "0.5", "--skills", "coding", "--no-baselines", "--no-references"], store)
    rebuilt = lambda ref: fake_fingerprinter(ref + ("-v2" if ref.endswith("coding") else ""))  # noqa: E731
    out = io.StringIO()
    rc = sweep.main([str(path), "--omegas", "0.5", "--skills", "science", "--no-baselines",
                     "--no-references", "--export", str(out_dir)], engine_factory=lambda exp: FakeEngine(),
                    suite_resolver=fake_suite_resolver(), builder=FakeBuilder(),
                    fingerprinter=rebuilt, store=store, out=out)
    records = [json.loads(line) for line in (out_dir / "fakelab.jsonl").read_text().splitlines()]
    assert rc == 0, out.getvalue()
    assert [json.loads(r["omega"]) for r in records] == [{"science": 0.5}] * 4  # the coding point is gone


def test_real_recipes_from_the_merge_package(tmp_path):
    """The default builder makes MergeKit recipes in the catalogue's forms."""
    from ptm_core.merge.recipe import Recipe
    from ptm_core.orchestrate.points import MergeKitBuilder
    from ptm_core.store.point import portable_key

    exp, _, _ = fake_lab(tmp_path)
    pts, _ = grid_points(exp, MergeKitBuilder(), Grid(omegas=[0.3], methods=list(catalogue.methods()),
                                                      heuristic=True))
    by_kind = {p.kind: p for p in pts}
    assert set(by_kind) >= {"base", "general", "skill", "cft", "ptm", "linear", "wise_ft", "ties",
                            "dare_ties", "dare_linear"}
    for p in pts:
        r = Recipe.from_yaml(p.recipe_yaml)
        assert portable_key(r, exp) == p.recipe_key and tuple(r.model_refs()) == p.model_refs
        assert "@general" in r.with_refs({exp.general.model: "@general"}).to_yaml() or p.kind in (
            "base", "skill", "cft")
    ta = Recipe.from_yaml(by_kind["ptm"].recipe_yaml)
    assert ta.merge_method == "task_arithmetic" and ta.base_model == exp.base
    assert MergeKitBuilder().load(by_kind["general"].recipe_yaml).model_refs() == [exp.general.model]


def test_a_skill_selection_keeps_only_references_of_those_skills(tmp_path):
    exp, b, _ = fake_lab(tmp_path)
    grid = dict(omegas=[], baselines=False)
    everything, _ = grid_points(exp, b, Grid(**grid))
    assert [(p.kind, p.skills) for p in everything] == [("cft", ("science",))]
    assert grid_points(exp, b, Grid(skills=["coding"], **grid))[0] == []
    science, _ = grid_points(exp, b, Grid(skills=["science"], **grid))
    assert [p.recipe_key for p in science] == [p.recipe_key for p in everything]


def test_together_keeps_only_points_over_all_the_chosen_skills(tmp_path):
    exp, b, _ = fake_lab(tmp_path)
    pts, _ = grid_points(exp, b, Grid(omegas=[], methods=["task_arithmetic", "ties"], heuristic=True,
                                      pairs=True, baselines=False, together=True))
    assert [(p.kind, p.omega) for p in pts] == [
        ("ptm", {"science": 0.2, "coding": 0.1}), ("ties", {"science": 0.2, "coding": 0.1})]
    # the CFT reference is trained on science alone: not "together" unless science is all
    pts, _ = grid_points(exp, b, Grid(omegas=[], skills=["science"], baselines=False, together=True))
    assert [p.kind for p in pts] == ["cft"]
    rc, out, _ = run([str(write_experiment(tmp_path / "cli")), "--omegas", "none", "--heuristic",
                      "--together", "--no-baselines", "--dry-run"], Store(tmp_path / "s.sqlite"))
    assert rc == 0 and "1 points x 4 suite(s)" in out, out
