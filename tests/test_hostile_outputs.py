"""Outputs: an OUT_DIR (or app export target) that is a symlink is refused, and --force never
deletes anything outside the OUT_DIR it names."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from ptm_core.__main__ import main
from ptm_core.app import data
from ptm_core.atomic import staging_dir


def tiny_model(d: Path, value: float) -> Path:
    """Config plus one float32 tensor: enough for the exporter."""
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"num_hidden_layers": 1}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header
                                          + struct.pack("<2f", value, value))
    return d


@pytest.fixture
def recipe(tmp_path) -> Path:
    a, b = tiny_model(tmp_path / "a", 1.0), tiny_model(tmp_path / "b", 3.0)
    r = tmp_path / "r.yml"
    r.write_text(f"merge_method: linear\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.5}}\n"
                 f"  - model: {b}\n    parameters: {{weight: 0.5}}\n")
    return r


def test_the_tiny_merge_works(tmp_path, recipe):
    assert main(["merge", str(recipe), str(tmp_path / "out"), "--quiet"]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_force_on_a_symlinked_out_dir_keeps_the_link_target(tmp_path, recipe, capsys):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    link = tmp_path / "out"
    link.symlink_to(target)
    assert main(["merge", str(recipe), str(link), "--quiet", "--force"]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and str(link) in err
    assert (target / "thesis.tex").read_text() == "years of work"
    assert link.is_symlink() and sorted(p.name for p in target.iterdir()) == ["thesis.tex"]


def test_force_on_a_file_is_refused(tmp_path, recipe, capsys):
    f = tmp_path / "out"
    f.write_text("not a checkpoint")
    assert main(["merge", str(recipe), str(f), "--quiet", "--force"]) == 2
    assert "not a directory" in capsys.readouterr().err and f.read_text() == "not a checkpoint"


def test_force_replaces_only_the_named_directory(tmp_path, recipe):
    """A symlink inside the old OUT_DIR is removed as a link: what it points to stays."""
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "data.txt").write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(keep)
    (out / "stale.txt").write_text("old export")
    assert main(["merge", str(recipe), str(out), "--quiet", "--force"]) == 0
    assert not (out / "stale.txt").exists() and (keep / "data.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_staging_dir_refuses_a_symlink(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "x").write_text("x")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(FileExistsError, match="symbolic link"):
        with staging_dir(tmp_path / "link", force=True):
            pass
    assert (target / "x").read_text() == "x"


def test_app_export_target_that_is_a_symlink_is_refused(tmp_path):
    exports = tmp_path / "exports"
    (exports / "real").mkdir(parents=True)
    (exports / "real" / "x").write_text("x")
    (exports / "mine").symlink_to(exports / "real")  # inside the export dir, so confine() passes
    with pytest.raises(data.AppDataError, match="symbolic link"):
        data.export_path("mine", exports)
