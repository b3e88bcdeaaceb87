"""The lab's experiment file, generated from a build's bookkeeping, is a valid experiment."""

from __future__ import annotations

import json
from pathlib import Path

from ptm_core.lab.experiment import AXES, write_lab_experiment
from ptm_core.lab.world import SKILLS
from ptm_core.store.experiment import Experiment


def fake_build(root: Path) -> Path:
    """build.json and run.json files as a finished build writes them (no weights needed)."""
    sizes = {"general": 1000, "science": 220, "coding": 570, "safety": 240}
    (root / "models").mkdir(parents=True)
    (root / "build.json").write_text(json.dumps({"profile": "regime", "status": "complete",
                                                 "world": {"sizes": {"train": sizes}}}))

    def run(name, kind, skills, data, steps, size_index=None, fraction=1.0):
        d = root / "models" / name
        d.mkdir()
        (d / "run.json").write_text(json.dumps({"name": name, "kind": kind, "skills": skills, "data": data,
                                                "steps": steps, "size_index": size_index,
                                                "fraction": fraction}))

    run("pre", "pretrain", [], {}, 500)
    run("general", "general", [], {"general": 1000}, 90)
    for s in SKILLS:
        run(f"skill-{s}", "skill", [s], {s: sizes[s]}, sizes[s] // 10)
        for i, f in enumerate((0.25, 0.5, 1.0), 1):
            n = int(sizes[s] * f)
            run(f"cft-{s}-{i}", "cft", [s], {s: n}, n // 10, i, f)
            run(f"rt-{s}-{i}", "rt", [s], {"general": 1000, s: n}, (1000 + n) // 10, i, f)
    run("cft-all", "cft", list(SKILLS), {s: sizes[s] for s in SKILLS}, 103)
    run("rt-all", "rt", list(SKILLS), {"general": 1000, **{s: sizes[s] for s in SKILLS}}, 203)
    return root


def test_lab_experiment_is_valid_and_complete(tmp_path):
    build = fake_build(tmp_path / "runs" / "lab")
    path = write_lab_experiment(build, tmp_path / "data" / "lab")
    exp = Experiment.load(path)
    assert exp.name == "lab" and set(exp.skills) == set(SKILLS) and set(exp.axes) == set(AXES)
    assert exp.general.size == 1000 and exp.skills["coding"].size == 570 and exp.skills["coding"].steps == 57
    assert exp.axes["coding"].metric == "pass@10" and exp.axes["xstest_safe"].suite == "lab_xstest_safe"
    refs = exp.references
    assert len(refs) == 2 * 3 * 3 + 2
    # the largest CFT run per skill is the shipped θ_CFT (WiSE-FT works from a fresh clone)
    largest = [r for r in refs if r.kind == "cft" and r.skills == ["science"] and r.data_size == 220]
    assert len(largest) == 1 and Path(largest[0].model) == (path.parent / "models" / "cft-science").resolve()
    # other runs point into the (unshipped) build directory, relative to the experiment file
    rt = next(r for r in refs if r.kind == "rt" and r.skills == ["safety"] and r.data_size == 60)
    assert Path(rt.model) == (build / "models" / "rt-safety-1").resolve() and rt.train_steps == 106
    text = path.read_text()  # portable: no absolute paths in the file
    assert "../../runs/lab/models/rt-safety-1" in text and str(tmp_path) not in text
    both = [r for r in refs if len(r.skills) == 3]
    assert {r.kind for r in both} == {"cft", "rt"} and all(r.data_size == 1030 for r in both)


def test_cli_dispatch_writes_the_experiment(tmp_path):
    from ptm_core.__main__ import main

    build = fake_build(tmp_path / "runs" / "lab")
    dest = tmp_path / "data" / "lab"
    assert main(["lab", "experiment", "--build", str(build), "--dest", str(dest)]) == 0
    assert Experiment.load(dest / "lab.yml").name == "lab"
    assert main(["lab", "frobnicate"]) == 2
