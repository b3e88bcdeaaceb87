"""The lab's engine options turn vLLM's chunked prefill off and let a whole suite into one batch
(ptm_core.lab.experiment.FAST_CPU_BATCHING): faster, and, since they are not part of the cache
key, they must change no output. vLLM warns that disabling chunked prefill "may cause incorrect
outputs" for some models: checked here on the lab's own model, greedy and seeded samples."""

import pytest

from ptm_core.engine.base import Sampling
from ptm_core.lab.experiment import FAST_CPU_BATCHING

pytest.importorskip("vllm")


@pytest.mark.slow
def test_the_labs_batching_options_change_no_output():
    from ptm_core.engine.isolated import generate_in_fresh_engine
    from ptm_core.lab.suites import lab_suite
    from ptm_core.lab.experiment import REPO

    model = REPO / "data" / "lab" / "models" / "skill-coding"
    prompts = [it.prompt for it in lab_suite("lab_coding").items[:12]]
    for sampling in (Sampling(temperature=0.0, max_tokens=24),
                     Sampling(temperature=0.8, max_tokens=24, n=10, seed=0)):
        default = generate_in_fresh_engine(model, prompts, sampling, dtype="float32")
        fast = generate_in_fresh_engine(model, prompts, sampling, dtype="float32", **FAST_CPU_BATCHING)
        assert fast == default
