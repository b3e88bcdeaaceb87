"""Random Llamas of real shapes for the benchmarks: deterministic, loadable, children close."""

from __future__ import annotations

import json

import pytest
import torch

from ptm_core.merge.checkpoint import Checkpoint
from ptm_core.testing.random_llama import SHAPES, tensor_shapes, write_random_llama


def test_the_7b_shape_has_llama_2_7b_parameter_count():
    params = sum(torch.Size(s).numel() for s in tensor_shapes(SHAPES["7b"]).values())
    assert params == 6_738_415_616  # Llama-2-7B's published count


def test_written_model_is_sharded_deterministic_and_children_are_close(tmp_path):
    a = write_random_llama(tmp_path / "a", "mini", shard_bytes=1 << 20)
    again = write_random_llama(tmp_path / "again", "mini", shard_bytes=1 << 20)
    child = write_random_llama(tmp_path / "child", "mini", child_seed=1, delta=0.02, shard_bytes=1 << 20)
    index = json.loads((a / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) > 1 and set(index) == set(tensor_shapes(SHAPES["mini"]))
    assert json.loads((a / "config.json").read_text())["hidden_size"] == SHAPES["mini"]["hidden_size"]
    assert not list(a.glob("*.tmp"))
    name = "model.layers.1.mlp.up_proj.weight"
    with Checkpoint.open(str(a)) as x, Checkpoint.open(str(again)) as y, Checkpoint.open(str(child)) as z:
        assert x.dtype(name) == torch.bfloat16
        assert torch.equal(x.get(name), y.get(name))
        ratio = ((z.get(name) - x.get(name)).std() / x.get(name).std()).item()
        assert 0.01 < ratio < 0.04  # delta 0.02 of the weights' scale, bf16 rounding aside


def test_unknown_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match="one of"):
        write_random_llama(tmp_path, "13b")
