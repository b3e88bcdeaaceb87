"""Benchmarks: `python -m ptm_core bench merge|swap|app`. Figures measured side by side in one run."""
