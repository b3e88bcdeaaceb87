"""`python -m ptm_core smollm2 build|materialize|status|experiment` (docs/smollm2.md)."""

from __future__ import annotations

import argparse
from typing import Optional

from ptm_core.smollm2.build import World


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptm_core smollm2",
                                description="The real-model world (docs/smollm2.md).")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train every run not yet built (resumable)")
    b.add_argument("--max-priority", type=int, default=None,
                   help="0: θ_G and θ_D only; 1: + CFT on full D; 2: + RT on full D, CFT all; 3: all")
    b.add_argument("--only", nargs="*", default=None, help="run names")
    m = sub.add_parser("materialize", help="build the full checkpoints from the package + adapters")
    m.add_argument("runs", nargs="*", help="run names (default: every built run)")
    sub.add_parser("status", help="which runs are built and materialized")
    sub.add_parser("experiment", help="write data/smollm2/smollm2.yml for the runs built so far")
    a = p.parse_args(argv)
    world = World()
    if a.cmd == "build":
        built = world.build(a.max_priority, a.only)
        print(f"built {len(built)} run(s): {', '.join(built) or 'none (all up to date)'}")
    elif a.cmd == "materialize":
        names = a.runs or ["pre", *world.done()]
        from tqdm import tqdm

        for name in tqdm(names, desc="materializing", unit="model"):
            tqdm.write(str(world.materialize(name, progress=tqdm.write)))
    elif a.cmd == "experiment":
        from ptm_core.smollm2.experiment import write_experiment

        print(write_experiment(world))
    else:
        for name in ["pre", *world.plan]:
            built = name == "pre" or world.record(name) is not None
            have = (world.model_dir(name) / "config.json").is_file()
            print(f"{name:14s} {'built' if built else '-':6s} {'materialized' if have else ''}")
    return 0
