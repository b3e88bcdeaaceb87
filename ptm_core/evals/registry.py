"""Suites by name, for experiment files (`axes: {safety: {suite: xstest, options: {...}}}`).

Suites register themselves, as in lm-eval's task registry: `@register_suite("name")` on a
builder `(**options) -> Suite`, or `@register_suite_family("prefix_")` on a builder
`(name, **options) -> Suite` for every name with that prefix (a world's suites: `lab_*`).
This package registers its own suites below and knows no world; a world registers its
family in its suites module, which `ptm_core.orchestrate.worlds` lists.

Options are plain YAML values. `sampling` (a mapping of `Sampling` fields) overrides a suite's
sampling where it has one. Paths are taken as given (relative paths against the working
directory). Builders import their modules lazily, so naming a suite costs nothing until it is
built."""

from __future__ import annotations

from typing import Any, Callable

from ptm_core.engine.base import Sampling
from ptm_core.errors import PTMError

SuiteBuilder = Callable[..., Any]
BUILDERS: dict[str, SuiteBuilder] = {}  # name -> builder(**options)
FAMILIES: dict[str, tuple[SuiteBuilder, str]] = {}  # prefix -> (builder(name, **options), shown as)


def register_suite(name: str) -> Callable[[SuiteBuilder], SuiteBuilder]:
    """Decorator: the builder `(**options) -> Suite` of the suite called `name`."""
    def deco(fn: SuiteBuilder) -> SuiteBuilder:
        BUILDERS[name] = fn
        return fn
    return deco


def register_suite_family(prefix: str, shown: str | None = None) -> Callable[[SuiteBuilder], SuiteBuilder]:
    """Decorator: the builder `(name, **options) -> Suite` of every suite whose name starts
    with `prefix` (`shown` is how error messages list the family; default `prefix*`)."""
    def deco(fn: SuiteBuilder) -> SuiteBuilder:
        FAMILIES[prefix] = (fn, shown or f"{prefix}*")
        return fn
    return deco


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


@register_suite("xstest")  # options: path (else the hub), sampling
def _xstest(path: str | None = None, **options):
    from ptm_core.evals.xstest import xstest_suite

    return xstest_suite(path, **_sampling(options), **options)


@register_suite("refusal")  # options: path, expect (refuse|comply), group_column, name, sampling
def _refusal(path: str, **options):
    from ptm_core.evals.refusal_suite import refusal_rate_suite

    return refusal_rate_suite(path, **_sampling(options), **options)


@register_suite("coding")  # options: path, name, k, sampled, timeout_s, memory_mb, sampling
def _coding(path: str, **options):
    from ptm_core.evals.coding import coding_suite

    return coding_suite(path, **_sampling(options), **options)


@register_suite("lmeval")  # options: tasks, include_path, include_defaults, num_fewshot, limit, ...
def _lmeval(tasks: list[str] | str, **options):
    from ptm_core.evals.lmeval import LMEvalSuite

    return LMEvalSuite([tasks] if isinstance(tasks, str) else list(tasks), **options)


@register_suite_family("lmeval:", shown="lmeval:<tasks>")  # the task list in the name
def _lmeval_named(name: str, **options):
    return _lmeval(name.split(":", 1)[1].split(","), **options)


# --- reference answers ---------------------------------------------------------------------------
# What a suite's model ought to reply, for likelihood diagnostics (ptm_core.orchestrate.diagnose):
# `@register_references("prefix_")` on a provider `(name, cap=None, **options) -> [(prompt,
# reference), ...]` for every suite name with that prefix. A provider raises NoReferences (with
# the reason) for a suite of its family that has none, e.g. one scored by executing code.
REFERENCES: dict[str, Callable[..., list[tuple[str, str]]]] = {}


class NoReferences(PTMError):
    """The suite has no reference answers; the message says why."""


def register_references(prefix: str) -> Callable[[SuiteBuilder], SuiteBuilder]:
    """Decorator: the reference provider of every suite whose name starts with `prefix`."""
    def deco(fn: SuiteBuilder) -> SuiteBuilder:
        REFERENCES[prefix] = fn
        return fn
    return deco


def get_references(name: str, cap: int | None = None, **options: Any) -> list[tuple[str, str]]:
    """(prompt, reference answer) pairs of the suite `name` built with `options`, at most `cap`
    of them; NoReferences when no provider knows the suite or the suite has none."""
    prefix = max((p for p in REFERENCES if name.startswith(p)), key=len, default=None)
    if prefix is None:
        raise NoReferences(f"suite {name!r} has no reference answers (no provider is registered "
                           "for it; it is scored without a reference reply)")
    pairs = REFERENCES[prefix](name, cap=cap, **options)
    if not pairs:
        raise NoReferences(f"suite {name!r} gave no reference answers")
    return list(pairs)[:cap] if cap is not None else list(pairs)


def get_suite(name: str, **options: Any):
    """The suite called `name` built with `options`: a registered name, or a name in a
    registered family ("lmeval:<task>[,<task>...]", a world's "lab_*")."""
    family = next((prefix for prefix in FAMILIES if name.startswith(prefix)), None)
    if family is None and name not in BUILDERS:
        known = [*BUILDERS, *(shown for _, shown in FAMILIES.values())]
        raise PTMError(f"unknown suite {name!r}; known: {', '.join(known)}")
    try:
        if family is not None:
            return FAMILIES[family][0](name, **options)
        return BUILDERS[name](**options)
    except TypeError as e:  # a missing or unknown option
        raise PTMError(f"suite {name!r}: {e}") from None
