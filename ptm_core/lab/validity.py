"""The build's validity check, measured, never assumed:

- no evaluation example occurs in any training set or in the pretraining corpus;
- θ_G is clearly below each θ_D on that skill (room to improve, as in the paper);
- each θ_D is clearly below θ_G on general ability.

"Clearly" means by at least `margin` points on the 0-100 scale.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Callable

from ptm_core.atomic import write_text
from ptm_core.lab.world import SKILLS, World, leaks

# The suite and metric that measures each skill.
SKILL_AXIS = {"science": ("lab_science", "exact_match"), "coding": ("lab_coding", "pass@10"),
              "safety": ("lab_safety", "refusal")}
GENERAL_AXIS = ("lab_general", "exact_match")
CHECKED_MODELS = ("pre", "general", *(f"skill-{s}" for s in SKILLS))
VALIDITY_FILE = "validity.json"


def evaluate(model_dir: Path, suites: dict, device: str | None = None) -> dict[str, dict[str, float]]:
    """All metrics of every suite for one checkpoint, through the transformers engine."""
    from ptm_core.engine.hf import HFEngine
    from ptm_core.lab.train import pick_device

    engine = HFEngine(model_dir, device=device or pick_device(), batch_size=64)
    return {name: suite.run(engine).metrics for name, suite in suites.items()}


def gap_checks(scores: dict[str, dict[str, dict[str, float]]], margin: float) -> list[dict]:
    """The score gaps the lab promises, each with its measured values."""
    checks = []
    g = scores["general"]
    for s in SKILLS:
        suite, metric = SKILL_AXIS[s]
        d = scores[f"skill-{s}"]
        checks.append({"check": f"θ_G below θ_{s} on {suite}:{metric}",
                       "theta_G": g[suite][metric], "theta_D": d[suite][metric],
                       "passed": d[suite][metric] - g[suite][metric] >= margin})
        suite, metric = GENERAL_AXIS
        checks.append({"check": f"θ_{s} below θ_G on {suite}:{metric}",
                       "theta_G": g[suite][metric], "theta_D": d[suite][metric],
                       "passed": g[suite][metric] - d[suite][metric] >= margin})
    return checks


def corpus_of(out: Path, seed: int) -> list[str]:
    """The exact pretraining corpus, regenerated from the seed and the count θ_pre recorded."""
    from ptm_core.lab.train import read_run
    from ptm_core.lab.world.corpus import documents

    record = read_run(out / "models" / "pre") or {}
    mix = record.get("corpus_mix", "plain")  # records older than the mixes are all plain
    return list(itertools.islice(documents(seed, mix), record.get("corpus_docs", 0)))


def format_table(scores: dict[str, dict[str, dict[str, float]]]) -> str:
    cols = [("general", "lab_general", "exact_match"), ("science", "lab_science", "exact_match"),
            ("code p@1", "lab_coding", "pass@1"), ("code p@10", "lab_coding", "pass@10"),
            ("safety", "lab_safety", "refusal"), ("xstest-safe", "lab_xstest_safe", "compliance")]
    lines = ["model".ljust(16) + "".join(c[0].rjust(12) for c in cols)]
    for model, s in scores.items():
        lines.append(model.ljust(16) + "".join(f"{s[suite].get(m, float('nan')):12.1f}" for _, suite, m in cols))
    return "\n".join(lines)


def check_build(out: Path, profile, world: World, device: str | None = None,
                log: Callable[[str], None] = print) -> dict:
    from ptm_core.lab.suites import build_suites

    leaked = leaks(world, corpus_of(out, profile.seed))
    suites = build_suites(world, "test", cap=profile.eval_cap)
    scores = {m: evaluate(out / "models" / m, suites, device) for m in CHECKED_MODELS}
    checks = [{"check": "no evaluation example in any training set or the corpus",
               "leaked": len(leaked), "passed": not leaked}]
    checks += gap_checks(scores, profile.validity_margin)
    enforced = [c for c in checks if "theta_G" not in c or profile.enforce_gaps]
    result = {"passed": all(c["passed"] for c in enforced), "margin": profile.validity_margin,
              "gaps_enforced": profile.enforce_gaps, "checks": checks, "scores": scores}
    write_text(out / VALIDITY_FILE, json.dumps(result, indent=2) + "\n")
    log(format_table(scores))
    for c in checks:
        verdict = "PASS " if c["passed"] else ("FAIL " if c in enforced else "n/a  ")
        log(verdict + c["check"] +
            (f" ({c['theta_G']:.1f} vs {c['theta_D']:.1f})" if "theta_G" in c else f" ({c['leaked']} leaked)"))
    if not profile.enforce_gaps:
        log(f"(score gaps are reported, not enforced, for the {profile.name!r} profile)")
    return result
