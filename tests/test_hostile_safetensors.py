"""Hostile checkpoints: malformed safetensors headers, config.json and shard indexes are refused
with one message naming the file and the problem, in bounded time; fuzzing finds no other
exception."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ptm_core.errors import CheckpointError
from ptm_core.merge.checkpoint import Checkpoint
from ptm_core.merge.safetensors_io import SafetensorsFile, SafetensorsFormatError


def st_bytes(header: object, data: bytes = b"", raw: bytes | None = None) -> bytes:
    h = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def one_tensor(**entry) -> dict:
    e = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    e.update(entry)
    return {"w": e}


def refused(tmp_path: Path, blob: bytes, *words: str) -> str:
    f = tmp_path / "x.safetensors"
    f.write_bytes(blob)
    with pytest.raises(SafetensorsFormatError) as e:
        SafetensorsFile(f)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_a_valid_file_reads(tmp_path):
    f = tmp_path / "ok.safetensors"
    f.write_bytes(st_bytes(one_tensor(), b"\0" * 8))
    assert SafetensorsFile(f).read("w").tolist() == [0.0, 0.0]


@pytest.mark.parametrize("entry, word", [
    ({"dtype": ["F32"]}, "dtype"),             # a list where a string belongs
    ({"dtype": "Q7"}, "dtype"),                # not a safetensors dtype
    ({"shape": 2}, "shape"),                   # an int where a list belongs
    ({"shape": [True, 2]}, "shape"),           # bool is not a dimension
    ({"shape": [-2, -1]}, "shape"),            # numel 2 but negative dimensions
    ({"shape": [2.0]}, "shape"),
    ({"data_offsets": ["0", "8"]}, "data_offsets"),  # strings
    ({"data_offsets": [8, 0]}, "data_offsets"),      # out of order
    ({"data_offsets": [0, 8, 16]}, "data_offsets"),
    ({"data_offsets": 8}, "data_offsets"),
])
def test_wrong_json_types_are_refused(tmp_path, entry, word):
    refused(tmp_path, st_bytes(one_tensor(**entry), b"\0" * 8), word)


def test_entry_that_is_not_an_object_or_lacks_fields(tmp_path):
    refused(tmp_path, st_bytes({"w": [1, 2]}, b""), "'w'")
    refused(tmp_path, st_bytes({"w": {"dtype": "F32", "shape": [0]}}, b""), "data_offsets")


def test_metadata_must_be_strings(tmp_path):
    refused(tmp_path, st_bytes({"__metadata__": {"a": 1}, **one_tensor()}, b"\0" * 8), "__metadata__")
    refused(tmp_path, st_bytes({"__metadata__": [1], **one_tensor()}, b"\0" * 8), "__metadata__")


def test_duplicate_tensor_name_is_refused(tmp_path):
    raw = (b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
           b'"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}')
    refused(tmp_path, st_bytes(None, b"\0" * 16, raw=raw), "twice")


def test_two_tensors_over_the_same_bytes_are_refused(tmp_path):
    h = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    refused(tmp_path, st_bytes(h, b"\0" * 16), "overlaps")
    h["b"]["data_offsets"] = [4, 12]
    refused(tmp_path, st_bytes(h, b"\0" * 16), "overlaps")


def test_offsets_must_tile_the_data_region(tmp_path):
    gap = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
           "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}
    refused(tmp_path, st_bytes(gap, b"\0" * 12), "gap")
    refused(tmp_path, st_bytes(one_tensor(), b"\0" * 100), "belong to no tensor")  # trailing bytes
    refused(tmp_path, st_bytes(one_tensor(), b"\0" * 4), "truncated")  # past the end


def test_header_length_bounds(tmp_path):
    refused(tmp_path, b"\x01\x02", "shorter")
    refused(tmp_path, struct.pack("<Q", 2**63) + b"{}", "header length")
    refused(tmp_path, struct.pack("<Q", 50) + b"{}", "header length")


def test_deeply_nested_header_is_refused_before_parsing(tmp_path):
    t0 = time.perf_counter()
    msg = refused(tmp_path, st_bytes(None, raw=b"[" * 200_000 + b"]" * 200_000), "nested")
    assert time.perf_counter() - t0 < 5, "depth must be checked without recursing"
    assert len(msg) < 300


def test_a_fifo_in_place_of_a_shard_does_not_block(tmp_path):
    f = tmp_path / "x.safetensors"
    os.mkfifo(f)
    code = ("from ptm_core.merge.safetensors_io import SafetensorsFile as S, SafetensorsFormatError as E\n"
            f"try:\n    S({str(f)!r})\nexcept E as e:\n    print(e)")
    # a child process, so that a reader that blocks on the FIFO fails the test instead of hanging it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert "regular file" in out.stdout, out.stderr


# --- the model directory around the shards ---------------------------------------------------
def model_dir(root: Path, config: bytes = b'{"num_hidden_layers": 1}', shards=None, index=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_bytes(config)
    for name, blob in (shards or {"model.safetensors": st_bytes(one_tensor(), b"\0" * 8)}).items():
        (root / name).write_bytes(blob)
    if index is not None:
        (root / "model.safetensors.index.json").write_text(json.dumps(index))
    return root


def open_refused(path: Path, *words: str) -> str:
    with pytest.raises(CheckpointError) as e:
        Checkpoint.open(str(path))
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_shard_error_names_the_model_and_the_file(tmp_path):
    d = model_dir(tmp_path / "m", shards={"model.safetensors": st_bytes(one_tensor(dtype=[1]), b"\0" * 8)})
    open_refused(d, "model.safetensors", "dtype")


@pytest.mark.parametrize("config, word", [
    (b"[1, 2]", "object"),
    (b'{"num_hidden_layers": "3"}', "num_hidden_layers"),
    (b'{"num_hidden_layers": [3]}', "num_hidden_layers"),
    (b'{"n_layer": true}', "n_layer"),
    (b'{"num_hidden_layers": 2, "num_hidden_layers": 30}', "twice"),
    (b'{"model_type": "llama\xff"}', "UTF-8"),
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested"),
    (b'{"dtype": 5}', "dtype"),
])
def test_config_json_is_checked(tmp_path, config, word):
    open_refused(model_dir(tmp_path / "m", config=config), "config.json", word)


@pytest.mark.parametrize("shard", ["../../x.safetensors", "/etc/passwd.safetensors",
                                   "a/../../b.safetensors", "x.bin", 7])
def test_shard_index_is_confined_to_the_model_directory(tmp_path, shard):
    outside = tmp_path / "x.safetensors"
    outside.write_bytes(st_bytes(one_tensor(), b"\0" * 8))
    d = model_dir(tmp_path / "a" / "b" / "m", index={"weight_map": {"w": shard}})
    open_refused(d, "model.safetensors.index.json")


def test_a_subdirectory_shard_in_the_index_is_fine(tmp_path):
    d = model_dir(tmp_path / "m", shards={}, index={"weight_map": {"w": "sub/part.safetensors"}})
    (d / "sub").mkdir()
    (d / "sub" / "part.safetensors").write_bytes(st_bytes(one_tensor(), b"\0" * 8))
    assert Checkpoint.open(str(d)).tensor_names() == ["w"]


# --- fuzzing: any bytes give a reader or a SafetensorsFormatError -----------------------------
_entry = st.fixed_dictionaries({
    "dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "I8", "X"]), st.integers(), st.lists(st.text())),
    "shape": st.one_of(st.lists(st.integers(-2, 4), max_size=3), st.integers(), st.text()),
    "data_offsets": st.one_of(st.lists(st.integers(-4, 40), max_size=3), st.text()),
})
_headers = st.one_of(
    st.dictionaries(st.text(max_size=4), _entry, max_size=4).map(lambda h: json.dumps(h).encode()),
    st.binary(max_size=200),
    st.recursive(st.none() | st.integers() | st.text(max_size=3),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                 max_leaves=30).map(lambda h: json.dumps(h).encode()),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: conftest profile
@given(header=_headers, data=st.binary(max_size=64), declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_fuzz_header_reader(tmp_path, header, data, declared):
    n = len(header) if declared is None else declared
    f = tmp_path / "fuzz.safetensors"
    f.write_bytes(struct.pack("<Q", n) + header + data)
    try:
        sf = SafetensorsFile(f)
    except SafetensorsFormatError as e:
        assert len(str(e)) < 1000
        return
    try:
        for name in sf.infos:  # whatever was accepted can be read back
            sf.read(name)
    finally:
        sf.close()
