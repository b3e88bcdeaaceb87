"""`python -m ptm_core bench merge`: streaming merge vs mergekit-yaml vs the copy floor.

Builds synthetic Llama-shaped checkpoints (bf16, sharded; θ_pre, θ_G and two skills), merges
them with PTM task arithmetic, and measures in one run, each as a separate process: this
project's merge, `mergekit-yaml` on the same recipe (when installed), the floor (reading
every input once and copying one model), the startup every torch process pays (Python and
`import torch`) and the compute limit (the exporter's arithmetic on the same threads without
its writes, timed from its first tensor). `--scale large` is four ~1.5 GB inputs. Wall time and peak RSS are per process (wait4), with
the inputs already in the page cache for all of them. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch

from ptm_core.merge.export import plan_shards
from ptm_core.merge.ptm import task_arithmetic
from ptm_core.merge.safetensors_io import OutTensor, write_safetensors

MODELS = ("pre", "general", "skill_a", "skill_b")
# Llama-shaped presets: small ~318 MB per model in bf16 (1.27 GB in); large ~1.5 GB (6 GB in)
SCALES = {
    "small": dict(layers=8, hidden=1024, intermediate=2752, vocab=32000, shard_size_mb=100),
    "large": dict(layers=12, hidden=2048, intermediate=5632, vocab=32000, shard_size_mb=500),
}


def llama_tensors(layers: int, hidden: int, inter: int, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    names = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        names += [(p + "input_layernorm.weight", (hidden,)),
                  (p + "self_attn.q_proj.weight", (hidden, hidden)),
                  (p + "self_attn.k_proj.weight", (hidden, hidden)),
                  (p + "self_attn.v_proj.weight", (hidden, hidden)),
                  (p + "self_attn.o_proj.weight", (hidden, hidden)),
                  (p + "post_attention_layernorm.weight", (hidden,)),
                  (p + "mlp.gate_proj.weight", (inter, hidden)),
                  (p + "mlp.up_proj.weight", (inter, hidden)),
                  (p + "mlp.down_proj.weight", (hidden, inter))]
    return names + [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]


def build_models(root: Path, layers: int, hidden: int, inter: int, vocab: int,
                 shard_bytes: int) -> dict[str, Path]:
    """Synthetic checkpoints: θ_pre random, the others θ_pre plus small per-model deltas.
    Reused when already built with the same shape."""
    spec = {"layers": layers, "hidden": hidden, "inter": inter, "vocab": vocab, "shard": shard_bytes}
    stamp = root / "spec.json"
    paths = {m: root / m for m in MODELS}
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return paths
    shutil.rmtree(root, ignore_errors=True)
    tensors = llama_tensors(layers, hidden, inter, vocab)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": hidden // 64,
              "num_key_value_heads": hidden // 64, "vocab_size": vocab, "max_position_embeddings": 2048,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "dtype": "bfloat16"}
    for i, model in enumerate(MODELS):
        d = paths[model]
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps(config, indent=2))
        shards = plan_shards([OutTensor(n, torch.bfloat16, s) for n, s in tensors], shard_bytes)
        weight_map = {}

        def produce(e: OutTensor, model_index=i):
            g = torch.Generator().manual_seed(hash(e.name) & 0xFFFF)  # same θ_pre for all models
            t = torch.randn(e.shape, generator=g) * 0.02
            if model_index:
                t += torch.randn(e.shape, generator=torch.Generator().manual_seed(model_index)) * 0.002
            yield t

        for k, shard in enumerate(shards):
            fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(d / fname, shard, produce)
            weight_map.update({e.name: fname for e in shard})
        (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    stamp.write_text(json.dumps(spec))
    return paths


# Children are started from this tiny launcher, not from the benchmark itself: a forked child
# counts its parent's resident pages until it execs, which would inflate its peak RSS.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"wall": time.perf_counter() - start, "rss_kb": usage.ru_maxrss,
                  "code": os.waitstatus_to_exitcode(status), "err": err[-1500:].decode(errors="replace")}))
"""


def measure(cmd: list[str], env: Optional[dict] = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, the end of its stderr) of one child process."""
    out = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *cmd], env=env, capture_output=True,
                         text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    if r["code"] != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r['code']}): {r['err']}")
    return r["wall"], r["rss_kb"] / 1024, r["err"]


FLOOR = """
import os, shutil, sys
src, dst = sys.argv[1:-1], sys.argv[-1]
for d in src:
    for f in sorted(os.listdir(d)):
        if f.endswith('.safetensors'):
            with open(os.path.join(d, f), 'rb') as fh:
                while fh.read(16 << 20):
                    pass
shutil.copytree(src[1], dst)
"""

# Starting Python and importing torch, which every merge process pays before its first tensor
# (ptm_core's figure includes it; the copy floor, which needs no torch, does not).
STARTUP = "import torch"

# The exporter's arithmetic without its writes: the same chunks merged on the same threads from
# the same (page-cached) inputs, and cast to the output dtype as the writer casts them, but
# nothing written. It times itself from its first tensor, so its figure is the compute limit
# on these cores, without the startup.
COMPUTE = """
import json, sys, time
from contextlib import ExitStack
import torch
from ptm_core.merge.checkpoint import Checkpoint
from ptm_core.merge.export import DEFAULT_WORKERS, merged_chunks
from ptm_core.merge.parallel import torch_threads
from ptm_core.merge.plan import plan_groups
from ptm_core.merge.recipe import Recipe

recipe = Recipe.from_yaml(open(sys.argv[1]).read())
with ExitStack() as stack:
    ckpts = {ref: stack.enter_context(Checkpoint.open(ref)) for ref in recipe.model_refs()}
    template = ckpts[recipe.template_model()]
    start = time.perf_counter()
    groups = plan_groups(recipe, ckpts, template.num_layers)
    shapes = [ckpts[g.refs[0]].shape(g.names[0]) for g in groups]
    merged = merged_chunks(recipe, ckpts, groups, shapes, 0, DEFAULT_WORKERS)  # as `merge` runs
    with torch_threads(1):
        for chunk in merged:
            chunk.to(template.main_dtype)
    print(json.dumps({"compute_s": time.perf_counter() - start}), file=sys.stderr)
"""


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ptm_core bench merge", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "ptm-bench-merge")
    p.add_argument("--scale", choices=sorted(SCALES), default="small",
                   help="model shape: small (~318 MB per model in bf16), large (~1.5 GB)")
    p.add_argument("--layers", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--intermediate", type=int)
    p.add_argument("--vocab", type=int)
    p.add_argument("--shard-size-mb", type=int)
    p.add_argument("--repeat", type=int, default=3, help="runs per contender; medians are reported")
    p.add_argument("--no-mergekit", action="store_true")
    a = p.parse_args(argv)
    for key, value in SCALES[a.scale].items():  # the preset fills what was not given
        if getattr(a, key) is None:
            setattr(a, key, value)

    root = a.workdir.resolve()
    print(f"building synthetic checkpoints in {root} ...", file=sys.stderr)
    paths = build_models(root / "models", a.layers, a.hidden, a.intermediate, a.vocab, a.shard_size_mb << 20)
    inputs_bytes = sum(f.stat().st_size for d in paths.values() for f in d.glob("*.safetensors"))
    recipe = task_arithmetic(str(paths["pre"]), str(paths["general"]),
                             {"a": str(paths["skill_a"]), "b": str(paths["skill_b"])}, {"a": 0.3, "b": 0.6})
    cfg = root / "recipe.yml"
    cfg.write_text(recipe.to_yaml())
    for d in paths.values():  # page cache warm for everyone
        for f in d.glob("*.safetensors"):
            f.read_bytes()

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    mergekit = Path(sys.executable).with_name("mergekit-yaml")
    contenders = {
        "floor": lambda out: [sys.executable, "-c", FLOOR, *map(str, paths.values()), str(out)],
        "startup": lambda out: [sys.executable, "-c", STARTUP],
        "compute": lambda out: [sys.executable, "-c", COMPUTE, str(cfg)],
        "ptm_core": lambda out: [sys.executable, "-m", "ptm_core", "merge", str(cfg), str(out), "--quiet"],
    }
    if mergekit.exists() and not a.no_mergekit:
        contenders["mergekit"] = lambda out: [str(mergekit), str(cfg), str(out)]
    results: dict[str, dict] = {}
    for name, cmd in contenders.items():
        walls, rss, timed = [], [], []
        for _ in range(a.repeat):
            out = root / f"out_{name}"
            shutil.rmtree(out, ignore_errors=True)
            # no contender pays for writing back another's dirty pages (ptm_core fsyncs its
            # output: after the floor's unsynced copy it waited for that copy too)
            os.sync()
            w, r, err = measure(cmd(out), env)
            walls.append(w)
            rss.append(r)
            if name == "compute":  # its own figure, from its first tensor
                timed.append(json.loads(err.strip().splitlines()[-1])["compute_s"])
        results[name] = {"s": statistics.median(walls), "peak_rss_mb": max(rss),
                         "rss_pct_inputs": 100 * max(rss) * 2**20 / inputs_bytes}
        if timed:
            results[name]["timed_s"] = statistics.median(timed)
        print(f"{name:>9}: {results[name]['s']:6.2f} s  peak RSS {results[name]['peak_rss_mb']:7.0f} MiB "
              f"({results[name]['rss_pct_inputs']:5.1f}% of inputs)  runs: "
              + ", ".join(f"{w:.2f}" for w in walls)
              + (f"  (arithmetic alone: {', '.join(f'{t:.2f}' for t in timed)})" if timed else ""),
              file=sys.stderr)

    summary = {"inputs_mb": round(inputs_bytes / 2**20, 1), "models": len(paths),
               "ptm_core_s": round(results["ptm_core"]["s"], 3),
               "ptm_core_peak_rss_mb": round(results["ptm_core"]["peak_rss_mb"], 1),
               "ptm_core_rss_pct_inputs": round(results["ptm_core"]["rss_pct_inputs"], 1),
               "floor_s": round(results["floor"]["s"], 3),
               "floor_peak_rss_mb": round(results["floor"]["peak_rss_mb"], 1),
               "startup_s": round(results["startup"]["s"], 3),
               # the exporter's arithmetic and casts without writes, timed from its first tensor
               "compute_s": round(results["compute"]["timed_s"], 3),
               "vs_floor": round(results["ptm_core"]["s"] / results["floor"]["s"], 2),
               "vs_floor_after_startup": round((results["ptm_core"]["s"] - results["startup"]["s"])
                                               / results["floor"]["s"], 2),
               # against the larger of the two limits a merge has on these cores: the copy
               # (I/O) and the arithmetic, after the startup every torch process pays
               "vs_limit_after_startup": round((results["ptm_core"]["s"] - results["startup"]["s"])
                                               / max(results["floor"]["s"], results["compute"]["timed_s"]), 2),
               "scale": a.scale, "load_after": [round(x, 2) for x in os.getloadavg()]}
    if "mergekit" in results:
        summary.update({"mergekit_s": round(results["mergekit"]["s"], 3),
                        "mergekit_peak_rss_mb": round(results["mergekit"]["peak_rss_mb"], 1),
                        "mergekit_rss_pct_inputs": round(results["mergekit"]["rss_pct_inputs"], 1),
                        "speedup_vs_mergekit": round(results["mergekit"]["s"] / results["ptm_core"]["s"], 2),
                        "max_abs_diff_vs_mergekit": _max_diff(root / "out_ptm_core", root / "out_mergekit")})
    print(json.dumps(summary))
    return 0


def _max_diff(a: Path, b: Path) -> float:
    """Largest elementwise difference between two merged checkpoints (MergeKit does the math in
    the inputs' bf16 when the recipe sets no dtype; we always compute in float32)."""
    from ptm_core.merge.checkpoint import Checkpoint

    with Checkpoint.open(str(a)) as x, Checkpoint.open(str(b)) as y:
        return max((x.get(n) - y.get(n)).abs().max().item() for n in x.tensor_names())
