"""Suites: what is measured (prompts, sampling, scorer) and the scorers they share."""

from ptm_core.evals.registry import get_suite

__all__ = ["get_suite"]
