"""Build profiles: `regime` is the shipped lab (SHIPPED), `plain` the lab before issue #10, `micro`
the same pipeline at toy size for CI."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ptm_core.lab.model import ModelShape
from ptm_core.lab.train import Hyper
from ptm_core.lab.world import WorldConfig

# Five nested amounts of each skill's data for CFT and RT, as fractions of the full set (the
# paper used five amounts of SciRIFF from about 4k to 61k examples).
DATA_FRACTIONS: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Profile:
    name: str
    world: WorldConfig
    shape: ModelShape
    vocab_size: int
    tokenizer_docs: int  # corpus documents the tokenizer is trained on (plus all train examples)
    block: int  # pretraining sequence length
    pretrain_steps: int
    pretrain: Hyper
    finetune: Hyper
    eval_cap: int | None = None  # items per suite in the build's validity check (None: all)
    validity_margin: float = 10.0  # points by which the promised score gaps must hold
    enforce_gaps: bool = True  # micro models are too small to learn the skills: report only
    seed: int = 0
    fractions: tuple[float, ...] = DATA_FRACTIONS
    corpus: str = "plain"  # pretraining document mix (world/corpus.py MIXES)


PROFILES: dict[str, Profile] = {
    # The lab before issue #10: plain corpus (no instructions), full post-training at lr 1e-3.
    # Its task vectors were 23-47 % of ‖θ_pre‖ and did not add (docs/lab.md); kept for the record.
    "plain": Profile(
        name="plain",
        world=WorldConfig(seed=0, scale=0.01, val_per_part=30, test_per_part=60),
        shape=ModelShape(hidden=128, layers=4, heads=4, intermediate=384),
        vocab_size=1024, tokenizer_docs=3000, block=128, pretrain_steps=1200,
        pretrain=Hyper(lr=2e-3, batch_size=32, warmup_frac=0.05, weight_decay=0.1),
        finetune=Hyper(lr=1e-3, batch_size=8, epochs=3),
    ),
    "micro": Profile(
        name="micro",
        world=WorldConfig(seed=0, scale=0.0004, val_per_part=4, test_per_part=8, min_train=8),
        shape=ModelShape(hidden=64, layers=2, heads=1, intermediate=128),
        vocab_size=512, tokenizer_docs=300, block=64, pretrain_steps=40,
        pretrain=Hyper(lr=3e-3, batch_size=16, warmup_frac=0.05, weight_decay=0.1),
        finetune=Hyper(lr=2e-3, batch_size=8, epochs=2),
        eval_cap=8, enforce_gaps=False,
    ),
}


# Issue #10's design, shipped: the plain lab's world, model and data, but θ_pre has met every
# task in chats, answered half right (world/chats.py), pretrains twice as long, and
# post-training is anchored (lower lr; embeddings, head and norms left at θ_pre).
PROFILES["regime"] = replace(
    PROFILES["plain"], name="regime", pretrain_steps=2400, corpus="chat",
    finetune=replace(PROFILES["plain"].finetune, lr=3e-4, frozen=("embed_tokens", "lm_head", "norm")))

SHIPPED = "regime"  # the profile data/lab/ and cached_runs/lab.jsonl were built with


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown lab profile {name!r}; choose one of {sorted(PROFILES)}") from None
