"""The worlds whose suites the registry serves: one module per world, each registering its
suites at import with `ptm_core.evals.registry.register_suite` / `register_suite_family`.

A new world (a package next to `ptm_core/lab/`) adds its suites module here, one line.
`ptm_core.evals` itself knows no world: this list sits above it, with the orchestration.
"""

from __future__ import annotations

import importlib

WORLD_SUITE_MODULES: tuple[str, ...] = (
    "ptm_core.lab.suites",  # lab_* (the embedded lab)
    "ptm_core.smollm2.suites",  # smollm2_* (the real-model world)
)


def load_worlds() -> None:
    """Import every world's suites module (each registers its suites once; imports are cached)."""
    for module in WORLD_SUITE_MODULES:
        importlib.import_module(module)
