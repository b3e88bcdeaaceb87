"""A quick probe of the lab's design: does task arithmetic behave as in the paper with other
finetuning hyperparameters?

`python -m ptm_core lab probe --lr 3e-4 --epochs 5` reuses a finished build's world, tokenizer and
θ_pre (or pretrains a new one with `--pretrain-steps N`), trains θ_G and the three θ_D with the
given learning rate and epochs (the same training code as the build), then measures
θ_G + ω τ_D at a few ω on capped test suites through the transformers engine, and the size of
each update relative to θ_pre (overall, and per layer with the cosines between the task
vectors in `task_vectors`). Minutes instead of the full build's half hour; the numbers are
on capped suites, so compare probes with each other.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from ptm_core.atomic import write_text
from ptm_core.lab.profiles import SHIPPED, Profile, get_profile
from ptm_core.lab.validity import GENERAL_AXIS, SKILL_AXIS
from ptm_core.lab.world import SKILLS

XSTEST_AXIS = ("lab_xstest_safe", "compliance")
DEFAULT_OMEGAS = (0.0, 0.3, 0.6, 1.0)


def probe_profile(profile: Profile, lr: float, epochs: int,
                  pretrain_steps: Optional[int] = None,
                  frozen: Optional[Sequence[str]] = None) -> Profile:
    """`profile` with other finetuning settings; `frozen` None keeps the profile's."""
    tune = dataclasses.replace(profile.finetune, lr=lr, epochs=epochs)
    if frozen is not None:
        tune = dataclasses.replace(tune, frozen=tuple(frozen))
    return dataclasses.replace(profile, finetune=tune,
                               pretrain_steps=pretrain_steps or profile.pretrain_steps)


def relative_norm(delta: dict, base: dict) -> float:
    """‖delta‖ / ‖base‖ over all tensors: how far a finetune moved from θ_pre."""
    import torch

    num = torch.sqrt(sum((v.double() ** 2).sum() for v in delta.values()))
    den = torch.sqrt(sum((v.double() ** 2).sum() for v in base.values()))
    return float(num / den)


def probe(source: Path, out: Path, profile: Profile, *, omegas: Sequence[float] = DEFAULT_OMEGAS,
          skills: Sequence[str] = SKILLS, cap: int = 30, device: str = "cpu",
          log: Callable[[str], None] = print) -> dict:
    """Train θ_G and θ_D (of `skills`) in `out` from `source`'s θ_pre; measure task arithmetic."""
    from safetensors.torch import load_file

    from ptm_core.lab.build import build
    from ptm_core.lab.suites import build_suites
    from ptm_core.lab.train import read_run
    from ptm_core.lab.validity import evaluate
    from ptm_core.lab.world import build_world
    from ptm_core.merge.export import export
    from ptm_core.merge.ptm import task_arithmetic
    from ptm_core.merge.task_vectors import checkpoints_report

    # The source's world, tokenizer and θ_pre are reused when θ_pre was pretrained as this
    # profile says (length and corpus mix); otherwise the probe pretrains its own, and without
    # a usable source it builds everything in `out` (the same code as `lab build`).
    pre_run = read_run(source / "models" / "pre") if source else None
    reuse_pre = (pre_run is not None and pre_run["steps"] == profile.pretrain_steps
                 and pre_run.get("corpus_mix", "plain") == profile.corpus)
    out.mkdir(parents=True, exist_ok=True)
    parts = (("world", "tokenizer") if pre_run is not None else ()) + (("models/pre",) if reuse_pre else ())
    for part in parts:
        if not (out / part).exists():
            shutil.copytree(source / part, out / part)
    if not (out / "build.json").exists():
        write_text(out / "build.json", json.dumps({"profile": profile.name}) + "\n")
    # The plan's first runs are θ_pre, θ_G and the three θ_D (runs.plan's order).
    build(profile, out, check=False, stop_after=(0 if reuse_pre else 1) + 1 + len(SKILLS),
          log=lambda *_: None)

    suites = build_suites(build_world(profile.world), "test", cap=cap)
    models = out / "models"
    pre = load_file(str(models / "pre" / "model.safetensors"))
    general = load_file(str(models / "general" / "model.safetensors"))
    result: dict = {"profile": profile.name, "lr": profile.finetune.lr,
                    "epochs": profile.finetune.epochs, "frozen": list(profile.finetune.frozen),
                    "corpus": profile.corpus, "pretrain_steps": profile.pretrain_steps, "cap": cap,
                    "tau_over_pre": {"general": relative_norm(
                        {k: general[k] - pre[k] for k in pre}, pre)}, "points": []}
    for skill in skills:
        names = [GENERAL_AXIS, SKILL_AXIS[skill]] + ([XSTEST_AXIS] if skill == "safety" else [])
        chosen = {suite: suites[suite] for suite, _ in names}
        skill_sd = load_file(str(models / f"skill-{skill}" / "model.safetensors"))
        result["tau_over_pre"][skill] = relative_norm({k: skill_sd[k] - pre[k] for k in pre}, pre)
        targets = [(f"θ_{skill}", models / f"skill-{skill}", None)]
        for w in omegas:
            merged = out / "merges" / f"{skill}-{w:g}"
            if not merged.exists():
                recipe = task_arithmetic(str((models / "pre").resolve()),
                                         str((models / "general").resolve()),
                                         {skill: str((models / f"skill-{skill}").resolve())},
                                         {skill: w})
                export(recipe, merged)
            targets.append((f"θ_G + {w:g} τ_{skill}", merged, w))
        for label, path, w in targets:
            scores = evaluate(path, chosen, device)
            row = {"skill": skill, "omega": w, "label": label,
                   **{suite: round(scores[suite][metric], 1) for suite, metric in names}}
            result["points"].append(row)
            log("  ".join(f"{k}={v}" for k, v in row.items() if k != "skill"))
    # ‖τ‖/‖θ_pre‖ per layer and the cosines between τ_G and the τ_D (ptm_core.merge.task_vectors)
    result["task_vectors"] = checkpoints_report(
        models / "pre", {"G": models / "general",
                         **{s: models / f"skill-{s}" for s in skills}}).to_dict()
    write_text(out / "probe.json", json.dumps(result, indent=2) + "\n")
    return result


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptm_core lab probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--lr", type=float, required=True, help="finetuning learning rate")
    p.add_argument("--epochs", type=int, required=True, help="finetuning epochs")
    p.add_argument("--source", type=Path, default=Path("runs/lab"),
                   help="a build whose world, tokenizer and θ_pre to reuse (when it has them)")
    p.add_argument("--out", type=Path, help="default: runs/probe-lr<lr>-ep<epochs>")
    p.add_argument("--profile", default=SHIPPED)
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="pretrain a new θ_pre for this many steps instead of reusing the build's")
    p.add_argument("--omegas", default=",".join(f"{w:g}" for w in DEFAULT_OMEGAS))
    p.add_argument("--skills", default=",".join(SKILLS))
    p.add_argument("--cap", type=int, default=30, help="test items per suite")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--frozen", default=None,
                   help="comma list of parameter-name parts kept at θ_pre in finetuning, or 'none' "
                        "(default: the profile's)")
    a = p.parse_args(argv)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    skills = [s.strip() for s in a.skills.split(",") if s.strip()]
    unknown = [s for s in skills if s not in SKILLS]
    if unknown:
        p.error(f"unknown skill(s) {', '.join(unknown)}; choose from {', '.join(SKILLS)}")
    frozen = None if a.frozen is None else [] if a.frozen == "none" else [
        f.strip() for f in a.frozen.split(",") if f.strip()]
    profile = probe_profile(get_profile(a.profile), a.lr, a.epochs, a.pretrain_steps, frozen)
    pre_tag = f"-pre{a.pretrain_steps}" if a.pretrain_steps else ""
    prof_tag = ("" if a.profile == SHIPPED else f"-{a.profile}") + \
        ("" if frozen is None else "-frozen-" + ("-".join(frozen) or "none"))
    out = a.out or Path("runs") / f"probe{prof_tag}-lr{a.lr:g}-ep{a.epochs}{pre_tag}"
    result = probe(a.source, out, profile, omegas=[float(w) for w in a.omegas.split(",")],
                   skills=skills, cap=a.cap)
    print(json.dumps(result["tau_over_pre"]))
    print(f"-> {out / 'probe.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
