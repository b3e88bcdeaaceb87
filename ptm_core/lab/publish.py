"""`python -m ptm_core lab publish`: copy the merge inputs of a finished build into the repo.

    data/lab/models/pre              θ_pre
    data/lab/models/general          θ_G
    data/lab/models/skill-<s>        θ_D for s in science, coding, safety
    data/lab/models/cft-<s>          θ_CFT (θ_G tuned on all of s) for WiSE-FT
    data/lab/lab.json                sizes |G| and |D| (heuristic ω = |D|/|G|), every run's
                                     steps and wall time, method costs, validity scores

CFT/RT checkpoints stay in the build directory (runs/lab/models/), with their run.json, for
the evaluation engine to score.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ptm_core.atomic import staging_dir, write_text
from ptm_core.catalogue import heuristic_omega as eq7
from ptm_core.errors import PTMError
from ptm_core.lab.world import SKILLS

MAX_CHECKPOINT_BYTES = 5 * 1024 * 1024
DEFAULT_DEST = Path("data/lab")


def shipped_models(n_sizes: int = 5) -> dict[str, str]:
    """Shipped name -> run name in the build (θ_CFT is the CFT run on all of the skill data)."""
    from ptm_core.lab.runs import wise_ft_source

    names = {"pre": "pre", "general": "general"}
    names.update({f"skill-{s}": f"skill-{s}" for s in SKILLS})
    names.update({f"cft-{s}": wise_ft_source(s, n_sizes) for s in SKILLS})
    return names


def heuristic_omega(sizes: dict[str, int]) -> dict[str, float]:
    """Paper Eq. 7: ω = |D| / |G| for each skill."""
    return {s: eq7(sizes[s], sizes["general"]) for s in SKILLS}


def publish(build_dir: Path, dest: Path = DEFAULT_DEST) -> dict:
    build = json.loads((build_dir / "build.json").read_text()) if (build_dir / "build.json").exists() else {}
    if build.get("status") != "complete":
        raise PTMError(f"{build_dir} is not a complete lab build (run `lab build` first)")
    from ptm_core.lab.profiles import get_profile
    from ptm_core.lab.runs import method_costs
    from ptm_core.lab.train import make_readable, read_run

    n_sizes = len(get_profile(build["profile"]).fractions)
    models = build_dir / "models"
    for shipped, run in shipped_models(n_sizes).items():
        src = models / run
        size = (src / "model.safetensors").stat().st_size
        if size > MAX_CHECKPOINT_BYTES:
            raise PTMError(f"{src} is {size / 2**20:.1f} MiB, over the {MAX_CHECKPOINT_BYTES >> 20} MiB limit")
        with staging_dir(dest / "models" / shipped, force=True) as tmp:
            for f in sorted(src.iterdir()):
                shutil.copyfile(f, tmp / f.name)
            make_readable(tmp)

    records = {p.name: read_run(p) for p in sorted(models.iterdir()) if read_run(p)}
    sizes = build["world"]["sizes"]["train"]
    validity_path = build_dir / "validity.json"
    manifest = {
        "profile": build["profile"],
        "world": build["world"],
        "sizes": sizes,
        "heuristic_omega": heuristic_omega(sizes),
        "models": shipped_models(n_sizes),
        "runs": {n: {k: r.get(k) for k in ("kind", "init", "skills", "data", "size_index",
                                            "fraction", "steps", "examples_seen", "tokens_seen",
                                            "wall_s", "seed", "device")}
                 for n, r in records.items()},
        "costs": method_costs(records),
        "validity": json.loads(validity_path.read_text()) if validity_path.exists() else None,
        "build_wall_s": build.get("train_wall_s"),
    }
    dest.mkdir(parents=True, exist_ok=True)
    write_text(dest / "lab.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptm_core lab publish",
                                     description="Copy the lab's merge inputs into the repository.")
    parser.add_argument("--build", type=Path, default=Path("runs/lab"), help="a finished lab build")
    parser.add_argument("--to", type=Path, default=DEFAULT_DEST, help="destination (default data/lab)")
    args = parser.parse_args(argv)
    try:
        manifest = publish(args.build, args.to)
    except PTMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"published {len(manifest['models'])} models to {args.to / 'models'}")
    return 0
