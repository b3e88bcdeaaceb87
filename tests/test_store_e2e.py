"""End to end on real parts (no fakes): tiny Llama checkpoints, MergeKit recipes, checkpoint
fingerprints, the transformers engine, a PromptSuite, the sweep and the worker; the app's path
(enqueue, worker, frame) on SQLite and on PostgreSQL."""

import io

import pytest

pytest.importorskip("transformers")

from ptm_core.engine.base import Sampling  # noqa: E402
from ptm_core.evals.suite import Item, PromptSuite  # noqa: E402
from ptm_core.orchestrate import sweep  # noqa: E402
from ptm_core.store.db import Store  # noqa: E402
from ptm_core.store.experiment import Experiment  # noqa: E402
from ptm_core.store.frame import results_frame  # noqa: E402
from ptm_core.orchestrate.jobs import enqueue_points  # noqa: E402
from ptm_core.orchestrate.points import MergeKitBuilder, ptm_point  # noqa: E402
from ptm_core.orchestrate.worker import default_engine_factory, run_worker  # noqa: E402

EXP = """\
name: tiny
base: models/pre
general: {model: models/general, size: 1000}
size_unit: steps
skills:
  science: {model: models/science, size: 250}
axes:
  general: {suite: echo_general}
  science: {suite: echo_science}
references:
  - {kind: cft, skills: [science], model: models/cft, data_size: 250, train_steps: 250}
engine: hf
"""
PROMPTS = ["How can I kill a Python process?", "Write a function that adds two numbers."]


def scorer(item, outputs):
    return {"score": float(len(outputs[0]) % 2)}  # any deterministic function of the outputs


def resolver(exp, axis):
    return PromptSuite(f"echo_{axis}", "1", [Item(p) for p in PROMPTS],
                       Sampling(temperature=0.0, max_tokens=6), scorer)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from ptm_core.testing.tiny import build_tiny_llama, perturbed_copy

    root = tmp_path_factory.mktemp("tiny")
    pre = build_tiny_llama(root / "models" / "pre", seed=0, hidden_size=64, num_layers=1)
    perturbed_copy(pre, root / "models" / "general", seed=1, scale=0.5)
    perturbed_copy(pre, root / "models" / "science", seed=2, scale=0.5)
    perturbed_copy(root / "models" / "general", root / "models" / "cft", seed=3, scale=0.5)
    (root / "tiny.yml").write_text(EXP)
    return root


def outputs(store, key):
    return [d["outputs"] for d in store.result_details(key)]


def test_sweep_and_worker_on_real_parts(lab):
    store = Store(lab / "store.sqlite")
    out = io.StringIO()
    rc = sweep.main([str(lab / "tiny.yml"), "--omegas", "0,1", "--methods", "task_arithmetic,linear"],
                    suite_resolver=resolver, store=store, out=out)
    assert rc == 0, out.getvalue()
    # θ_pre, θ_G, θ_D, CFT, ptm at 0 and 1, linear at 0 and 1: 8 points x 2 suites
    assert "16 evaluated, 0 failed" in out.getvalue()
    by = {(r.kind, r.omega, r.suite): r for r in store.results("tiny")}
    for suite in ("echo_general", "echo_science"):
        general = by[("general", None, suite)]
        skill = by[("skill", None, suite)]
        # task arithmetic at ω=0 is θ_G; linear interpolation at ω=1 is θ_D: same completions
        assert outputs(store, by[("ptm", '{"science":0.0}', suite)].key) == outputs(store, general.key)
        assert outputs(store, by[("linear", '{"science":1.0}', suite)].key) == outputs(store, skill.key)
        assert outputs(store, general.key) != outputs(store, skill.key)  # the swap really happened
    r = by[("ptm", '{"science":1.0}', "echo_general")]
    assert r.engine == "hf" and r.train_steps == 250 and len(r.fingerprints) == 3
    assert r.versions["torch"] and r.versions["transformers"]

    df = app_path(store, lab)
    assert len(df) == 9 and df[["general", "science"]].notna().all().all()


def app_path(store, lab):
    """The app's path: an unmeasured ω becomes jobs; the worker verifies and runs them; asking
    again computes nothing. Returns the experiment's frame."""
    exp = Experiment.load(lab / "tiny.yml")
    point = ptm_point(exp, MergeKitBuilder(), {"science": 0.25})
    outs = enqueue_points(store, exp, [point], resolver)
    assert [o.status for o in outs] == ["queued", "queued"]
    stats = run_worker(store, default_engine_factory, resolver, once=True)
    assert (stats.done, stats.failed) == (2, 0), store.jobs(statuses=["failed"])
    assert {o.status for o in enqueue_points(store, exp, [point], resolver)} == {"cached"}
    return results_frame(store, exp)


def test_the_app_path_on_real_parts_over_postgresql(lab, pg_server):
    """The same real records (versions, fingerprints, per-item outputs) through PostgreSQL. The
    sweep's 16 real evaluations are not repeated there (they are what costs: ~50 s on a loaded
    machine, this ~7 s); the queue and results contract under the sweep runs on both backends
    in test_store_db, test_store_worker and test_store_concurrency."""
    store = Store(pg_server.create_database())
    df = app_path(store, lab)
    row = df[df.kind == "ptm"].iloc[0]
    assert len(df) == 1 and row[["general", "science"]].notna().all()
    r = store.results("tiny")[0]
    assert r.engine == "hf" and r.versions["torch"] and len(r.fingerprints) == 3
    assert outputs(store, r.key) and all(o for o in outputs(store, r.key))


def test_a_per_layer_omega_is_applied_layer_by_layer_by_the_worker(tmp_path):
    """A gradient ω on real parts: MergeKit's recipe with a weight list, queued, run by the
    worker's transformers engine (2 layers: the first layer at the first anchor, the last at
    the last, embeddings and head at t = 0), stored with its list."""
    import torch
    from safetensors.torch import load_file

    from ptm_core.testing.tiny import build_tiny_llama, perturbed_copy

    pre = build_tiny_llama(tmp_path / "models" / "pre", seed=0, hidden_size=64, num_layers=2)
    perturbed_copy(pre, tmp_path / "models" / "general", seed=1, scale=0.5)
    perturbed_copy(pre, tmp_path / "models" / "science", seed=2, scale=0.5)
    perturbed_copy(tmp_path / "models" / "general", tmp_path / "models" / "cft", seed=3, scale=0.5)
    (tmp_path / "tiny.yml").write_text(EXP)
    exp = Experiment.load(tmp_path / "tiny.yml")
    store = Store(tmp_path / "store.sqlite")
    point = ptm_point(exp, MergeKitBuilder(), {"science": (0.0, 1.0)})
    enqueue_points(store, exp, [point], resolver)
    engines = []

    def factory(e):
        engines.append(default_engine_factory(e))
        return engines[-1]

    stats = run_worker(store, factory, resolver, once=True)
    assert (stats.done, stats.failed) == (2, 0), store.jobs(statuses=["failed"])
    assert {r.omega for r in store.results("tiny")} == {'{"science":[0.0,1.0]}'}
    got = engines[0].model.state_dict()
    ckpt = {m: load_file(str(tmp_path / "models" / m / "model.safetensors"))
            for m in ("pre", "general", "science")}

    def at(name, w):  # θ_G + w τ_science
        return ckpt["general"][name] + w * (ckpt["science"][name] - ckpt["pre"][name])

    for name, w in (("model.layers.0.mlp.up_proj.weight", 0.0), ("model.layers.1.mlp.up_proj.weight", 1.0),
                    ("model.embed_tokens.weight", 0.0)):
        torch.testing.assert_close(got[name], at(name, w), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got["model.layers.1.mlp.up_proj.weight"],
                              at("model.layers.1.mlp.up_proj.weight", 0.0))
