"""Tests as probes: the expected values stay with the parent, the sandbox reports observed ones.

`rewrite(tests)` parses the (trusted) test code without running it and replaces every `assert`:

    assert f(2) == 4           ->  __ptm_observe__(0, f(2))    the parent holds (==, 4)
    assert 3 in f(x)           ->  __ptm_observe__(1, f(x))    the parent holds (in, 3)
    assert is_ok(f(1))         ->  __ptm_truth__(2, is_ok(f(1)))

A comparison with one side that is a literal (`ast.literal_eval`) is decided here, on the
observed value the harness reported: the literal never enters the sandbox, so a program that
exits early, prints or writes anything, or replaces builtins still has to produce the right
values. Any other assert is evaluated inside and reported as a truth value; a hostile program
can forge those (it knows what "true" looks like), so they are as strong as the harness. A
probe outside `if`/`while`/`try`/`match` must be reported at least once (skipping it by exiting
early fails); reports are capped and each one must agree with its probe.
"""

from __future__ import annotations

import ast
import json
import operator
from dataclasses import dataclass
from typing import Any, Callable

_OPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_CONDITIONAL = (ast.If, ast.While, ast.Try, ast.Match, *((ast.TryStar,)
                                                        if hasattr(ast, "TryStar") else ()))
MAX_REPORTS = 200_000
MAX_VALUE_CHARS = 1 << 20


@dataclass(frozen=True)
class Probe:
    required: bool  # outside any branch: an honest run reports it at least once
    op: Callable[[Any, Any], bool] | None = None  # None: a truth probe
    expected: Any = None
    observed_left: bool = True  # the observed value is the comparison's left operand

    def holds(self, observed: Any) -> bool:
        if self.op is None:
            return observed is True
        try:
            a, b = (observed, self.expected) if self.observed_left else (self.expected, observed)
            return bool(self.op(a, b))
        except Exception:  # plain values only; e.g. '<' between str and int
            return False


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


class _Rewriter(ast.NodeTransformer):
    def __init__(self) -> None:
        self.probes: list[Probe] = []
        self._depth = 0  # how many conditional statements enclose the current node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        conditional = isinstance(node, _CONDITIONAL)
        self._depth += conditional
        try:
            return super().generic_visit(node)
        finally:
            self._depth -= conditional

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        test, required = node.test, self._depth == 0
        probe, observed, reporter = Probe(required), test, "__ptm_truth__"
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _OPS:
            left, right, op = test.left, test.comparators[0], type(test.ops[0])
            (left_lit, left_val), (right_lit, right_val) = _literal(left), _literal(right)
            is_singleton = op not in (ast.Is, ast.IsNot) or (
                right_val in (None, True, False) if right_lit else left_val in (None, True, False))
            if right_lit and not left_lit and is_singleton:
                probe = Probe(required, _OPS[op], right_val, True)
                observed, reporter = left, "__ptm_observe__"
            elif left_lit and not right_lit and is_singleton:
                probe = Probe(required, _OPS[op], left_val, False)
                observed, reporter = right, "__ptm_observe__"
        self.probes.append(probe)
        call = ast.Call(ast.Name(reporter, ast.Load()),
                        [ast.Constant(len(self.probes) - 1), observed], [])
        return ast.copy_location(ast.Expr(call), node)


def rewrite(tests: str) -> tuple[str, list[Probe]] | None:
    """The test code to run inside and the probes the parent checks; None if it does not parse."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    rewriter = _Rewriter()
    tree = ast.fix_missing_locations(rewriter.visit(tree))
    return ast.unparse(tree), rewriter.probes


def verdict(probes: list[Probe], reports: str) -> bool:
    """True only if the run reported completion and every report agrees with its probe."""
    seen, done = set(), False
    lines = reports.splitlines()
    if len(lines) > MAX_REPORTS:
        return False
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError, MemoryError):  # e.g. '[' * 10**6
            return False
        if not isinstance(record, dict):
            return False
        if record.get("done") == 1 and len(record) == 1:
            done = True
            continue
        index = record.get("p")
        if type(index) is not int or not 0 <= index < len(probes):
            return False
        probe = probes[index]
        if probe.op is None:
            observed = record.get("t")
        elif isinstance(record.get("v"), str) and len(record["v"]) <= MAX_VALUE_CHARS:
            ok, observed = _literal_text(record["v"])
            if not ok:
                return False
        else:
            return False  # an unencodable value, or a truth report for a value probe
        if not probe.holds(observed):
            return False
        seen.add(index)
    return done and all(i in seen for i, p in enumerate(probes) if p.required)


def _literal_text(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
