"""The default wiring of the worker and sweeps: which engine runs an experiment and which
suite measures an axis. Both import their packages lazily (vLLM and torch load only when a
job runs). Suites come from the `ptm_core.evals` registry, which the worlds listed in
`ptm_core.orchestrate.worlds` fill with their own suites.
"""

from __future__ import annotations

import os
from typing import Any

from ptm_core.errors import PTMError
from ptm_core.store.experiment import Experiment


def resident_refs(experiment: Experiment) -> list[str]:
    """The models to preload: every model of the experiment that is on disk. Reference
    checkpoints a fresh clone has not built (the lab's `runs/`) must not stop the merges that
    need only θ_pre, θ_G and the θ_D; a job naming a missing one fails on its own when its
    recipe loads it."""
    return [ref for ref in experiment.model_refs() if os.path.isdir(ref)]


def default_engine_factory(experiment: Experiment) -> Any:
    """The engine named by `experiment.engine`, started from θ_G with every model of the
    experiment that exists resident: "vllm" -> VLLMEngine, "hf" -> HFEngine (`engine_options`
    are passed to the constructor)."""
    opts = dict(experiment.engine_options)
    if experiment.engine == "vllm":
        from ptm_core.engine.vllm_engine import VLLMEngine
        return VLLMEngine(experiment.general.model, inputs=resident_refs(experiment), **opts)
    if experiment.engine == "hf":
        from ptm_core.engine.hf import HFEngine
        eng = HFEngine(experiment.general.model, **opts)
        eng.load_inputs(resident_refs(experiment))
        return eng
    raise PTMError(f"experiment {experiment.name!r}: unknown engine {experiment.engine!r} "
                   "(vllm or hf)")


def default_suite_resolver(experiment: Experiment, axis: str) -> Any:
    """The suite the axis names, built with the axis's options, from the `ptm_core.evals`
    registry once every world has registered its suites."""
    from ptm_core.evals import get_suite
    from ptm_core.orchestrate.worlds import load_worlds

    load_worlds()
    spec = experiment.axes[axis]
    return get_suite(spec.suite, **spec.options)
