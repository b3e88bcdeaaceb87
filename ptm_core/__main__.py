"""`python -m ptm_core COMMAND ...`: merge, bench, worker, workers, sweep, diagnose, lab, app.

Subcommands import their modules lazily so `merge` does not pay for vLLM or Streamlit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import Callable, Optional

from ptm_core.errors import PTMError

# command -> (module with main(argv), help)
COMMANDS: dict[str, tuple[str, str]] = {
    "merge": ("ptm_core.merge.cli", "merge models from a MergeKit YAML recipe into OUT_DIR"),
    "worker": ("ptm_core.orchestrate.worker", "run the evaluation worker (claims jobs from the store)"),
    "workers": ("ptm_core.orchestrate.ray_workers", "run N workers, each a warm engine, as Ray actors (local or a cluster)"),
    "sweep": ("ptm_core.orchestrate.sweep", "evaluate a grid of recipes for an experiment"),
    "search": ("ptm_core.search.cli", "suggest ω, measure, refit: the best merge without the full grid"),
    "diagnose": ("ptm_core.orchestrate.diagnose", "task-vector sizes, cosines, reference likelihood along ω and the loss barrier θ_G → θ_D"),
    "cached": ("ptm_core.store.cached_cli", "import/export shipped results in cached_runs/*.jsonl"),
    "lab": ("ptm_core.lab.__main__", "the embedded lab: `lab build [--profile regime|plain|micro]`, `lab publish`, `lab experiment`, `lab report`, `lab probe`"),
    "smollm2": ("ptm_core.smollm2.cli", "the real-model world: `smollm2 build`, `smollm2 materialize`, `smollm2 status`"),
    "app": ("ptm_core.app.launch", "start the Streamlit app and a worker on localhost"),
}
BENCHES: dict[str, tuple[str, str]] = {
    "merge": ("ptm_core.bench.merge_bench", "streaming merge vs mergekit-yaml vs copy floor"),
    "swap": ("ptm_core.bench.swap_bench", "warm in-engine weight swap vs cold export+restart"),
    "workers": ("ptm_core.bench.workers_bench", "1 vs N warm workers (Ray actors) draining one queue, SQLite and PostgreSQL"),
    "live": ("ptm_core.bench.live_bench", "an uncached point as the app sees it: enqueue -> first (subsample) -> full"),
    "search": ("ptm_core.search.bench", "search vs random vs grid: hypervolume per evaluation (lab replay)"),
    "app": ("ptm_core.app.bench", "app rerun (server) and chart update (browser) latency"),
}


# Ray binds a local instance to the machine's address unless told it runs where multi-node
# clusters are unsupported: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the variable Ray itself names
# (`ray start` prints it) and reads once, when `ray` is first imported. A private local Ray
# (`workers` / `bench workers` without --address) must stay on 127.0.0.1, so it is set here,
# before anything (vLLM, the worker's wiring) can import ray; ray_workers.connect sets Ray's
# private constant only when ray was imported before this ran (a library caller, the tests).
# The same name: ptm_core/orchestrate/ray_workers.py:_LOOPBACK_ENV (this module imports no layer).
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


# GNU OpenMP (torch's libgomp) spins this many times waiting at a barrier before it sleeps.
# Its default (300,000) holds a core while the other thread is descheduled: beside two
# CPU-bound processes on the two cores a swap took 3.9x and generation 4.4x their quiet time;
# with 1000 (libgomp's own value when threads outnumber cores) 1.9x and 2.0x, at 5-15 % on a
# quiet machine (`bench swap --beside 2`, docs/evaluation.md). Read once, when torch loads
# libgomp, so it is set here, before any import of torch; a user's own value wins.
OPENMP_SPIN_ENV, OPENMP_SPIN_DEFAULT = "GOMP_SPINCOUNT", "1000"


def prepare_environment(command: str, rest: list[str]) -> None:
    """What must be in the environment before the command's module (or anything) imports ray
    or torch."""
    os.environ.setdefault(OPENMP_SPIN_ENV, OPENMP_SPIN_DEFAULT)
    if command == "workers" or (command == "bench" and rest[:1] == ["workers"]):
        if not any(a == "--address" or a.startswith("--address=") for a in rest):
            os.environ.setdefault(RAY_LOOPBACK_ENV, "0")  # a user's own setting wins


def _terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C, so temp outputs are removed
    raise KeyboardInterrupt(f"signal {signum}")


def _load(module: str) -> Callable[[list[str]], Optional[int]]:
    return importlib.import_module(module).main


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m ptm_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    bench = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCHES))
    bench.add_argument("which", choices=list(BENCHES))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    prepare_environment(command, rest)
    if command == "bench":
        if not rest or rest[0] not in BENCHES:
            parser.parse_args(argv[:2])  # prints the choices and exits 2
        module, rest = BENCHES[rest[0]][0], rest[1:]
    elif command in COMMANDS:
        module = COMMANDS[command][0]
    else:
        parser.parse_args(argv[:1])
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(_load(module)(rest) or 0)
    except PTMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was left half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
