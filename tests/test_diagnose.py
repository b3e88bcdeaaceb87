"""Diagnostics (`python -m ptm_core diagnose`): task-vector sizes and cosines against values
worked out by hand, streaming, the reference likelihood against a direct transformers
computation, the loss barrier, the reference providers and the CLI's JSON."""

from __future__ import annotations

import io
import json
import math
import weakref
from pathlib import Path

import pytest
import torch

from ptm_core.errors import PTMError
from ptm_core.merge.task_vectors import (
    checkpoints_report, group_order, layer_group, task_vector_report,
)
from ptm_core.orchestrate.diagnose import loss_barrier


# --- layer groups -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, group", [
    ("model.embed_tokens.weight", "embed"),
    ("model.layers.0.self_attn.q_proj.weight", "0"),
    ("model.layers.11.input_layernorm.weight", "11"),  # a norm inside a layer is the layer's
    ("model.norm.weight", "norm"),
    ("lm_head.weight", "head"),
    ("transformer.wte.weight", "embed"),  # GPT-2
    ("transformer.wpe.weight", "embed"),
    ("transformer.h.3.attn.c_attn.weight", "3"),
    ("transformer.ln_f.weight", "norm"),
    ("gpt_neox.embed_in.weight", "embed"),  # GPT-NeoX: its embed_out is the head
    ("embed_out.weight", "head"),
    ("something.else", "other"),
])
def test_layer_groups_from_parameter_names(name, group):
    assert layer_group(name) == group


def test_group_order_puts_layers_in_numeric_order():
    assert group_order({"head", "10", "2", "other", "norm", "embed"}) == \
        ["embed", "2", "10", "norm", "head", "other"]


# --- norms and cosines by hand --------------------------------------------------------------------
E, L, H = "model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "lm_head.weight"
PRE = {E: torch.tensor([[3.0, 4.0]]), L: torch.tensor([[1.0, 0.0], [0.0, 0.0]]),
       H: torch.tensor([[0.0, 2.0]])}  # ‖θ_pre‖² = 25 + 1 + 4 = 30
TAU_A = {E: torch.tensor([[1.0, 0.0]]), L: torch.tensor([[0.0, 1.0], [0.0, 0.0]]),
         H: torch.tensor([[0.0, 0.0]])}  # ‖τ_a‖² = 2
TAU_B = {E: torch.tensor([[1.0, 1.0]]), L: torch.zeros(2, 2),
         H: torch.tensor([[0.0, -1.0]])}  # ‖τ_b‖² = 3, <τ_a, τ_b> = 1


def _plus(tau):
    return {k: PRE[k] + tau[k] for k in PRE}


def test_norms_and_cosines_match_hand_computation():
    r = task_vector_report(PRE, {"a": _plus(TAU_A), "b": _plus(TAU_B)})
    assert r.groups == ["embed", "0", "head"]
    rel = r.relative_norms()
    assert rel["a"] == pytest.approx(math.sqrt(2 / 30)) and rel["b"] == pytest.approx(math.sqrt(3 / 30))
    per = r.relative_norms_per_group()
    assert per["a"] == pytest.approx({"embed": 1 / 5, "0": 1.0, "head": 0.0})
    assert per["b"] == pytest.approx({"embed": math.sqrt(2) / 5, "0": 0.0, "head": 0.5})
    cos = r.cosine()
    assert cos[0][1] == cos[1][0] == pytest.approx(1 / math.sqrt(6))
    assert cos[0][0] == pytest.approx(1.0)
    by_group = r.cosine_per_group()
    assert by_group["embed"][0][1] == pytest.approx(1 / math.sqrt(2))
    assert by_group["0"][0][1] is None and by_group["head"][0][1] is None  # a zero τ there
    assert r.rms() == pytest.approx({"a": math.sqrt(2 / 8), "b": math.sqrt(3 / 8)})
    d = r.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d  # JSON as it is: no NaN, no tuples


def test_blocks_of_rows_give_the_same_report_and_odd_tensors_are_skipped():
    pre = {**PRE, "model.layers.1.w": torch.randn(7, 5)}
    a = {**_plus(TAU_A), "model.layers.1.w": pre["model.layers.1.w"] + torch.randn(7, 5)}
    b = {**_plus(TAU_B), "model.layers.1.w": pre["model.layers.1.w"] + torch.randn(7, 5)}
    whole = task_vector_report(pre, {"a": a, "b": b}).to_dict()
    blocks = task_vector_report(pre, {"a": a, "b": b}, block_elements=6).to_dict()
    for k in ("a", "b"):
        assert blocks["tau_over_pre_per_group"][k] == pytest.approx(whole["tau_over_pre_per_group"][k])
    assert blocks["cosine_per_group"]["1"][0] == pytest.approx(whole["cosine_per_group"]["1"][0])
    b[H] = torch.zeros(3, 2)  # another shape: left out, and said so
    r = task_vector_report(pre, {"a": a, "b": b})
    assert r.skipped == [H] and "head" not in r.groups


# --- streaming ----------------------------------------------------------------------------------
class Recording:
    """A TensorSource that logs each read and counts the tensors it handed out still alive."""

    def __init__(self, name, tensors, log):
        self.name, self.tensors, self.log = name, tensors, log
        self.alive, self.peak = 0, 0

    def tensor_names(self):
        return list(self.tensors)

    def shape(self, name):
        return tuple(self.tensors[name].shape)

    def get(self, name, rows=None):
        t = self.tensors[name]
        t = (t if rows is None else t[rows[0]:rows[1]]).clone()
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        weakref.finalize(t, self._release)
        self.log.append((self.name, name, rows))
        return t

    def _release(self):
        self.alive -= 1


def test_reads_tensor_by_tensor_in_bounded_blocks():
    g = torch.Generator().manual_seed(0)
    pre = {f"model.layers.{i}.w": torch.randn(40, 10, generator=g) for i in range(3)}
    log: list = []
    models = {k: Recording(k, {n: t + torch.randn(t.shape, generator=g) for n, t in pre.items()},
                           log) for k in ("a", "b")}
    base = Recording("pre", pre, log)
    task_vector_report(base, models, block_elements=300)  # 3 models x 10 rows x 10 = 300
    assert all(src.peak == 1 for src in (base, *models.values()))  # one block each at a time
    assert all(rows is not None and rows[1] - rows[0] <= 10 for _, _, rows in log)
    names = [n for _, n, _ in log]
    assert names == sorted(names)  # one tensor name after the other, never back
    assert [(src, rows) for src, n, rows in log if n == "model.layers.0.w"][:3] == \
        [("pre", (0, 10)), ("a", (0, 10)), ("b", (0, 10))]  # the models in lockstep


def test_checkpoints_are_read_one_tensor_at_a_time(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from ptm_core.merge.checkpoint import Checkpoint
    from ptm_core.testing.tiny import family

    paths = family(tmp_path, names=("pre", "general", "science"))
    monkeypatch.setattr(Checkpoint, "load_all", lambda self: pytest.fail("read a whole model"))
    reads: list = []
    get = Checkpoint.get
    monkeypatch.setattr(Checkpoint, "get",
                        lambda self, name, rows=None: reads.append(name) or get(self, name, rows))
    r = checkpoints_report(paths["pre"], {"G": paths["general"], "science": paths["science"]})
    from safetensors.torch import load_file
    sd = {k: load_file(str(p / "model.safetensors")) for k, p in paths.items()}
    want = task_vector_report(sd["pre"], {"G": sd["general"], "science": sd["science"]})
    assert r.cosine()[0] == pytest.approx(want.cosine()[0])
    assert r.relative_norms() == pytest.approx(want.relative_norms())
    assert len(reads) == 3 * len(sd["pre"])  # each tensor of each model once


# --- the loss barrier ---------------------------------------------------------------------------
def test_loss_barrier_against_the_chord():
    assert loss_barrier([0.0, 0.5, 1.0], [1.0, 3.0, 2.0]) == pytest.approx(1.5)
    assert loss_barrier([0.0, 0.5, 1.0], [1.0, 1.0, 2.0]) == 0.0  # below the chord: none
    with pytest.raises(PTMError):
        loss_barrier([0.2, 1.0], [1.0, 2.0])


# --- the likelihood on tiny chat models ----------------------------------------------------------
PAIRS = {"general": [("Say hello.", "Sure! Here is a short answer."),
                     ("How do I cook pasta?", "Boil the pasta and rice.")],
         "science": [("Extract the entities.", "The mitochondria is the powerhouse of the cell."),
                     ("What is in the abstract?", "The cell.")]}


@pytest.fixture(scope="module")
def chat_models(tmp_path_factory):
    pytest.importorskip("transformers")
    from ptm_core.testing.tiny import build_tiny_llama, perturbed_copy

    root = tmp_path_factory.mktemp("chat")
    pre = build_tiny_llama(root / "pre", hidden_size=32, logit_scale=1.0)
    return {"pre": pre, "general": perturbed_copy(pre, root / "general", seed=1, scale=0.3),
            "science": perturbed_copy(pre, root / "science", seed=2, scale=0.3)}


@pytest.fixture
def tiny_refs(monkeypatch):
    """References for suites named tinyref_*, as a world registers them."""
    from ptm_core.evals import registry

    monkeypatch.setitem(registry.REFERENCES, "tinyref_",
                        lambda name, cap=None, **_: PAIRS[name.removeprefix("tinyref_")][:cap])


def _experiment(tmp_path, models, skill_model=None):
    from ptm_core.store.experiment import Experiment

    text = f"""
name: tiny
base: {models['pre']}
general: {{model: {models['general']}, size: 100}}
skills:
  science: {{model: {skill_model or models['science']}, size: 25}}
axes:
  general: {{suite: tinyref_general}}
  science: {{suite: tinyref_science}}
  xstest_safe: {{suite: xstest}}
"""
    path = tmp_path / "tiny.yml"
    path.write_text(text)
    return Experiment.load(path)


def _direct_nll(model_dir, state, pairs):
    """Σ −log p(reference token) / tokens, one unpadded sequence at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    model.load_state_dict(state, strict=False)
    total, n = 0.0, 0
    for prompt, ref in pairs:
        head = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                       add_generation_prompt=True, tokenize=True)
        head = list(head["input_ids"] if hasattr(head, "keys") else head)
        tail = tok(ref, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), -1)
        for i, t in enumerate(tail):
            total -= float(logp[len(head) + i - 1, t])
        n += len(tail)
    return total / n


def test_nll_along_omega_equals_a_direct_computation(tmp_path, chat_models, tiny_refs):
    from safetensors.torch import load_file

    from ptm_core.orchestrate.diagnose import diagnose

    exp = _experiment(tmp_path, chat_models)
    report = diagnose(exp, omegas=[0.0, 0.5], ts=[0.5], cap=2, batch_size=2)
    sd = {k: load_file(str(p / "model.safetensors")) for k, p in chat_models.items()}
    merged = {k: sd["general"][k] + 0.5 * (sd["science"][k] - sd["pre"][k]) for k in sd["pre"]}
    point = next(p for p in report["likelihood"]["skills"]["science"]["along_omega"]
                 if p["omega"] == 0.5)
    for axis in ("general", "science"):
        assert point["nll"][axis] == pytest.approx(
            _direct_nll(chat_models["general"], merged, PAIRS[axis]), rel=1e-4)
    assert report["likelihood"]["theta_G"]["science"] == pytest.approx(
        _direct_nll(chat_models["general"], sd["general"], PAIRS["science"]), rel=1e-4)
    line = report["likelihood"]["skills"]["science"]["line"]
    assert line["t"] == [0.0, 0.5, 1.0]
    assert line["nll"]["science"][-1] == pytest.approx(  # t = 1 is θ_D itself
        _direct_nll(chat_models["general"], sd["science"], PAIRS["science"]), rel=1e-4)
    assert "no reference answers" in report["references"]["xstest_safe"]["skipped"]
    assert report["references"]["science"]["tokens"] > 0


def test_barrier_is_zero_for_identical_endpoints(tmp_path, chat_models, tiny_refs):
    from ptm_core.orchestrate.diagnose import diagnose

    import shutil

    twin = shutil.copytree(chat_models["general"], tmp_path / "twin")  # θ_D = θ_G, weight for weight
    exp = _experiment(tmp_path, chat_models, skill_model=twin)
    report = diagnose(exp, omegas=[0.0], ts=[0.25, 0.5, 0.75], cap=2)
    d = report["likelihood"]["skills"]["science"]
    assert set(d["barrier"]) == {"general", "science", "joint"}
    assert all(v == pytest.approx(0.0, abs=1e-5) for v in d["barrier"].values())
    assert max(d["line"]["nll"]["joint"]) - min(d["line"]["nll"]["joint"]) < 1e-5


def test_cli_prints_tables_and_the_report_as_its_last_line(tmp_path, chat_models, tiny_refs,
                                                           capsys):
    from ptm_core.__main__ import main

    _experiment(tmp_path, chat_models)
    out = tmp_path / "report.json"
    threads = torch.get_num_threads()
    assert main(["diagnose", str(tmp_path / "tiny.yml"), "--cap", "1", "--omegas", "0,1",
                 "--ts", "0.5", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # one thread for a tiny model, then as it was
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report == json.loads(out.read_text())
    assert report["cap"] == 1 and report["references"]["general"]["items"] == 1
    assert report["threads"] == 1
    assert report["task_vectors"]["names"] == ["G", "science"]
    text = "\n".join(lines[:-1])
    assert "‖τ‖ / ‖θ_pre‖" in text and "θ_G + ω τ_science" in text and "barrier" in text
    assert not list(tmp_path.glob(".report.json.*"))  # written atomically: no temp file left


def test_missing_checkpoints_are_a_clear_error(tmp_path, chat_models):
    from ptm_core.orchestrate.diagnose import diagnose

    exp = _experiment(tmp_path, {**chat_models, "pre": tmp_path / "nowhere"})
    with pytest.raises(PTMError, match="θ_pre .* is not on this machine"):
        diagnose(exp, with_likelihood=False)


# --- reference providers -----------------------------------------------------------------------
def test_lab_references_are_the_suites_items_with_their_reference_replies():
    from ptm_core.evals.registry import get_references
    from ptm_core.lab.suites import build_suites
    from ptm_core.orchestrate.worlds import load_worlds

    load_worlds()
    suites = build_suites(cap=3)
    general = get_references("lab_general", cap=3)
    assert general == [(it.prompt, it.target) for it in suites["lab_general"].items]
    coding = get_references("lab_coding", cap=3)
    assert [p for p, _ in coding] == [it.prompt for it in suites["lab_coding"].items]
    assert all("def " in ref and "assert" not in ref for _, ref in coding)  # solutions, not tests


def test_suites_without_references_say_why(monkeypatch):
    from ptm_core.evals.registry import NoReferences, get_references
    from ptm_core.smollm2 import data, suites

    with pytest.raises(NoReferences, match="no reference answers"):
        get_references("xstest")
    with pytest.raises(NoReferences, match="executing"):
        get_references("smollm2_coding")
    monkeypatch.setattr(data, "general_test", lambda: [
        {"question": "Which is a fruit?", "choices": ["rock", "apple"], "gold": 1}])
    assert suites.references("smollm2_general") == [("Which is a fruit?", "apple")]
