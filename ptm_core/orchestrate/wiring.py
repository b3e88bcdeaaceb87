"""The default wiring of the worker and sweeps: which engine runs an experiment and which
suite measures an axis. Both import their packages lazily (vLLM and torch load only when a
job runs). Suites come from the `ptm_core.evals` registry, which the worlds listed in
`ptm_core.orchestrate.worlds` fill with their own suites.
"""

from __future__ import annotations

from typing import Any

from ptm_core.errors import PTMError
from ptm_core.store.experiment import Experiment


def default_engine_factory(experiment: Experiment) -> Any:
    """The engine named by `experiment.engine`, started from θ_G with every model of the
    experiment resident: "vllm" -> VLLMEngine, "hf" -> HFEngine (`engine_options` are passed
    to the constructor)."""
    opts = dict(experiment.engine_options)
    if experiment.engine == "vllm":
        from ptm_core.engine.vllm_engine import VLLMEngine
        return VLLMEngine(experiment.general.model, inputs=experiment.model_refs(), **opts)
    if experiment.engine == "hf":
        from ptm_core.engine.hf import HFEngine
        eng = HFEngine(experiment.general.model, **opts)
        eng.load_inputs(experiment.model_refs())
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
