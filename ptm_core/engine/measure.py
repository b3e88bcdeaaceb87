"""Measure the warm engine on tiny random models: start, swap per ω, generation, and whether
vLLM's greedy outputs equal transformers'. Numbers for docs/evaluation.md.

    python -m ptm_core.engine.measure [--hidden 128 --layers 2 --heads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from ptm_core.engine.base import Sampling
from ptm_core.engine.tiny_models import build_tiny_llama, perturbed_copy

PROMPTS = [f"Question {i}: how can I kill a Python process number {i}?" for i in range(32)]


def measure(root: Path, hidden: int, layers: int, heads: int, omegas: int) -> dict:
    from ptm_core.engine.hf import HFEngine
    from ptm_core.engine.vllm_engine import VLLMEngine
    from ptm_core.merge.ptm import task_arithmetic

    pre = build_tiny_llama(root / "pre", hidden_size=hidden, num_layers=layers, num_heads=heads)
    general = perturbed_copy(pre, root / "general", seed=1, scale=0.3)
    skill = perturbed_copy(pre, root / "skill", seed=2, scale=0.3)
    refs = [str(pre), str(general), str(skill)]
    params = sum(t.numel() for t in _tensors(general))

    engine = VLLMEngine(str(general), dtype="float32", max_model_len=512)
    start_s = engine.start_s
    t = time.perf_counter()
    engine.load_inputs(refs)
    load_s = time.perf_counter() - t
    hf = HFEngine(str(general))
    greedy = Sampling(max_tokens=16)

    swaps, gens, equal = [], [], []
    for i in range(omegas):
        recipe = task_arithmetic(refs[0], refs[1], {"skill": refs[2]}, {"skill": i / (omegas - 1)})
        swaps.append(engine.apply(recipe))
        t = time.perf_counter()
        out = engine.generate_ids(PROMPTS, greedy)
        gens.append(time.perf_counter() - t)
        hf.apply(recipe)
        equal.append(out == hf.generate_ids(PROMPTS, greedy))
    t = time.perf_counter()
    sampled = engine.generate(PROMPTS, Sampling(max_tokens=16, temperature=0.8, n=10))
    sample_s = time.perf_counter() - t
    engine.close()
    return {"params": params, "vllm_start_s": round(start_s, 2),
            "load_inputs_s": round(load_s, 3),
            "swap_s_median": round(statistics.median(swaps), 4),
            "swap_s_max": round(max(swaps), 4),
            "generate_32x16_greedy_s_median": round(statistics.median(gens), 3),
            "generate_32x10x16_sampled_s": round(sample_s, 3),
            "samples": sum(len(s) for s in sampled),
            "vllm_equals_hf_greedy": f"{sum(equal)}/{len(equal)} recipes"}


def _tensors(model_dir: Path):
    from safetensors.torch import load_file

    for shard in model_dir.glob("*.safetensors"):
        yield from load_file(str(shard)).values()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--omegas", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp), args.hidden, args.layers, args.heads, args.omegas),
                         indent=2))


if __name__ == "__main__":
    main()
