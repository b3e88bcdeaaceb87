"""The in-engine merge (engine/resident.py) as the swap consumes it, without vLLM: the same
tensors as the exporter, with tensors every input shares passed through as the base itself,
buffers reused from merge to merge, and the threaded merge equal to the sequential one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptm_core.engine.resident import ResidentInputs
from ptm_core.merge.export import export
from ptm_core.merge.methods import merge_tensor
from ptm_core.merge.ptm import task_arithmetic
from ptm_core.merge.recipe import Recipe
from ptm_core.testing.tiny import family

SHARED = ("model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight")


def share(src: Path, base: Path, out: Path, names=SHARED) -> Path:
    """A copy of `src` whose tensors `names` are the base's, bit for bit (as a LoRA finetune
    leaves the embeddings and norms)."""
    shutil.copytree(src, out)
    tensors, base_t = load_file(out / "model.safetensors"), load_file(base / "model.safetensors")
    tensors.update({n: base_t[n] for n in names})
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("swap_merge")
    m = family(root / "family", names=("pre", "general", "skill"), hidden_size=64,
               intermediate_size=160, num_hidden_layers=2)
    return {"pre": str(m["pre"]),
            "general": str(share(m["general"], m["pre"], root / "general")),
            "skill": str(share(m["skill"], m["pre"], root / "skill"))}


def recipe(models, omega) -> Recipe:
    return task_arithmetic(models["pre"], models["general"], {"s": models["skill"]}, {"s": omega})


def test_task_arithmetic_of_equal_inputs_is_the_base_exactly():
    """MergeKit's base + Σ w(x − base) is the base bit for bit when every x is; the weighted
    sum it is computed as would be off by rounding, so equal inputs return the base."""
    base = torch.randn(64, 64)
    for method, shared in (("task_arithmetic", {"normalize": False, "lambda": 1.0}),
                           ("ties", {"normalize": True, "lambda": 1.0, "rescale": False})):
        per = [{"weight": 1.0, "density": 0.5}, {"weight": 0.37, "density": 0.5}]
        out = merge_tensor(method, base, [base.clone(), base.clone()], per,
                           {"int8_mask": False, **shared})
        assert torch.equal(out, base), method
    moved = base + 1e-3
    out = merge_tensor("task_arithmetic", base, [moved, base.clone()],
                       [{"weight": 1.0}, {"weight": 0.37}], {"normalize": False, "lambda": 1.0})
    assert not torch.equal(out, base)


@pytest.mark.parametrize("workers", [1, 2])
def test_swap_merge_equals_the_export_and_passes_shared_tensors_through(models, tmp_path, workers):
    resident = ResidentInputs()
    threads = torch.get_num_threads()
    for omega in (0.5, 1.25):
        r = recipe(models, omega)
        merged = dict(resident.merged(r, num_layers=2, workers=workers))
        exported = load_file(export(r, tmp_path / f"out-{omega}") / "model.safetensors")
        assert set(merged) == set(exported)
        for name, tensor in merged.items():
            assert torch.equal(tensor, exported[name]), name
            assert resident.holds(tensor) == (name in SHARED), name  # the base's own tensor
        pre = resident.sources[models["pre"]]
        for name in SHARED:
            assert merged[name] is pre.get(name)
    assert torch.get_num_threads() == threads  # the threaded merge puts torch's threads back


def test_merge_buffers_are_reused_from_merge_to_merge(models):
    resident = ResidentInputs()
    resident.chunk_elements = 4096
    name = "model.layers.1.mlp.up_proj.weight"  # 160 x 64: chunked with 4k-element chunks
    first = dict(resident.merged(recipe(models, 0.25), num_layers=2))[name]
    values = first.clone()
    second = dict(resident.merged(recipe(models, 1.0), num_layers=2))[name]
    assert second is first and not torch.equal(second, values)


def test_equal_inputs_are_checked_once_and_forgotten_with_their_model(models):
    resident = ResidentInputs()
    list(resident.merged(recipe(models, 0.5), num_layers=2))
    assert any(resident._equal.values()) and not all(resident._equal.values())
    resident.drop([models["skill"]])
    assert not any(models["skill"] in key[0] for key in resident._equal)


@pytest.mark.parametrize("workers", [1, 2])
def test_tensors_with_a_destination_are_merged_into_it(models, tmp_path, workers):
    """`into` (a live model's parameters, in the engine): a whole tensor and a chunked one are
    written there, cast to its dtype as a load would, and yielded as that very tensor; a
    destination of another shape, or for a tensor passed through, is left alone."""
    r = recipe(models, 0.5)
    exported = load_file(export(r, tmp_path / "out") / "model.safetensors")
    whole, chunked = "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"
    into = {whole: torch.zeros(exported[whole].shape),
            chunked: torch.zeros(exported[chunked].shape, dtype=torch.bfloat16),
            "model.layers.1.mlp.down_proj.weight": torch.zeros(3, 3),
            SHARED[0]: torch.zeros(exported[SHARED[0]].shape)}
    resident = ResidentInputs()
    resident.chunk_elements = 4096  # up_proj (160 x 64) in three chunks, q_proj (64 x 64) whole
    list(resident.merged(r, num_layers=2, workers=workers))
    assert chunked in resident._kept  # a buffer for the chunked tensor ...
    merged = dict(resident.merged(r, num_layers=2, into=into, workers=workers))
    assert chunked not in resident._kept  # ... freed once it has a destination
    assert merged[whole] is into[whole] and torch.equal(into[whole], exported[whole])
    assert merged[chunked] is into[chunked]
    assert torch.equal(into[chunked], exported[chunked].to(torch.bfloat16))
    wrong = "model.layers.1.mlp.down_proj.weight"
    assert merged[wrong] is not into[wrong] and torch.equal(merged[wrong], exported[wrong])
    assert not into[wrong].any() and not into[SHARED[0]].any()
    assert torch.equal(merged[SHARED[0]], exported[SHARED[0]])
