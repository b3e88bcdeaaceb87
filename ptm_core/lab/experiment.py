"""The lab as an experiment file (`data/lab/lab.yml`) for the store, sweeps and the app.

Merge inputs point at the shipped checkpoints beside the file (`models/...`); CFT and RT
reference runs point at the build directory, which is not shipped: their evaluated results are
(in `cached_runs/lab.jsonl`), so a fresh clone shows them, and re-evaluating one needs the build.
The largest CFT run of each skill points at its shipped copy (`models/cft-<skill>`, the same
weights), so WiSE-FT merges work from a fresh clone.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Optional

import yaml

from ptm_core.atomic import write_text
from ptm_core.lab.world import SKILLS

REPO = Path(__file__).resolve().parents[2]
LAB_CANDIDATES = ("data/lab/lab.yml", "data/lab/lab.yaml", "data/lab/experiment.yml",
                  "data/lab/experiment.yaml", "cached_runs/lab.yml", "cached_runs/lab.yaml")


def find_lab_experiment() -> Path | None:
    """The lab's experiment file: $PTM_LAB_EXPERIMENT, else the first of LAB_CANDIDATES."""
    env = os.environ.get("PTM_LAB_EXPERIMENT")
    if env:
        return Path(env).expanduser()
    return next((REPO / rel for rel in LAB_CANDIDATES if (REPO / rel).is_file()), None)


# axis -> (lab suite, the metric the paper plots for it)
# vLLM scheduler options for the lab's engine (they change no output, so no cache key)
FAST_CPU_BATCHING = {"enable_chunked_prefill": False, "max_num_seqs": 1024,
                     "max_num_batched_tokens": 32768}
AXES = {
    "general": ("lab_general", "exact_match", "General (exact match, 5+ kinds)"),
    "science": ("lab_science", "exact_match", "Science (held-out task types)"),
    "coding": ("lab_coding", "pass@10", "Coding (pass@10, T=0.8)"),
    "safety": ("lab_safety", "refusal", "Safety (refuses unsafe)"),
    "xstest_safe": ("lab_xstest_safe", "compliance", "Exaggerated refusals (complies with safe)"),
}


def _read_runs(models_dir: Path) -> dict[str, dict]:
    runs = {}
    for d in sorted(models_dir.iterdir()):
        f = d / "run.json"
        if f.is_file():
            runs[d.name] = json.loads(f.read_text())
    return runs


def lab_experiment(build_dir: Path, dest_dir: Path, name: str = "lab") -> dict:
    """The experiment as a plain mapping (paths relative to `dest_dir`)."""
    build = json.loads((build_dir / "build.json").read_text())
    sizes = build["world"]["sizes"]["train"]
    runs = _read_runs(build_dir / "models")
    largest_cft: dict[str, tuple[int, str]] = {}
    for run_name, r in runs.items():
        if r["kind"] == "cft" and len(r["skills"]) == 1:
            s = r["skills"][0]
            largest_cft[s] = max(largest_cft.get(s, (-1, "")), (r["size_index"], run_name))
    shipped_cft = {s: run_name for s, (_, run_name) in largest_cft.items()}
    rel = lambda p: os.path.relpath(Path(p).resolve(), dest_dir.resolve())  # noqa: E731

    references = []
    for run_name, r in runs.items():
        if r["kind"] not in ("cft", "rt"):
            continue
        skills = list(r["skills"])
        data_size = sum(n for part, n in r["data"].items() if part != "general")
        shipped = len(skills) == 1 and shipped_cft.get(skills[0]) == run_name
        model = f"./models/cft-{skills[0]}" if shipped else rel(build_dir / "models" / run_name)
        what = "all three skills" if len(skills) > 1 else f"{skills[0]}, {r['fraction']:g} of D"
        references.append({"kind": r["kind"], "skills": skills, "model": model,
                           "label": f"{r['kind'].upper()} {what}", "data_size": data_size,
                           "train_steps": int(r["steps"])})
    return {
        "name": name,
        "description": "The lab: a tiny Llama trained on synthetic general, science, coding and "
                       "safety data on a CPU (docs/lab.md). Sizes are training examples.",
        "base": "./models/pre",
        "general": {"model": "./models/general", "size": int(sizes["general"]),
                    "steps": int(runs["general"]["steps"])},
        "size_unit": "examples",
        "skills": {s: {"model": f"./models/skill-{s}", "size": int(sizes[s]),
                       "steps": int(runs[f"skill-{s}"]["steps"])} for s in SKILLS},
        "axes": {axis: {"suite": suite, "metric": metric, "label": label}
                 for axis, (suite, metric, label) in AXES.items()},
        "references": references,
        "engine": "vllm",
        # The lab trains and validates in float32; vLLM's "auto" would run it in bfloat16 on CPU.
        # Without chunked prefill, with room for every sequence of a suite in one batch, the
        # coding suite's 60 x 10 seeded samples run as one continuously batched submission
        # instead of one decode loop per prefill-sized group: 3x faster, the same outputs
        # (docs/evaluation.md, "Measured").
        "engine_options": {"dtype": "float32", **FAST_CPU_BATCHING},
    }


def write_lab_experiment(build_dir: Path, dest_dir: Path, name: str = "lab") -> Path:
    path = dest_dir / f"{name}.yml"
    dest_dir.mkdir(parents=True, exist_ok=True)
    write_text(path, yaml.safe_dump(lab_experiment(build_dir, dest_dir, name), sort_keys=False))
    return path


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptm_core.lab.experiment",
                                description="Write the lab's experiment file from a finished build.")
    p.add_argument("--build", type=Path, default=Path("runs/lab"))
    p.add_argument("--dest", type=Path, default=Path("data/lab"))
    a = p.parse_args(argv)
    print(write_lab_experiment(a.build, a.dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
