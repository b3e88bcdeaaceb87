"""Suites: what is measured (prompts, sampling, scorer) and the scorers they share."""
