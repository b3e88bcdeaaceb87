"""The import direction: each layer imports only the layers below it (docs/architecture.md),
lazy imports inside functions included, and no two modules import each other (directly or
round a longer loop)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# layer -> the layers it may import (besides itself). Root modules (errors, atomic, catalogue,
# the strict readers safe_yaml / safe_json, the interval and pass@k math) are the floor every layer may use.
ROOT = {"errors", "atomic", "catalogue", "safe_yaml", "safe_json", "intervals", "passk"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "atomic": {"errors"},
    "catalogue": {"errors"},
    "safe_yaml": {"errors"},
    "safe_json": {"errors"},
    "intervals": {"errors", "passk"},
    "passk": set(),
    "__main__": {"errors"},  # subcommands are named by string and imported on use
    "merge": ROOT,
    "engine": ROOT | {"merge"},
    "evals": ROOT | {"engine"},
    "store": ROOT,
    "analysis": ROOT | {"store"},
    "lab": ROOT | {"merge", "engine", "evals", "store", "analysis"},  # a world
    "smollm2": ROOT | {"merge", "engine", "evals", "store", "analysis"},  # a world
    "orchestrate": ROOT | {"merge", "engine", "evals", "store"},  # worlds: by name, worlds.py
    "search": ROOT | {"merge", "engine", "evals", "store", "analysis", "orchestrate"},
    # benchmarks build tiny models and drive the store, the queue and the worker loop
    # (bench workers: Ray actors; bench live: enqueue -> first -> full)
    "bench": ROOT | {"merge", "engine", "evals", "store", "orchestrate", "testing"},
    "testing": ROOT | {"merge", "engine", "evals", "store", "analysis", "orchestrate"},
    "app": ROOT | {"merge", "engine", "store", "analysis", "orchestrate", "lab", "search"},
    "pages": ROOT | {"app", "analysis"},
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "ptm_core":
        return parts[0]  # pages, app (the Streamlit entry point counts as a page)
    return parts[1] if len(parts) > 1 else "errors"  # ptm_core/__init__ imports nothing


def _imports() -> dict[str, set[str]]:
    """module -> the ptm_core modules it imports, at any depth of its code."""
    files = [*sorted((REPO / "ptm_core").rglob("*.py")), *sorted((REPO / "pages").glob("*.py")),
             REPO / "app.py"]
    out: dict[str, set[str]] = {}
    for f in files:
        mod = _module(f)
        mod = "pages.app" if mod == "app" else mod
        names: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from ptm_core.x import y` may name a module y: count both
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        out[mod] = {n for n in names if n.startswith("ptm_core")}
    known = set(out)
    return {m: {n for n in ns if n in known} for m, ns in out.items()}


IMPORTS = _imports()


def test_the_graph_was_read():
    assert "ptm_core.store.db" in IMPORTS and "ptm_core.orchestrate.worker" in IMPORTS
    assert "ptm_core.store.db" in IMPORTS["ptm_core.orchestrate.worker"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below(layer):
    bad = sorted(f"{m} imports {n}" for m, ns in IMPORTS.items() if _layer(m) == layer
                 for n in ns if _layer(n) != layer and _layer(n) not in ALLOWED[layer])
    assert not bad, "\n".join(bad)


def test_every_layer_is_in_the_table():
    assert {_layer(m) for m in IMPORTS} <= set(ALLOWED)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (c := visit(w)):
                return c
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (c := visit(v)):
            return c
    return None


def test_no_cycle_between_layers():
    graph: dict[str, set[str]] = {}
    for m, ns in IMPORTS.items():
        graph.setdefault(_layer(m), set()).update(_layer(n) for n in ns if _layer(n) != _layer(m))
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_cycle_between_modules():
    # a package's __init__ re-exporting its modules is not a loop back into it
    graph = {m: {n for n in ns if n != m and not m.startswith(n + ".")} for m, ns in IMPORTS.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_checker_sees_a_cycle_and_a_lazy_upward_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    tree = ast.parse("def f():\n    from ptm_core.orchestrate import worker\n")
    lazy = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert lazy == ["ptm_core.orchestrate"]
