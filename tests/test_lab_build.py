"""The micro lab build end to end: every run, run.json bookkeeping, resumption, validity, publish.

One micro build (the same pipeline as the shipped lab at toy size) is shared by the module."""

from __future__ import annotations

import itertools
import json
import math
import shutil

import pytest

from ptm_core.errors import PTMError
from ptm_core.lab.build import build, main
from ptm_core.lab.profiles import get_profile
from ptm_core.lab.runs import plan
from ptm_core.lab.world import SKILLS, build_world

MICRO = get_profile("micro")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A micro build made in two calls, as if the first had been killed after three runs."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = tmp_path_factory.mktemp("lab")
    first = build(MICRO, out, check=False, stop_after=3, log=lambda _: None)
    # What a kill during the fourth run leaves behind: a half-written staging directory named
    # after its (now dead) writer.
    import subprocess
    dead = subprocess.Popen(["true"])
    dead.wait()
    partial = out / "models" / f".general.partial-{dead.pid}-x"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    stamps = {n: json.loads((out / "models" / n / "run.json").read_text())["finished_at"]
              for n in ("pre", "general", "skill-science")}
    second = build(MICRO, out, check=True, log=lambda _: None)
    return out, first, second, stamps


def records(out):
    return {p.name: json.loads((p / "run.json").read_text())
            for p in (out / "models").iterdir() if (p / "run.json").exists()}


def test_killed_build_restarts_where_it_stopped(lab):
    out, first, second, stamps = lab
    n_runs = len(plan(MICRO, build_world(MICRO.world)))
    assert first["status"] == "partial" and first["trained_now"] == 3
    assert second["status"] == "complete"
    assert second["skipped"] == 3 and second["trained_now"] == n_runs - 3
    for name, stamp in stamps.items():  # finished runs were not retrained
        assert json.loads((out / "models" / name / "run.json").read_text())["finished_at"] == stamp
    assert not list((out / "models").glob(".*"))  # staging leftovers removed


def test_a_missing_run_is_the_only_one_retrained(lab):
    out, *_ = lab
    shutil.rmtree(out / "models" / "cft-coding-2")
    again = build(MICRO, out, check=False, log=lambda _: None)
    assert again["trained_now"] == 1 and (out / "models" / "cft-coding-2" / "run.json").exists()
    assert build(MICRO, out, check=False, log=lambda _: None)["trained_now"] == 0


def test_every_run_of_the_paper_is_built(lab):
    out, *_ = lab
    names = set(records(out))
    expected = {"pre", "general", "cft-all", "rt-all"} | {f"skill-{s}" for s in SKILLS}
    expected |= {f"{m}-{s}-{i}" for m in ("cft", "rt") for s in SKILLS for i in range(1, 6)}
    assert names == expected


def test_run_json_bookkeeping(lab):
    out, *_ = lab
    recs = records(out)
    world = build_world(MICRO.world)
    sizes = world.sizes("train")
    h = MICRO.finetune
    for name, r in recs.items():
        assert r["seed"] == MICRO.seed and r["wall_s"] > 0 and r["profile"] == "micro"
        if name == "pre":
            assert r["init"] is None and r["steps"] == MICRO.pretrain_steps and r["corpus_docs"] > 0
            continue
        n = sum(r["data"].values())
        assert r["examples_seen"] == n * h.epochs
        assert r["steps"] == h.epochs * math.ceil(n / h.batch_size)
    assert recs["general"]["init"] == "pre" and recs["general"]["data"] == {"general": sizes["general"]}
    for s in SKILLS:
        assert recs[f"skill-{s}"]["init"] == "pre" and recs[f"skill-{s}"]["data"] == {s: sizes[s]}
        cft = [recs[f"cft-{s}-{i}"] for i in range(1, 6)]
        rt = [recs[f"rt-{s}-{i}"] for i in range(1, 6)]
        assert all(r["init"] == "general" for r in cft) and all(r["init"] == "pre" for r in rt)
        amounts = [r["data"][s] for r in cft]
        assert amounts == sorted(amounts) and amounts[-1] == sizes[s]  # nested, up to all of D
        assert [r["data"][s] for r in rt] == amounts
        assert all(r["data"]["general"] == sizes["general"] for r in rt)
    assert recs["rt-all"]["data"] == {"general": sizes["general"], **{s: sizes[s] for s in SKILLS}}


def test_costs_follow_the_paper(lab):
    out, *_ = lab
    summary = json.loads((out / "build.json").read_text())
    recs = records(out)
    costs = summary["costs"]
    for s in SKILLS:
        assert costs["ptm"][s] == recs[f"skill-{s}"]["steps"]
        assert costs["cft"][s] == sum(recs[f"cft-{s}-{i}"]["steps"] for i in range(1, 6))
        assert costs["rt"][s] == sum(recs[f"rt-{s}-{i}"]["steps"] for i in range(1, 6))
        assert costs["rt"][s] >= 5 * recs["general"]["steps"]  # n·|G| + Σ|D_i|


def test_checkpoints_load_in_transformers_with_the_chat_template(lab):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, *_ = lab
    path = out / "models" / "general"
    assert (path / "model.safetensors").stat().st_size <= 5 * 1024 * 1024
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path))
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > ids["input_ids"].shape[1]


def test_validity_check_ran_and_found_no_leak(lab):
    out, _, second, _ = lab
    validity = json.loads((out / "validity.json").read_text())
    assert validity == second["validity"]
    leak = validity["checks"][0]
    assert leak["leaked"] == 0 and leak["passed"]
    assert set(validity["scores"]) == {"pre", "general", "skill-science", "skill-coding", "skill-safety"}
    for scores in validity["scores"].values():
        assert set(scores) == {"lab_general", "lab_science", "lab_coding", "lab_safety", "lab_xstest_safe"}
        assert all(0 <= v <= 100 for suite in scores.values() for v in suite.values())
    assert validity["gaps_enforced"] is False  # micro is too small to learn; full enforces


def test_publish_copies_the_merge_inputs(lab, tmp_path):
    from ptm_core.lab.publish import publish

    out, *_ = lab
    manifest = publish(out, tmp_path / "data" / "lab")
    shipped = sorted(p.name for p in (tmp_path / "data" / "lab" / "models").iterdir())
    assert shipped == sorted(["pre", "general", *(f"skill-{s}" for s in SKILLS), *(f"cft-{s}" for s in SKILLS)])
    sizes = manifest["sizes"]
    assert manifest["heuristic_omega"]["coding"] == pytest.approx(sizes["coding"] / sizes["general"])
    assert json.loads((tmp_path / "data" / "lab" / "models" / "cft-safety" / "run.json").read_text())["name"] == "cft-safety-5"
    assert manifest["costs"]["rt"]["science"] > manifest["costs"]["ptm"]["science"]


def test_cli_and_profile_guard(lab, tmp_path):
    out, *_ = lab
    assert main(["--profile", "micro", "--out", str(out), "--no-check"]) == 0
    assert main(["--profile", "plain", "--out", str(out)]) == 2  # refuses to mix profiles
    with pytest.raises(PTMError):
        build(get_profile("plain"), out, log=lambda _: None)
    from ptm_core.lab.publish import publish

    with pytest.raises(PTMError):
        publish(tmp_path / "nothing", tmp_path / "dest")


def test_probe_retrains_the_finetunes_and_measures_task_arithmetic(lab, tmp_path):
    """`lab probe`: θ_G and θ_D retrained from the build's θ_pre with other hyperparameters;
    ω = 0 is θ_G itself, and the update sizes are measured."""
    from ptm_core.lab.probe import probe, probe_profile
    from ptm_core.lab.suites import build_suites
    from ptm_core.lab.validity import evaluate

    out, *_ = lab
    profile = probe_profile(MICRO, lr=MICRO.finetune.lr / 2, epochs=1)
    result = probe(out, tmp_path / "probe", profile, omegas=[0.0, 1.0], skills=["coding"], cap=4,
                   log=lambda _: None)
    run = json.loads((tmp_path / "probe" / "models" / "general" / "run.json").read_text())
    assert run["hyper"]["lr"] == MICRO.finetune.lr / 2 and run["hyper"]["epochs"] == 1
    assert not (tmp_path / "probe" / "models" / "cft-coding-1").exists()  # only θ_G and θ_D
    assert 0 < result["tau_over_pre"]["general"] and 0 < result["tau_over_pre"]["coding"]
    tv = result["task_vectors"]  # per layer, with the cosines (ptm_core.merge.task_vectors)
    assert tv["names"] == ["G", "coding"]
    assert tv["tau_over_pre"]["G"] == pytest.approx(result["tau_over_pre"]["general"])
    assert tv["cosine"][0][1] == tv["cosine"][1][0] and tv["cosine"][0][0] == pytest.approx(1.0)
    assert {"embed", "0", "head"} <= set(tv["tau_over_pre_per_group"]["coding"])
    by_omega = {p["omega"]: p for p in result["points"]}
    assert set(by_omega) == {None, 0.0, 1.0}
    general = evaluate(tmp_path / "probe" / "models" / "general",
                       {"lab_general": build_suites(build_world(MICRO.world), "test", cap=4)["lab_general"]},
                       "cpu")["lab_general"]["exact_match"]
    assert by_omega[0.0]["lab_general"] == round(general, 1)
    assert json.loads((tmp_path / "probe" / "probe.json").read_text()) == result


def test_resuming_with_other_hyperparameters_is_refused(lab, tmp_path):
    from ptm_core.lab.probe import probe_profile

    out, *_ = lab
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    edited = probe_profile(MICRO, lr=MICRO.finetune.lr * 3, epochs=MICRO.finetune.epochs)
    with pytest.raises(PTMError, match="fresh --out"):
        build(edited, copy, check=False, log=lambda _: None)
    assert build(MICRO, copy, check=False, log=lambda _: None)["trained_now"] == 0


def test_probe_can_pretrain_a_new_base(lab, tmp_path):
    from ptm_core.lab.probe import probe, probe_profile

    out, *_ = lab
    profile = probe_profile(MICRO, lr=MICRO.finetune.lr, epochs=1, pretrain_steps=MICRO.pretrain_steps // 2)
    result = probe(out, tmp_path / "p", profile, omegas=[1.0], skills=["safety"], cap=2,
                   log=lambda _: None)
    pre = json.loads((tmp_path / "p" / "models" / "pre" / "run.json").read_text())
    assert pre["steps"] == MICRO.pretrain_steps // 2 == result["pretrain_steps"]
    assert (tmp_path / "p" / "models" / "skill-safety" / "run.json").exists()


def test_probe_of_the_chat_mix_pretrains_its_own_base_and_freezes(lab, tmp_path):
    """A profile whose corpus mix differs from the source's θ_pre gets its own θ_pre (same length,
    other corpus); `frozen` leaves embeddings, head and norms of θ_G and θ_D at θ_pre; the leak
    check regenerates the corpus of the mix θ_pre recorded."""
    import dataclasses

    from safetensors.torch import load_file

    from ptm_core.lab.probe import probe
    from ptm_core.lab.validity import corpus_of
    from ptm_core.lab.world.corpus import documents

    out, *_ = lab
    frozen = ("embed_tokens", "lm_head", "norm")
    profile = dataclasses.replace(MICRO, corpus="chat",
                                  finetune=dataclasses.replace(MICRO.finetune, frozen=frozen, epochs=1))
    probe(out, tmp_path / "p", profile, omegas=[1.0], skills=["safety"], cap=2, log=lambda _: None)
    models = tmp_path / "p" / "models"
    pre_run = json.loads((models / "pre" / "run.json").read_text())
    assert pre_run["corpus_mix"] == "chat" and pre_run["steps"] == MICRO.pretrain_steps
    assert load_file(str(models / "pre" / "model.safetensors"))["model.embed_tokens.weight"].ne(
        load_file(str(out / "models" / "pre" / "model.safetensors"))["model.embed_tokens.weight"]).any()
    pre = load_file(str(models / "pre" / "model.safetensors"))
    for run in ("general", "skill-safety"):
        tuned = load_file(str(models / run / "model.safetensors"))
        assert all(tuned[k].equal(pre[k]) for k in pre if any(f in k for f in frozen)), run
        assert any(not tuned[k].equal(pre[k]) for k in pre if "mlp" in k), run
    corpus = corpus_of(tmp_path / "p", MICRO.seed)
    assert len(corpus) == pre_run["corpus_docs"]
    assert corpus[:20] == list(itertools.islice(documents(MICRO.seed, "chat"), 20))
