"""PTM Explorer core: merge recipes, streaming merges, evaluation and results store."""

__version__ = "0.1.0"
