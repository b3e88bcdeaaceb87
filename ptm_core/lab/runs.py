"""The runs of the lab, as the paper's experiment lists them, and how one run is trained.

    pre                 θ_pre: language modelling on the synthetic corpus
    general             θ_G: θ_pre tuned on G
    skill-<s>           θ_D: θ_pre tuned on skill s alone
    cft-<s>-<i>         CFT: θ_G tuned on the i-th (1..5) nested amount of skill s
    rt-<s>-<i>          RT: θ_pre tuned on G plus the i-th amount of skill s
    cft-all, rt-all     CFT and RT on all three skills together (paper Table 4)

cft-<s>-5 is trained on the full skill data: it is θ_CFT for WiSE-FT. Costs follow the paper:
PTM costs the steps of θ_D, CFT the sum over its five runs, RT the sum over its five runs
(each of which retrains on all of G: n·|G| + Σ|D_i|).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from ptm_core.lab.profiles import Profile
from ptm_core.lab.world import SKILLS, World

ALL = "all"


@dataclass(frozen=True)
class RunSpec:
    name: str
    kind: str  # pre | general | skill | cft | rt
    init: str | None  # run to start from; None: fresh weights
    data: dict[str, int] = field(default_factory=dict)  # domain -> examples (first n of train)
    skills: tuple[str, ...] = ()
    size_index: int | None = None  # 1..5 for CFT/RT amounts
    fraction: float | None = None  # of the full skill data

    def describe(self) -> dict:
        return asdict(self)


def plan(profile: Profile, world: World) -> list[RunSpec]:
    """Every run, parents before children."""
    sizes = world.sizes("train")
    g = sizes["general"]
    runs = [RunSpec("pre", "pre", None, {"corpus_blocks": profile.pretrain_steps * profile.pretrain.batch_size}),
            RunSpec("general", "general", "pre", {"general": g})]
    runs += [RunSpec(f"skill-{s}", "skill", "pre", {s: sizes[s]}, (s,)) for s in SKILLS]
    for s in SKILLS:
        for i, f in enumerate(profile.fractions, 1):
            n = max(1, round(f * sizes[s]))
            runs.append(RunSpec(f"cft-{s}-{i}", "cft", "general", {s: n}, (s,), i, f))
            runs.append(RunSpec(f"rt-{s}-{i}", "rt", "pre", {"general": g, s: n}, (s,), i, f))
    everything = {s: sizes[s] for s in SKILLS}
    runs.append(RunSpec(f"cft-{ALL}", "cft", "general", everything, SKILLS, None, 1.0))
    runs.append(RunSpec(f"rt-{ALL}", "rt", "pre", {"general": g, **everything}, SKILLS, None, 1.0))
    return runs


def wise_ft_source(skill: str, n_sizes: int) -> str:
    """The CFT run trained on the full skill data (θ_CFT for WiSE-FT): the last of `n_sizes`."""
    return f"cft-{skill}-{n_sizes}"


def method_costs(records: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Training steps per method and skill, from run records (paper Section 2)."""
    def steps(name: str) -> int:
        return records[name]["steps"] if name in records else 0

    costs: dict[str, dict[str, int]] = {"ptm": {}, "cft": {}, "rt": {}}
    for s in SKILLS:
        costs["ptm"][s] = steps(f"skill-{s}")
        costs["cft"][s] = sum(r["steps"] for n, r in records.items() if n.startswith(f"cft-{s}-"))
        costs["rt"][s] = sum(r["steps"] for n, r in records.items() if n.startswith(f"rt-{s}-"))
    costs["ptm"][ALL] = sum(costs["ptm"][s] for s in SKILLS)
    costs["cft"][ALL] = steps(f"cft-{ALL}")
    costs["rt"][ALL] = steps(f"rt-{ALL}")
    return costs


@dataclass
class Context:
    """What every run needs: the profile, the world, the tokenizer and where outputs go."""

    profile: Profile
    world: World
    tokenizer: object  # transformers tokenizer
    tokenizer_dir: Path
    models_dir: Path
    device: str

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


def train_one(spec: RunSpec, ctx: Context) -> dict:
    """Train `spec` and write its checkpoint and run.json; returns the record."""
    from ptm_core.lab import data as D
    from ptm_core.lab.model import load_model, new_model
    from ptm_core.lab.train import environment, loss_summary, optimize, shifted, write_checkpoint
    from ptm_core.lab.world import WORLD_VERSION
    from ptm_core.lab.world.corpus import documents

    p = ctx.profile
    if spec.init is None:
        model = new_model(p.shape, len(ctx.tokenizer), ctx.eos_id, ctx.pad_id, p.seed)
    else:
        model = load_model(ctx.models_dir / spec.init)

    start = time.perf_counter()
    if spec.kind == "pre":
        h = p.pretrain
        blocks, docs_read = D.pack_documents(ctx.tokenizer, documents(p.seed, p.corpus), ctx.eos_id, p.block,
                                  spec.data["corpus_blocks"])
        batches: Iterator = D.block_batches(blocks, h.batch_size, p.seed)
        steps = p.pretrain_steps
        examples, tokens = len(blocks), len(blocks) * p.block
        extra = {"corpus_docs": docs_read, "corpus_mix": p.corpus}
    else:
        h = p.finetune
        extra = {}
        chosen = [ex for domain, n in spec.data.items()
                  for ex in ctx.world.examples("train", domain)[:n]]
        encoded = D.encode_examples(ctx.tokenizer, chosen, ctx.eos_id)
        plan_ = D.sft_batches(encoded, h.batch_size, h.epochs, p.seed)
        batches = shifted(D.collate(b, ctx.pad_id) for b in plan_)
        steps = len(plan_)
        examples = len(encoded) * h.epochs
        tokens = sum(len(e.ids) for e in encoded) * h.epochs
    losses = optimize(model, batches, steps, h, ctx.device, desc=spec.name)
    wall = time.perf_counter() - start
    record = {
        "name": spec.name, "kind": spec.kind, "init": spec.init, "skills": list(spec.skills),
        "data": spec.data, "size_index": spec.size_index, "fraction": spec.fraction,
        "steps": steps, "examples_seen": examples, "tokens_seen": tokens,
        "epochs": h.epochs if spec.kind != "pre" else 1, "hyper": asdict(h), "seed": p.seed,
        "wall_s": round(wall, 2), "device": ctx.device, "profile": p.name,
        "world_version": WORLD_VERSION, "loss": loss_summary(losses), "env": environment(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
    }
    write_checkpoint(model, ctx.tokenizer_dir, ctx.models_dir / spec.name, record)
    return record
