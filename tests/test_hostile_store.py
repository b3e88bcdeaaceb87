"""A damaged, truncated, locked or unwritable store: one message with the remedy in the CLI and
the worker (no sqlite3 traceback), and the app still shows the shipped results. models.json
paths are confined like every other user-given path."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ptm_core.__main__ import main
from ptm_core.app import data, testkit
from ptm_core.store.db import Store, StoreError

T = pytest.importorskip("ptm_core.testing.store")


def good_store(path: Path) -> Path:
    Store(path).close()
    return path


def damaged(tmp_path: Path, how: str) -> Path:
    path = tmp_path / f"{how}.sqlite"
    if how == "corrupt":
        path.write_bytes(os.urandom(16384))
    else:  # truncated: the first page of a real store only
        raw = good_store(tmp_path / "whole.sqlite").read_bytes()
        path.write_bytes(raw[:100])
    return path


@pytest.mark.parametrize("how", ["corrupt", "truncated"])
def test_damaged_store_is_one_store_error_with_the_remedy(tmp_path, how):
    path = damaged(tmp_path, how)
    with pytest.raises(StoreError) as e:
        Store(path)
    msg = str(e.value)
    assert str(path) in msg and "move it aside" in msg and "cached_runs/" in msg
    assert not isinstance(e.value, sqlite3.Error)


@pytest.mark.parametrize("how", ["corrupt", "truncated"])
def test_worker_and_cli_print_one_line_not_a_traceback(tmp_path, capsys, how):
    path = damaged(tmp_path, how)
    assert main(["worker", "--store", str(path), "--once", "--no-cached"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: store") and "move it aside" in err and "Traceback" not in err
    assert main(["cached", "import", "--store", str(path), "--dir", str(tmp_path)]) == 2
    assert "move it aside" in capsys.readouterr().err


def test_locked_store_says_who_to_stop(tmp_path):
    path = good_store(tmp_path / "s.sqlite")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="stop it or try again"):
            Store(path, busy_timeout_s=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_unwritable_location_says_what_to_do(tmp_path):
    with pytest.raises(StoreError) as e:
        Store(Path("/proc/ptm-no-such-dir/store.sqlite"))  # not writable, even for root
    assert "PTM_STORE" in str(e.value) and "not writable" in str(e.value)


def test_read_only_store_file(tmp_path):
    path = good_store(tmp_path / "ro" / "s.sqlite")
    for p in path.parent.iterdir():
        p.chmod(0o444)
    path.parent.chmod(0o555)
    try:
        if os.access(path.parent, os.W_OK):
            pytest.skip("running as root: permission bits do not make files read-only")
        with pytest.raises(StoreError, match="not writable"):
            Store(path)
    finally:
        path.parent.chmod(0o755)


# --- the app on a broken store ----------------------------------------------------------------
@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """An experiment with measured results exported to a cached_runs directory."""
    from ptm_core.store.cached import export_experiment
    from ptm_core.orchestrate.jobs import enqueue_points
    from ptm_core.orchestrate.points import ptm_point
    from ptm_core.orchestrate.worker import run_worker

    path = T.write_experiment(tmp_path)
    exp, b, resolver = T.fake_lab(tmp_path)
    work = Store(tmp_path / "work.sqlite")
    pts = [ptm_point(exp, b, {"science": w}) for w in (0.0, 0.5, 1.0)]
    enqueue_points(work, exp, pts, resolver, T.fake_fingerprinter, builder=b)
    run_worker(work, lambda e: T.FakeEngine(), resolver, once=True, builder=b,
               fingerprinter=T.fake_fingerprinter)
    export_experiment(work, exp.name, tmp_path / "cached_runs")
    monkeypatch.setenv("PTM_CACHED_RUNS", str(tmp_path / "cached_runs"))
    monkeypatch.setenv("PTM_APP_ROOT", str(tmp_path))
    monkeypatch.setitem(data.WIRING, "builder", b)
    monkeypatch.setitem(data.WIRING, "suite_resolver", resolver)
    monkeypatch.setitem(data.WIRING, "fingerprinter", T.fake_fingerprinter)
    return path


@pytest.mark.parametrize("how", ["corrupt", "unwritable"])
def test_app_shows_shipped_results_when_the_store_is_unusable(tmp_path, monkeypatch, shipped, how):
    store = damaged(tmp_path, "corrupt") if how == "corrupt" else Path("/proc/ptm-x/store.sqlite")
    monkeypatch.setenv("PTM_STORE", str(store))
    src = data.open_source(str(shipped))
    res = src.results()
    assert (res.frame["kind"] == "ptm").sum() == 3  # the three shipped measurements
    assert not src.can_queue() and src.read_only
    assert str(store) in src.notice and "shipped results" in src.notice
    if how == "corrupt":
        assert store.read_bytes()[:16] != b"SQLite format 3\0"  # left alone for the user to move


def test_models_json_paths_are_confined(tmp_path, monkeypatch):
    monkeypatch.setenv("PTM_APP_ROOT", str(tmp_path / "root"))
    (tmp_path / "root" / "models" / "g").mkdir(parents=True)
    for bad in ("/etc", "../../outside", "models/../../../x"):
        path = testkit.write_frame_experiment(tmp_path / "root", "f", models={"general": bad})
        with pytest.raises(data.AppDataError, match="outside"):
            data.open_source(str(path)).models()
    path = testkit.write_frame_experiment(tmp_path / "root", "f", models={"general": "../models/g"})
    assert data.open_source(str(path)).models() == {"general": str(tmp_path / "root" / "models" / "g")}
    (path.parent / "models.json").write_text('{"general": ["x"]}')
    with pytest.raises(data.AppDataError, match="models.json"):
        data.open_source(str(path)).models()


def test_store_on_a_read_only_file_system(tmp_path, shipped):
    """A real read-only mount (user and mount namespaces via util-linux `unshare`): the store
    gives one message with the remedy, and the app shows the shipped results."""
    import shutil
    import subprocess
    import sys
    import textwrap

    if not shutil.which("unshare"):
        pytest.skip("needs util-linux unshare")
    ro = tmp_path / "ro"
    good_store(ro / "store.sqlite")
    code = textwrap.dedent(f"""
        import os
        from ptm_core.store.db import Store, StoreError
        from ptm_core.app import data
        try:
            Store({str(ro / "store.sqlite")!r})
        except StoreError as e:
            print("STORE:", e)
        os.environ["PTM_STORE"] = {str(ro / "store.sqlite")!r}
        src = data.open_source({str(shipped)!r})
        print("ROWS:", int((src.results().frame["kind"] == "ptm").sum()), src.can_queue())
    """)
    mount = f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} {ro}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && ! touch {ro}/x"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.decode()[:200]}")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(["unshare", "-rm", "sh", "-c", f'{mount} && exec "$0" -c "$1"',
                          sys.executable, code], capture_output=True, text=True, timeout=120, env=env)
    assert "STORE:" in out.stdout and "not writable" in out.stdout, out.stdout + out.stderr
    assert "ROWS: 3 False" in out.stdout, out.stdout + out.stderr
