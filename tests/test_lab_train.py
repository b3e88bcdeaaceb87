"""The training loop and its data: schedule, loss masking, batching, determinism, bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from ptm_core.lab import data as D
from ptm_core.lab.model import ModelShape, new_model
from ptm_core.lab.runs import method_costs
from ptm_core.lab.train import Hyper, loss_summary, lr_at, optimize, shifted
from ptm_core.lab.world.example import Example


class CharTokenizer:
    """Enough of a tokenizer for the data functions: one id per character."""

    eos_token_id, pad_token_id = 1, 0

    def __call__(self, texts, add_special_tokens=False):
        class Out:
            input_ids = [[2 + (ord(c) % 60) for c in t] for t in texts]
        return Out()


def test_lr_warms_up_then_decays_to_the_floor():
    h = Hyper(lr=1.0, batch_size=1, warmup_frac=0.1, min_lr_frac=0.1)
    lrs = [lr_at(s, 100, h) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_loss_is_on_the_answer_and_eos_only():
    ex = Example("general", "count", "How many?", "3")
    (enc,) = D.encode_examples(CharTokenizer(), [ex], eos_id=1)
    answer = [l for l in enc.labels if l != D.IGNORE]
    assert answer == [2 + ord("3") % 60, 1]
    assert enc.labels[: len(enc.ids) - 2] == (D.IGNORE,) * (len(enc.ids) - 2)


def test_sft_batches_cover_every_example_once_per_epoch():
    examples = [D.Encoded((i,) * (1 + i % 7), (i,) * (1 + i % 7)) for i in range(50)]
    batches = D.sft_batches(examples, batch_size=8, epochs=3, seed=0)
    assert len(batches) == 3 * math.ceil(50 / 8)
    seen = [e.ids[0] for b in batches for e in b]
    assert sorted(seen) == sorted(list(range(50)) * 3)
    assert batches == D.sft_batches(examples, batch_size=8, epochs=3, seed=0)
    assert batches != D.sft_batches(examples, batch_size=8, epochs=3, seed=1)


def test_collate_pads_right_and_masks_padding():
    ids, labels = D.collate([D.Encoded((5, 6, 7), (D.IGNORE, 6, 7)), D.Encoded((8,), (8,))], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert labels.tolist() == [[D.IGNORE, 6, 7], [8, D.IGNORE, D.IGNORE]]


def test_packing_reads_documents_in_order():
    docs = iter(["ab", "cd", "ef"] * 200)
    blocks, read = D.pack_documents(CharTokenizer(), docs, eos_id=1, block=4, n_blocks=3)
    assert [len(b) for b in blocks] == [5, 5, 5]
    assert blocks[0][:3] == [2 + ord("a") % 60, 2 + ord("b") % 60, 1]
    assert blocks[1][0] == blocks[0][-1]  # inputs and targets overlap by one token
    assert read >= 3


def _tiny_run(seed: int) -> tuple[dict, list[float]]:
    model = new_model(ModelShape(hidden=64, layers=1, heads=1, intermediate=64), 64, 1, 0, seed=seed)
    examples = [D.Encoded(tuple(range(2, 2 + n)), (D.IGNORE,) + tuple(range(3, 2 + n)))
                for n in range(3, 12)]
    plan = D.sft_batches(examples, batch_size=4, epochs=2, seed=seed)
    losses = optimize(model, shifted(D.collate(b, 0) for b in plan), len(plan),
                      Hyper(lr=3e-3, batch_size=4, epochs=2), "cpu")
    return model.state_dict(), losses


def test_training_is_deterministic_and_learns():
    torch.set_num_threads(1)
    a, losses_a = _tiny_run(0)
    b, losses_b = _tiny_run(0)
    assert losses_a == losses_b
    assert all(bool((a[k] == b[k]).all()) for k in a)
    assert losses_a[-1] < losses_a[0]


def test_loss_summary_and_method_costs():
    summary = loss_summary([4.0, 3.0, 2.0, 1.0] * 10)
    assert summary["first"] == 4.0 and len(summary["curve"]) <= 21
    records = {"skill-science": {"steps": 10}, "cft-science-1": {"steps": 1}, "cft-science-2": {"steps": 2},
               "rt-science-1": {"steps": 41}, "rt-science-2": {"steps": 42}, "cft-all": {"steps": 30},
               "rt-all": {"steps": 70}, "skill-coding": {"steps": 20}, "skill-safety": {"steps": 5}}
    costs = method_costs(records)
    assert costs["ptm"]["science"] == 10 and costs["cft"]["science"] == 3 and costs["rt"]["science"] == 83
    assert costs["ptm"]["all"] == 35 and costs["cft"]["all"] == 30 and costs["rt"]["all"] == 70


def test_frozen_parameters_keep_their_starting_values():
    """An anchored post-training (Hyper.frozen) leaves embeddings, head and norms at θ_pre."""
    torch.set_num_threads(1)
    model = new_model(ModelShape(hidden=64, layers=1, heads=1, intermediate=64), 64, 1, 0, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    examples = [D.Encoded(tuple(range(2, 2 + n)), (D.IGNORE,) + tuple(range(3, 2 + n)))
                for n in range(3, 12)]
    plan = D.sft_batches(examples, batch_size=4, epochs=1, seed=0)
    h = Hyper(lr=3e-3, batch_size=4, frozen=("embed_tokens", "lm_head", "norm"))
    optimize(model, shifted(D.collate(b, 0) for b in plan), len(plan), h, "cpu")
    after = model.state_dict()
    frozen = [k for k in after if any(part in k for part in h.frozen)]
    moved = [k for k in after if not torch.equal(after[k], before[k])]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    assert moved and not set(moved) & set(frozen)  # the rest did train


def test_probe_profile_keeps_or_replaces_the_frozen_parts():
    from ptm_core.lab.probe import probe_profile
    from ptm_core.lab.profiles import SHIPPED, get_profile

    shipped = get_profile(SHIPPED)
    assert shipped.finetune.frozen  # the shipped lab anchors post-training
    assert probe_profile(shipped, 1e-3, 3).finetune.frozen == shipped.finetune.frozen
    plain_tuning = probe_profile(shipped, 1e-3, 3, frozen=[])
    assert plain_tuning.finetune.frozen == () and plain_tuning.finetune.lr == 1e-3
    assert plain_tuning.corpus == shipped.corpus and plain_tuning.pretrain_steps == shipped.pretrain_steps
