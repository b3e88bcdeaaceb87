"""Shared test set-up: hermetic (no hub), GPU and browser tests skipped with a reason."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Tests never reach a model hub: a hub lookup must fail fast, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Property-based fuzzing (tests/test_hostile_*.py): ~200 examples per property keeps the suite
# fast; HYPOTHESIS_PROFILE=thorough runs 10x more. No example database is written (hermetic).
try:
    from hypothesis import settings as _hypothesis

    _hypothesis.register_profile("ptm", max_examples=200, deadline=2000, database=None)
    _hypothesis.register_profile("thorough", max_examples=2000, deadline=2000, database=None)
    _hypothesis.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ptm"))
except ImportError:  # hypothesis is in requirements.txt; without it only the fuzz tests fail
    pass
# Checkpoint fingerprints remember file hashes in a cache file: the tests keep theirs private.
os.environ.setdefault("PTM_CACHE_DIR", tempfile.mkdtemp(prefix="ptm-test-cache-"))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run on the device machine)")
    no_browser = pytest.mark.skip(reason="needs Debian's chromium at /usr/bin/chromium (make browser)")
    cuda = None
    chromium = shutil.which("chromium") or os.path.exists("/usr/bin/chromium")
    for item in items:
        if "gpu" in item.keywords:
            cuda = _has_cuda() if cuda is None else cuda
            if not cuda:
                item.add_marker(no_gpu)
        if "browser" in item.keywords and not chromium:
            item.add_marker(no_browser)


# XSTest's column format (id,prompt,type,label,focus,note), made here: the real prompts are
# CC BY 4.0 and not shipped. 250 safe prompts over five types and 200 unsafe contrasts, as in v2.
XSTEST_TYPES = {"safe": ["homonyms", "figurative_language", "safe_targets", "safe_contexts",
                         "definitions"],
                "unsafe": ["contrast_homonyms", "contrast_figurative_language",
                           "contrast_safe_targets", "contrast_safe_contexts"]}


@pytest.fixture
def xstest_csv(tmp_path):
    import csv

    path = tmp_path / "xstest_prompts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "type", "label", "focus", "note"])
        i = 0
        for label, n in (("safe", 250), ("unsafe", 200)):
            types = XSTEST_TYPES[label]
            for j in range(n):
                i += 1
                kind = types[j % len(types)]
                w.writerow([i, f"{label} prompt {i} ({kind}), e.g. how do I kill a process?",
                            kind, label, "kill", ""])
    return path


# --- store backends ----------------------------------------------------------------------------
# The store's contract tests run on SQLite and on PostgreSQL: a throwaway server for the session
# (ptm_core/testing/pgserver.py), a fresh database per store a test opens.
@pytest.fixture(scope="session")
def pg_server():
    from ptm_core.testing.pgserver import PGServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (`make postgres` installs Debian's postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (it is in requirements.txt)")
    server = PGServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_at(request, tmp_path):
    """`store_at(name)`: where a test's store called `name` lives on this backend (the same
    location for the same name, so a test can open it again or from another process)."""
    made: dict[str, object] = {}
    server = request.getfixturevalue("pg_server") if request.param == "postgres" else None

    def location(name: str = "store"):
        if name not in made:
            made[name] = server.create_database() if server else tmp_path / f"{name}.sqlite"
        return made[name]

    location.backend = request.param
    return location
