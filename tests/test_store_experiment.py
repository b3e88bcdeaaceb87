"""Experiment files: validation errors name the field; paths resolve and stay confined."""

import os

import pytest

from ptm_core.store.experiment import Experiment, ExperimentError, PathEscapeError, confine
from ptm_core.testing.store import EXPERIMENT_YAML, write_experiment


def load_text(tmp_path, text):
    return Experiment.load(write_experiment(tmp_path, name="t", text=text))


def good(**replace):
    text = EXPERIMENT_YAML.format(name="t")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_valid_file_resolves_relative_paths_against_its_directory(tmp_path, monkeypatch):
    monkeypatch.chdir("/")  # the working directory must not matter
    exp = Experiment.load(write_experiment(tmp_path, name="t"))
    assert exp.base == str((tmp_path / "models" / "pre").resolve())
    assert exp.skills["science"].model == str((tmp_path / "models" / "science").resolve())
    assert exp.references[0].model == str((tmp_path / "models" / "cft_science").resolve())
    assert exp.heuristic_omega("science") == pytest.approx(200 / 1000)
    assert exp.skill_steps("science") == 20
    assert exp.axis_role("xstest_safe") == "exaggerated_refusals"
    assert exp.axis_role("safety") == "safety"
    assert exp.axis_role("science") == "skill"
    # safety and xstest_safe share one suite: measured by one run
    assert exp.suite_groups() == {"general": ["general"], "science": ["science"],
                                  "coding": ["coding"], "safety": ["safety", "xstest_safe"]}
    assert exp.source == str((tmp_path / "t.yml").resolve())


def test_hub_ids_are_kept_and_local_dirs_win(tmp_path):
    exp = load_text(tmp_path, good(**{"base: models/pre": "base: allenai/some-model"}))
    assert exp.base == "allenai/some-model"


@pytest.mark.parametrize("replace,expect", [
    ({"size: 200, steps: 20": "size: -3, steps: 20"}, "skills.science.size"),
    ({"size: 1000": "size: lots"}, "general.size"),
    ({"engine: fake": "engine: fake\ncolour: blue"}, "colour: unknown field"),
    ({"science: {suite: fake_science}": "science: {suite: fake_science, metirc: x}"},
     "axes.science.metirc: unknown field"),
    ({"general: {suite: fake_general}": "overall: {suite: fake_general}"},
     "an axis named 'general' is required"),
    ({"coding: {suite: fake_coding}": "other: {suite: fake_coding}"},
     "every skill needs an axis of the same name; missing coding"),
    ({"scores: {general: 55.0, science: 40.0}": "scores: {general: 155.0}"},
     "references.1: scores.general = 155.0 is outside 0-100"),
    ({"scores: {general: 55.0, science: 40.0}": "model: models/x, scores: {general: 1.0}"},
     "give exactly one of `model`"),
    ({"kind: rt": "kind: retrain"}, "references.1.kind"),
    ({"skills: [science], scores": "skills: [poetry], scores"},
     "references.1.skills: unknown skill(s) poetry"),
    ({"scores: {general: 55.0, science: 40.0}": "scores: {general: 55.0, poetry: 1.0}"},
     "references.1.scores: unknown axis(es) poetry"),
    ({"name: t": "name: ../evil"}, "name: must be 1-64 letters"),
    ({"safety: {suite: fake_xstest, metric: score}": "label: {suite: fake_xstest}"},
     "axis name 'label' is reserved"),
])
def test_validation_errors_name_the_field(tmp_path, replace, expect):
    with pytest.raises(ExperimentError) as ei:
        load_text(tmp_path, good(**replace))
    msg = str(ei.value)
    assert expect in msg, msg
    assert str(tmp_path / "t.yml") in msg  # and the file


def test_missing_field_and_yaml_errors(tmp_path):
    with pytest.raises(ExperimentError, match=r"general: Field required"):
        load_text(tmp_path, good(**{"general: {model: models/general, size: 1000, steps: 100}\n": ""}))
    with pytest.raises(ExperimentError, match="not valid YAML"):
        load_text(tmp_path, "name: [unclosed\n")
    with pytest.raises(ExperimentError, match="expected a mapping"):
        load_text(tmp_path, "- a\n- b\n")
    with pytest.raises(ExperimentError, match="no such experiment file"):
        Experiment.load(tmp_path / "nope.yml")


def test_confine_accepts_inside_and_refuses_dotdot(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert confine("a", root) == (root / "a").resolve()
    assert confine(root / "a" / "new.yml", root) == (root / "a" / "new.yml").resolve()
    assert confine("a/../a", root) == (root / "a").resolve()
    with pytest.raises(PathEscapeError, match="outside the allowed directory"):
        confine("../x", root)
    with pytest.raises(PathEscapeError):
        confine("a/../../x", root)
    with pytest.raises(PathEscapeError):
        confine("/etc/passwd", root)
    with pytest.raises(PathEscapeError):  # a sibling whose name starts like the root
        confine(tmp_path / "rootless", root)


def test_confine_follows_symlinks(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("x")
    os.symlink(outside, root / "link")
    os.symlink(root / "link" / "secret", root / "file_link")
    with pytest.raises(PathEscapeError, match="outside"):
        confine("link/secret", root)
    with pytest.raises(PathEscapeError):
        confine("file_link", root)
    os.symlink(root, tmp_path / "alias")  # a symlink *to* the root is fine
    assert confine(tmp_path / "alias" / "x", root) == (root / "x").resolve()


def test_load_with_allowed_roots_confines_file_and_models(tmp_path):
    root = tmp_path / "root"
    path = write_experiment(root, name="t")
    assert Experiment.load(path, allowed_roots=[root]).base.startswith(str(root.resolve()))
    with pytest.raises(PathEscapeError, match="experiment file"):
        Experiment.load(path, allowed_roots=[tmp_path / "elsewhere"])
    # a model directory that is a symlink leaving the root
    outside = tmp_path / "outside_model"
    outside.mkdir()
    (root / "models" / "science").rmdir()
    os.symlink(outside, root / "models" / "science")
    with pytest.raises(PathEscapeError, match="skills.science.model"):
        Experiment.load(path, allowed_roots=[root])
    # and ../ in the file
    path.write_text(good(**{"base: models/pre": "base: ../../pre"}).replace("name: t", "name: t"))
    with pytest.raises(PathEscapeError, match="base"):
        Experiment.load(path, allowed_roots=[root])


def test_cft_model_picks_the_largest_run(tmp_path):
    text = good(**{"references:\n": "references:\n  - {kind: cft, skills: [science], model: models/science, "
                                      "data_size: 900, train_steps: 90}\n"})
    exp = load_text(tmp_path, text)
    assert exp.cft_model("science").data_size == 900
    assert exp.cft_model("coding") is None
    assert len(exp.model_refs()) == 5  # pre, general, science, coding, cft (science listed once)


def test_suite_groups_are_complete_even_when_one_axis_is_asked_for(tmp_path):
    exp = Experiment.load(write_experiment(tmp_path, name="t"))
    assert exp.suite_groups(["xstest_safe"]) == {"safety": ["safety", "xstest_safe"]}
    assert exp.suite_groups(["general", "coding"]) == {"general": ["general"], "coding": ["coding"]}
    with pytest.raises(ExperimentError, match="unknown axis"):
        exp.suite_groups(["poetry"])
