"""The model card (README.md) written beside every merged checkpoint."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping, Optional

from ptm_core.merge.recipe import Recipe


def model_card(recipe: Recipe, inputs: Mapping[str, str], *, template: str, seed: int,
               scores: Optional[Mapping[str, float]] = None, version: str) -> str:
    """Markdown with a YAML header: recipe, inputs with fingerprints, tool version, scores."""
    lines = [
        "---",
        "library_name: transformers",
        "tags: [merge, ptm-explorer]",
        "---",
        f"# Merged model ({recipe.merge_method})",
        "",
        f"Written by PTM Explorer {version} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.",
        f"Config and tokenizer copied from `{template}`. Random seed: {seed}.",
        "",
        "## Inputs",
        "",
        "| model | role | fingerprint |",
        "|---|---|---|",
    ]
    for ref, fp in inputs.items():
        role = ("base" if ref == recipe.base_model else
                "tokenizer" if ref == recipe.tokenizer_model() else "input")
        lines.append(f"| `{ref}` | {role} | `{fp}` |")
    lines += ["", "Fingerprint: SHA-256 (16 hex) of the full content of every weight shard and",
              "support file (config, tokenizer, generation config).", ""]
    if scores:
        lines += ["## Scores", "", "| metric | score |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in scores.items()]
        lines.append("")
    lines += ["## Recipe", "",
              "MergeKit format; reproduce with `mergekit-yaml mergekit_config.yml OUT` or",
              "`python -m ptm_core merge mergekit_config.yml OUT`.", "",
              "```yaml", recipe.to_yaml().rstrip(), "```", ""]
    return "\n".join(lines)
