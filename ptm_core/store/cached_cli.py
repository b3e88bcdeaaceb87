"""`python -m ptm_core cached export|import`: shipped results in cached_runs/ (see cached.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ptm_core.store.cached import export_experiment, import_cached
from ptm_core.store.db import Store, default_cached_dir, default_store_path


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ptm_core cached export EXPERIMENT [--store PATH] [--dir cached_runs]` and
    `python -m ptm_core cached import [--dir cached_runs] [--store PATH]`."""
    ap = argparse.ArgumentParser(prog="python -m ptm_core cached")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write an experiment's results to cached_runs/")
    ex.add_argument("experiment")
    ex.add_argument("--engine", default=None,
                    help="export only results from this engine key (e.g. vllm:dtype=float32)")
    im = sub.add_parser("import", help="load cached_runs/ into the store (idempotent)")
    for p in (ex, im):
        p.add_argument("--store", default=None, help="SQLite file or postgresql:// URL")
        p.add_argument("--dir", default=None)
    args = ap.parse_args(argv)
    store = Store(args.store or default_store_path())
    directory = Path(args.dir) if args.dir else default_cached_dir()
    if args.cmd == "export":
        path = export_experiment(store, args.experiment, directory, engine=args.engine)
        print(f"wrote {path}")
    else:
        rep = import_cached(store, directory, strict=True)
        print(f"imported {rep.new_records} new records from {len(rep.files)} file(s); "
              f"{len(rep.skipped)} unchanged")
    return 0
