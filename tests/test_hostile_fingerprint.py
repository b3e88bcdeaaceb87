"""A checkpoint's cache identity changes with an edit anywhere in it, and each file is hashed
once while it is unchanged."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from ptm_core.merge.checkpoint import Checkpoint

N = 1 << 20  # floats: a 4 MiB shard, so 64 sampled 4 KiB blocks leave most bytes unread


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PTM_CACHE_DIR", str(tmp_path / "cache"))


def model(d: Path) -> Path:
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"num_hidden_layers": 1}))
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [N], "data_offsets": [0, 4 * N]}}).encode()
    with open(d / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.write(b"\0" * (4 * N))
    return d


def fingerprint(d: Path) -> str:
    with Checkpoint.open(str(d)) as c:
        return c.fingerprint()


def poke(f: Path, offset: int, keep_times: bool = True) -> None:
    st = f.stat()
    with open(f, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x01")
    if keep_times:  # an edit that hides itself from an mtime check
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("where", [5000, 4 * N // 2 + 12345, 4 * N - 2])
def test_an_edit_anywhere_in_the_weights_changes_the_fingerprint(tmp_path, where):
    d = model(tmp_path / "m")
    before = fingerprint(d)
    poke(d / "model.safetensors", 8 + 64 + where)  # inside the data, between sampled blocks
    assert fingerprint(d) != before


def test_an_edit_to_config_or_tokenizer_changes_it(tmp_path):
    d = model(tmp_path / "m")
    fps = {fingerprint(d)}
    (d / "config.json").write_text(json.dumps({"num_hidden_layers": 1, "rms_norm_eps": 1e-3}))
    fps.add(fingerprint(d))
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ other }}"}))
    fps.add(fingerprint(d))
    assert len(fps) == 3
    (d / "README.md").write_text("a model card is a description, not an input")
    assert fingerprint(d) in fps


def test_each_file_is_hashed_once_while_unchanged(tmp_path, monkeypatch):
    from ptm_core.merge import file_hash
    d = model(tmp_path / "m")
    first = fingerprint(d)
    assert file_hash.cache_path().is_file()
    reads = []
    real = file_hash._hash_stream

    def counting(f):
        reads.append(f.name)
        return real(f)
    monkeypatch.setattr(file_hash, "_hash_stream", counting)
    assert fingerprint(d) == first and reads == []
    poke(d / "model.safetensors", 8 + 64 + 100)
    assert fingerprint(d) != first and len(reads) == 1  # only the changed file again


def test_a_damaged_cache_is_ignored(tmp_path):
    from ptm_core.merge import file_hash
    d = model(tmp_path / "m")
    first = fingerprint(d)
    file_hash.cache_path().write_bytes(b'{"x": [[[[[[[[' + b"\xff" * 10)
    assert fingerprint(d) == first
    entries = json.loads(file_hash.cache_path().read_text())
    key = str((d / "model.safetensors").resolve())
    entries[key]["sha256"] = "forged"
    entries[key]["stamp"] = [0, 0, 0, 0, 0]  # a stamp that no longer matches: not trusted
    file_hash.cache_path().write_text(json.dumps(entries))
    assert fingerprint(d) == first
