"""The benchmarks run and keep their output contract (a JSON object on the last line).
Timing is not asserted: benchmarks report it, tests check behaviour."""

from __future__ import annotations

import json
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
    for key in ("ptm_core_s", "ptm_core_peak_rss_mb", "floor_s"):
        assert out[key] > 0


def test_bench_swap_warm_and_cold_agree(tmp_path):
    pytest.importorskip("vllm")
    out = run_bench("swap", "--omegas", "0.5", "--prompts", "4", "--max-tokens", "8",
                    "--workdir", str(tmp_path))
    assert out["scores_match"] is True
    for key in ("warm_s_per_omega", "cold_s_per_omega", "swap_s"):
        assert out[key] > 0


def test_swap_bench_uses_the_shipped_lab_models_when_present(tmp_path):
    from ptm_core.bench import swap_bench

    m = swap_bench.models(tmp_path, "safety")
    if (swap_bench.LAB_MODELS / "skill-safety" / "config.json").exists():
        assert m["skill"] == str(swap_bench.LAB_MODELS / "skill-safety")
        assert m["pre"] == str(swap_bench.LAB_MODELS / "pre")
    else:
        assert m["skill"] == str(tmp_path / "synthetic" / "skill")
