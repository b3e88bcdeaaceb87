"""`python -m ptm_core merge CONFIG.yml OUT_DIR`: the MergeKit-compatible merge command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from ptm_core.errors import PTMError
from ptm_core.merge.export import DEFAULT_SHARD_BYTES, export
from ptm_core.merge.recipe import Recipe


def _size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    t = text.strip().upper().removesuffix("B")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 2G)") from None


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptm_core merge",
                                description="Merge models as a MergeKit YAML recipe describes.")
    p.add_argument("config", help="recipe in MergeKit YAML (models: form)")
    p.add_argument("out_dir", help="output directory (created atomically)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    p.add_argument("--random-seed", type=int, default=0, help="seed for DARE/DELLA (default 0)")
    p.add_argument("--max-shard-size", type=_size, default=DEFAULT_SHARD_BYTES,
                   help="largest output shard, e.g. 500M or 2G (default 2G)")
    p.add_argument("--scores", help="JSON object of scores to record in the model card")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    scores = None
    if a.scores:
        try:
            scores = {str(k): float(v) for k, v in json.loads(a.scores).items()}
        except (ValueError, AttributeError, TypeError):
            raise PTMError("--scores must be a JSON object of numbers, e.g. '{\"general\": 48.1}'")
    recipe = Recipe.from_file(a.config)
    out = export(recipe, a.out_dir, force=a.force, seed=a.random_seed, shard_bytes=a.max_shard_size,
                 scores=scores, progress=not a.quiet and sys.stderr.isatty())
    print(out)
    return 0
