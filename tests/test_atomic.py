"""Atomic outputs: what a killed writer leaves behind is cleaned up, and only that."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ptm_core.atomic import remove_stale_partials, remove_stale_partials_in, staging_dir


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_partial_is_removed_a_live_one_kept(tmp_path):
    final = tmp_path / "out"
    dead = tmp_path / f".out.partial-{dead_pid()}-abc"
    live = tmp_path / f".out.partial-{os.getppid()}-def"  # our parent: alive
    for d in (dead, live):
        d.mkdir()
    assert remove_stale_partials(final) == [dead]
    assert not dead.exists() and live.exists()


def test_a_writer_killed_while_replacing_gets_the_previous_version_back(tmp_path):
    """Killed between moving the old `final` aside and moving the new one in."""
    final = tmp_path / "model"
    old = tmp_path / f".model.old-{dead_pid()}-xyz"
    (old / "x").mkdir(parents=True)
    (old / "x" / "weights").write_text("previous")
    half = tmp_path / f".model.partial-{dead_pid()}-abc"
    half.mkdir()
    removed = remove_stale_partials_in(tmp_path)
    assert set(removed) == {old, half}
    assert (final / "weights").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_old_copy_is_dropped_when_the_new_version_made_it(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "weights").write_text("new")
    old = tmp_path / f".model.old-{dead_pid()}-xyz"
    (old / "x").mkdir(parents=True)
    remove_stale_partials_in(tmp_path)
    assert (final / "weights").read_text() == "new" and not old.exists()


def test_staging_dir_replaces_and_names_its_temporaries_after_the_writer(tmp_path):
    final = tmp_path / "out"
    with staging_dir(final) as tmp:
        assert tmp.name.startswith(f".out.partial-{os.getpid()}-")
        (tmp / "a").write_text("1")
    with staging_dir(final, force=True) as tmp:
        (tmp / "a").write_text("2")
    assert (final / "a").read_text() == "2"
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["out"]
