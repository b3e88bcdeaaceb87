"""Suites by name, for experiment files (`axes: {safety: {suite: xstest, options: {...}}}`).

Options are plain YAML values. `sampling` (a mapping of `Sampling` fields) overrides a suite's
sampling where it has one. Paths are taken as given (relative paths against the working
directory). Builders import their modules lazily, so naming a suite costs nothing until it is
built."""

from __future__ import annotations

from typing import Any, Callable

from ptm_core.engine.base import Sampling
from ptm_core.errors import PTMError


def _sampling(options: dict[str, Any]) -> dict[str, Any]:
    raw = options.pop("sampling", None)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PTMError(f"suite option 'sampling' must be a mapping of Sampling fields, got {raw!r}")
    if "stop" in raw:
        raw = {**raw, "stop": tuple(raw["stop"])}
    try:
        return {"sampling": Sampling(**raw)}
    except TypeError as e:
        raise PTMError(f"suite option 'sampling': {e}") from None


def _xstest(path: str | None = None, **options):
    from ptm_core.evals.xstest import xstest_suite

    return xstest_suite(path, **_sampling(options), **options)


def _refusal(path: str, **options):
    from ptm_core.evals.refusal_suite import refusal_rate_suite

    return refusal_rate_suite(path, **_sampling(options), **options)


def _coding(path: str, **options):
    from ptm_core.evals.coding import coding_suite

    return coding_suite(path, **_sampling(options), **options)


def _lmeval(tasks: list[str] | str, **options):
    from ptm_core.evals.lmeval import LMEvalSuite

    return LMEvalSuite([tasks] if isinstance(tasks, str) else list(tasks), **options)


def _lab(name: str, split: str = "test", cap: int | None = None):
    # The lab's suites live with the lab (it builds on this package); found by name here.
    from ptm_core.lab.suites import build_suites

    return build_suites(split=split, cap=cap)[name]


BUILDERS: dict[str, Callable[..., Any]] = {
    "xstest": _xstest,      # options: path (else the hub), sampling
    "refusal": _refusal,    # options: path, expect (refuse|comply), group_column, name, sampling
    "coding": _coding,      # options: path, name, k, sampled, timeout_s, memory_mb, sampling
    "lmeval": _lmeval,      # options: tasks, include_path, include_defaults, num_fewshot, limit, ...
}


def get_suite(name: str, **options: Any):
    """The suite called `name` built with `options`. Besides the names in `BUILDERS`:
    "lmeval:<task>[,<task>...]" (the task list in the name) and the lab's "lab_*" suites."""
    if name.startswith("lmeval:"):
        return _lmeval(name.split(":", 1)[1].split(","), **options)
    if name.startswith("lab_"):
        return _lab(name, **options)
    if name.startswith("smollm2_"):
        from ptm_core.smollm2.suites import build_suite

        return build_suite(name, **options)
    if name not in BUILDERS:
        raise PTMError(f"unknown suite {name!r}; known: {', '.join(BUILDERS)}, lmeval:<tasks>, lab_*")
    try:
        return BUILDERS[name](**options)
    except TypeError as e:  # a missing or unknown option
        raise PTMError(f"suite {name!r}: {e}") from None
