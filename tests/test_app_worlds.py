"""Shipped worlds in the experiment picker: a world opens by name; while its checkpoints are not
materialized it shows what is stored read-only and says how to materialize."""

from __future__ import annotations

import shutil

import pytest

from ptm_core.app import data, settings as app_settings, sources
from ptm_core.testing.store import write_experiment


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A fake world registered under the name 'toyworld', its experiment file in tmp_path."""
    path = write_experiment(tmp_path, name="toyworld")
    monkeypatch.setattr(app_settings, "REPO", tmp_path)
    monkeypatch.setitem(app_settings.WORLDS, "toyworld",
                        ("A toy world", path.name, "python -m toy materialize"))
    monkeypatch.setenv("PTM_STORE", str(tmp_path / "store.sqlite"))
    return tmp_path


def test_the_real_model_world_is_offered_when_its_file_is_shipped():
    assert "smollm2" in data.WORLDS
    label, rel, how = data.WORLDS["smollm2"]
    assert (app_settings.REPO / rel).is_file() and "materialize" in how


def test_a_world_with_its_checkpoints_opens_and_can_queue(world):
    source = sources.open_source("toyworld")
    assert source.title == "toyworld"
    assert source.notice == "" and source.can_queue()


def test_a_world_without_its_checkpoints_is_read_only_and_says_how(world):
    shutil.rmtree(world / "models" / "science")
    source = sources.open_source("toyworld")
    assert not source.can_queue()
    assert "python -m toy materialize" in source.notice and "science" in source.notice
    assert source.results() is not None  # what is stored still shows


def test_a_world_whose_file_is_missing_is_a_clear_error(world):
    (world / "toyworld.yml").unlink()
    with pytest.raises(data.AppDataError, match="toyworld.yml is missing"):
        sources.open_source("toyworld")
