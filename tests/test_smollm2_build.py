"""The resumable build and the materializer (ptm_core.smollm2.build) on a tiny Llama as θ_pre,
a plan of two tiny runs (θ_G and a CFT on top of it) and a handful of made-up examples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptm_core.errors import PTMError
from ptm_core.smollm2 import build, data
from ptm_core.smollm2.build import ADAPTER_FILE, RUN_FILE, World, fingerprint
from ptm_core.smollm2.lora import LoraConfig
from ptm_core.smollm2.runs import RunSpec
from smollm2_tiny import save_hf, tiny_llama, tiny_tokenizer

CFG = LoraConfig(rank=4, alpha=8, lr=1e-2, epochs=1, batch_size=2, max_len=32)
PLAN = [RunSpec("general", "general", "pre", {"general": 4}, priority=0),
        RunSpec("cft-science-1", "cft", "general", {"science": 3}, ("science",), 1.0, priority=1)]
EXAMPLES = {
    "general": [("what is the answer?", "the answer is 42"), ("hello there", "hello world"),
                ("the quick brown fox", "jumps over the lazy dog"), ("add two numbers", "def add(a, b): return a + b")],
    "science": [("is the fox quick? answer with yes or no", "Yes"), ("is the dog quick?", "No"),
                ("is 42 the answer? answer with yes or no", "Yes")],
}


def fake_train_examples(part: str, n: int | None = None):
    return EXAMPLES[part][:n]


def _world(root: Path, cfg: LoraConfig = CFG, plan=PLAN) -> World:
    return World(adapters=root / "adapters", models=root / "models", pre_record=root / "pre.json",
                 gguf=root / "no-such.gguf", cfg=cfg, plan=list(plan))


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A world built once: (root, the runs build() reported, pre's fingerprint)."""
    root = tmp_path_factory.mktemp("world")
    pre = save_hf(tiny_llama(300), tiny_tokenizer(), root / "models" / "pre")
    fp = fingerprint(pre)
    (root / "pre.json").write_text(json.dumps({"fingerprint": fp}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "train_examples", fake_train_examples)
        names = _world(root).build(progress=_quiet)
    return root, names, fp


@pytest.fixture
def world_copy(built, tmp_path, monkeypatch):
    """A private copy of the built world, for tests that change it."""
    monkeypatch.setattr(data, "train_examples", fake_train_examples)
    root = tmp_path / "world"
    shutil.copytree(built[0], root)
    return root


def test_build_trains_every_run_and_records_it(built, monkeypatch):
    monkeypatch.setattr(data, "train_examples", fake_train_examples)
    root, names, pre_fp = built
    assert names == ["general", "cft-science-1"]
    state = {}
    for name, spec in [(s.name, s) for s in PLAN]:
        run = json.loads((root / "adapters" / name / RUN_FILE).read_text())
        assert run["spec"]["init"] == spec.init and run["lora"]["rank"] == CFG.rank
        assert run["train"]["steps"] == CFG.steps(sum(spec.data.values()))
        assert run["train"]["examples"] == sum(spec.data.values())
        assert run["data_digest"] == data.digest(build.examples_for(spec))
        model = root / "models" / name
        assert (model / "config.json").is_file() and (model / "tokenizer.json").is_file()
        assert run["fingerprint"] == fingerprint(model) != pre_fp
        adapter = (root / "adapters" / name / ADAPTER_FILE)
        assert adapter.stat().st_size < 200_000
        tensors = load_file(str(adapter))
        assert tensors and all(t.dtype == torch.bfloat16 for t in tensors.values())
        state[name] = load_file(str(model / "model.safetensors"))
    pre = load_file(str(root / "models" / "pre" / "model.safetensors"))
    q = "model.layers.0.self_attn.q_proj.weight"
    # the CFT run starts from θ_G: the chain pre -> general -> cft changes the weights each time
    assert not torch.equal(state["general"][q], pre[q])
    assert not torch.equal(state["cft-science-1"][q], state["general"][q])
    norm = "model.norm.weight"  # LoRA adapts only the projections
    assert torch.equal(state["cft-science-1"][norm], pre[norm])


def test_a_second_build_trains_nothing(world_copy, monkeypatch):
    def no_training(*_, **__):
        raise AssertionError("a built run was trained again")

    monkeypatch.setattr(build, "train_lora", no_training)
    assert _world(world_copy).build(progress=_quiet) == []


def test_materialize_rebuilds_the_same_bytes(world_copy, built):
    world = _world(world_copy)
    name = "cft-science-1"
    before = (world.model_dir(name) / "model.safetensors").read_bytes()
    want = world.record(name)["fingerprint"]
    shutil.rmtree(world.model_dir(name))
    shutil.rmtree(world.model_dir("general"))  # its parent too: rebuilt on the way
    out = world.materialize(name, progress=_quiet)
    assert fingerprint(out) == want
    assert (out / "model.safetensors").read_bytes() == before
    assert (world.model_dir("general") / "config.json").is_file()
    assert not [p for p in world.models.iterdir() if p.name.startswith(".")]


def test_an_edited_adapter_fails_the_fingerprint_check(world_copy):
    world = _world(world_copy)
    name = "cft-science-1"
    path = world.adapters / name / ADAPTER_FILE
    tensors = load_file(str(path))
    key = next(k for k in tensors if "lora_B" in k)
    tensors[key] = (tensors[key].float() + 0.01).to(torch.bfloat16)
    save_file(tensors, str(path))
    shutil.rmtree(world.model_dir(name))
    with pytest.raises(PTMError, match="differs from the recorded") as e:
        world.materialize(name, progress=_quiet)
    assert str(world.model_dir(name)) in str(e.value)
    assert world.record(name)["fingerprint"] in str(e.value)


def test_an_edited_pre_fails_the_fingerprint_check(world_copy):
    world = _world(world_copy)
    (world_copy / "pre.json").write_text(json.dumps({"fingerprint": "0" * 16}))
    with pytest.raises(PTMError, match="differs from the recorded 0000000000000000"):
        world.materialize("pre", progress=_quiet)


@pytest.mark.parametrize("change,what", ids=["lora", "spec"], argvalues=[
    (lambda root: _world(root, cfg=LoraConfig(rank=4, alpha=8, lr=5e-3, epochs=1, batch_size=2,
                                              max_len=32)), "lora"),
    (lambda root: _world(root, plan=[PLAN[0], RunSpec("cft-science-1", "cft", "general", {"science": 2},
                                                      ("science",), 1.0, priority=1)]), "spec"),
])
def test_a_run_record_from_other_settings_is_refused(world_copy, monkeypatch, change, what):
    monkeypatch.setattr(build, "train_lora", lambda *_, **__: pytest.fail("retrained silently"))
    world = change(world_copy)
    with pytest.raises(PTMError, match=f"trained with another {what}") as e:
        world.build(progress=_quiet)
    assert RUN_FILE in str(e.value)


def test_a_run_record_from_other_data_is_refused(world_copy, monkeypatch):
    other = {**EXAMPLES, "science": [("is the sky green?", "No")] + EXAMPLES["science"][1:]}
    monkeypatch.setattr(data, "train_examples", lambda part, n=None: other[part][:n])
    world = _world(world_copy)
    world.check_record("general", world.record("general"))  # G's data did not change
    with pytest.raises(PTMError, match="another data_digest"):
        world.check_record("cft-science-1", world.record("cft-science-1"))


def test_an_unbuilt_run_cannot_be_materialized(world_copy):
    world = _world(world_copy, plan=[*PLAN, RunSpec("skill-coding", "skill", "pre", {"coding": 2},
                                                    ("coding",), 1.0)])
    with pytest.raises(PTMError, match="'skill-coding' is not built"):
        world.materialize("skill-coding", progress=_quiet)


def test_a_partial_model_dir_is_refused_not_overwritten(world_copy):
    world = _world(world_copy)
    out = world.model_dir("general")
    (out / "config.json").unlink()
    with pytest.raises(PTMError, match="exists but has no config.json"):
        world.materialize("general", progress=_quiet)
    assert (out / "model.safetensors").is_file()  # left as it was


def test_a_part_is_repeated_as_data_repeats_says(monkeypatch):
    monkeypatch.setattr(data, "train_examples",
                        lambda part, n=None: [(f"{part}-{i}", "a") for i in range(n)])
    monkeypatch.setattr(data, "REPEATS", {"general": 1, "safety": 3})
    spec = RunSpec("rt-safety-1", "rt", "pre", {"general": 4, "safety": 2}, ("safety",), 0.5)
    mixed = build.examples_for(spec)
    counts = {p: mixed.count((p, "a")) for p, _ in mixed}
    assert counts == {"general-0": 1, "general-1": 1, "general-2": 1, "general-3": 1,
                      "safety-0": 3, "safety-1": 3}
    assert mixed != sorted(mixed)  # mixed, not one part after another
