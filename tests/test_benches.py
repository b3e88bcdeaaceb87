"""The benchmarks run and keep their output contract (a JSON object on the last line).
Timing is not asserted: benchmarks report it, tests check behaviour."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest


def run_bench(*args: str, timeout: int = 600) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ptm_core", "bench", *args], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_merge_contract(tmp_path):
    out = run_bench("merge", "--workdir", str(tmp_path), "--layers", "1", "--hidden", "128",
                    "--intermediate", "256", "--vocab", "1000", "--repeat", "1", "--no-mergekit")
    assert out["models"] == 4 and out["inputs_mb"] > 0
    for key in ("ptm_core_s", "ptm_core_peak_rss_mb", "floor_s", "startup_s", "compute_s", "vs_floor"):
        assert out[key] > 0


def test_merge_bench_large_scale_is_four_inputs_of_about_1_5_gb():
    from ptm_core.bench.merge_bench import MODELS, SCALES, llama_tensors

    large = SCALES["large"]
    shapes = llama_tensors(large["layers"], large["hidden"], large["intermediate"], large["vocab"])
    per_model = 2 * sum(math.prod(shape) for _, shape in shapes)  # bf16
    assert len(MODELS) == 4 and 1.4e9 < per_model < 1.6e9


def test_bench_swap_warm_and_cold_agree(tmp_path):
    pytest.importorskip("vllm")
    out = run_bench("swap", "--omegas", "0.5", "--prompts", "4", "--max-tokens", "8",
                    "--workdir", str(tmp_path))
    assert out["scores_match"] is True and out["compared_with"] == "fresh engine on the export"
    for key in ("warm_s_per_omega", "cold_s_per_omega", "swap_s", "fresh_load_s", "first_swap_s"):
        assert out[key] > 0


def test_bench_swap_beside_busy_processes_on_a_random_llama(tmp_path):
    """--random-llama writes the models itself; --beside measures again beside busy
    processes, with the same outputs as quiet; the copy path loads what the direct path
    merges into the parameters, with the same outputs."""
    pytest.importorskip("vllm")
    out = run_bench("swap", "--random-llama", "mini", "--omegas", "0,1", "--prompts", "2",
                    "--max-tokens", "4", "--paths", "direct,copy", "--no-cold", "--beside", "1",
                    "--workdir", str(tmp_path))
    assert out["paths"]["direct"]["in_place_tensors"] > 0 and out["paths"]["copy"]["in_place_tensors"] == 0
    assert out["models"] == "random-llama-mini" and out["scores_match"] is True
    assert out["compared_with"] == "the direct path, quiet" and out["cold_s_per_omega"] is None
    ratios = out["beside"]["direct"]
    assert out["beside"]["processes"] == 1
    for key in ("swap", "generate", "turnaround"):
        assert ratios[f"{key}_quiet_s"] > 0 and ratios[f"{key}_beside_s"] > 0 and ratios[f"{key}_ratio"] > 0
    assert (tmp_path / "random-mini-float32" / "skill" / "model.safetensors.index.json").exists()


def test_swap_bench_uses_the_shipped_lab_models_when_present(tmp_path):
    from ptm_core.bench import swap_bench

    m = swap_bench.models(tmp_path, "safety")
    if (swap_bench.LAB_MODELS / "skill-safety" / "config.json").exists():
        assert m["skill"] == str(swap_bench.LAB_MODELS / "skill-safety")
        assert m["pre"] == str(swap_bench.LAB_MODELS / "pre")
    else:
        assert m["skill"] == str(tmp_path / "synthetic" / "skill")


@pytest.mark.gpu
def test_bench_swap_on_a_gpu_in_bfloat16_with_inputs_on_the_gpu(tmp_path):
    """The GPU run of the swap bench (7B-shaped there; mini here): both swap paths give a
    fresh engine's outputs on the export."""
    pytest.importorskip("vllm")
    out = run_bench("swap", "--random-llama", "mini", "--dtype", "bfloat16", "--inputs-on", "worker",
                    "--omegas", "0,1", "--prompts", "2", "--max-tokens", "4",
                    "--workdir", str(tmp_path))
    assert out["scores_match"] is True and out["inputs_on"] == "worker"
    assert out["paths"]["direct"]["path"] == "direct"
