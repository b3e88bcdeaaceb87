"""data/smollm2/smollm2.yml as ptm_core.smollm2.experiment writes it, read back by the store."""

from __future__ import annotations

import json

import pytest

from ptm_core.errors import PTMError
from ptm_core.smollm2 import data, runs, suites
from ptm_core.smollm2.build import RUN_FILE, World
from ptm_core.smollm2.experiment import AXES, write_experiment
from ptm_core.store.experiment import Experiment


def _world(root, built):
    world = World(adapters=root / "adapters", models=root / "models", pre_record=root / "pre.json")
    for i, name in enumerate(built):  # records as the build writes them (only what is read)
        (root / "adapters" / name).mkdir(parents=True)
        record = {"spec": world.plan[name].describe(), "train": {"steps": 10 + i}}
        (root / "adapters" / name / RUN_FILE).write_text(json.dumps(record))
    return world


def test_the_experiment_file_loads_and_points_at_the_materialized_models(tmp_path):
    plan = runs.plan()
    world = _world(tmp_path, [r.name for r in plan])
    dest = tmp_path / "data" / "smollm2"
    exp = Experiment.load(write_experiment(world, dest))
    assert exp.base == str(world.model_dir("pre").resolve())
    assert exp.general.model == str(world.model_dir("general").resolve())
    assert exp.general.size == data.TRAIN_SIZES["general"]
    assert set(exp.skills) == set(data.SKILLS) and set(exp.axes) == set(AXES)
    for s in data.SKILLS:
        assert exp.skills[s].model == str(world.model_dir(f"skill-{s}").resolve())
        assert exp.heuristic_omega(s) == data.TRAIN_SIZES[s] / data.TRAIN_SIZES["general"]
        # WiSE-FT interpolates toward the CFT run on all of D
        assert exp.cft_model(s).model == str(world.model_dir(runs.wise_ft_source(s)).resolve())
    refs = [r for r in plan if r.kind in ("cft", "rt")]
    assert len(exp.references) == len(refs) == 2 * len(runs.FRACTIONS) * len(data.SKILLS) + 2
    rt_all = next(r for r in exp.references if r.kind == "rt" and len(r.skills) == 3)
    assert rt_all.data_size == sum(data.TRAIN_SIZES[s] for s in data.SKILLS)  # G not counted
    assert {a.suite for a in exp.axes.values()} == set(suites.SUITES)
    assert exp.axis_role("xstest_safe") == "exaggerated_refusals"
    assert exp.axis_role("safety") == "safety"


def test_only_built_references_are_listed(tmp_path):
    needed = ["general", *(f"skill-{s}" for s in data.SKILLS)]
    world = _world(tmp_path, [*needed, "cft-science-2"])
    exp = Experiment.load(write_experiment(world, tmp_path / "dest"))
    assert [(r.kind, r.skills) for r in exp.references] == [("cft", ["science"])]


def test_the_merge_inputs_must_be_built(tmp_path):
    world = _world(tmp_path, ["general", "skill-science"])
    with pytest.raises(PTMError, match="not built yet: skill-coding, skill-safety"):
        write_experiment(world, tmp_path / "dest")
