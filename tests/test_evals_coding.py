"""The execution-scored coding suite on a scripted engine: extraction, sandbox, pass@k."""

import json

import pytest

from ptm_core.engine.base import Sampling
from ptm_core.testing.engines import ScriptedEngine
from ptm_core.errors import PTMError
from ptm_core.evals.coding import CodeProblem, CodingSuite, coding_suite, extract_code
from ptm_core.passk import pass_at_k

GOOD = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
BAD = "```python\ndef add(a, b):\n    return a - b\n```"
PROBLEMS = [CodeProblem("Write add(a, b).", "assert add(2, 3) == 5\nassert add(0, 0) == 0", group="math"),
            CodeProblem("Write mul(a, b).", "assert mul(2, 3) == 6", group="math")]


def test_extract_code():
    assert extract_code(GOOD) == "def add(a, b):\n    return a + b"
    assert extract_code("x = 1") == "x = 1"
    assert extract_code("```py\na = 1\n```\ntext\n```\nb = 2\n```") == "a = 1\n\nb = 2"
    assert extract_code("```python\nunterminated = 1\n") == "unterminated = 1"


def responder(prompt, sampling, i):
    if "add" in prompt:  # greedy right; 3 of 10 samples right
        return GOOD if sampling.temperature == 0 or i < 3 else BAD
    return "def mul(a, b):\n    return a * b" if i == 99 else "I don't know."  # never right


def test_pass_at_1_greedy_and_pass_at_10_sampled():
    engine = ScriptedEngine(responder)
    result = CodingSuite("coding", "1", PROBLEMS, workers=2).run(engine)
    assert result.metrics["pass@1"] == 50.0
    assert result.metrics["pass@10"] == pytest.approx(50.0 * pass_at_k(10, 3, 10))
    assert result.metrics["pass@1_sampled"] == pytest.approx(50.0 * 0.3)
    assert result.metrics["pass@1/math"] == 50.0 and result.counts["pass@10"] == 2
    greedy, sampled = engine.calls
    assert greedy[1].temperature == 0 and greedy[1].n == 1
    assert sampled[1] == Sampling(temperature=0.8, n=10, max_tokens=256)
    assert result.details[0]["samples_passed"] == [True] * 3 + [False] * 7


def test_greedy_only_mode_skips_sampling():
    engine = ScriptedEngine(responder)
    result = CodingSuite("coding", "1", PROBLEMS, sampled=False).run(engine)
    assert set(result.metrics) == {"pass@1", "pass@1/math"} and len(engine.calls) == 1


def test_k_must_not_exceed_n():
    with pytest.raises(PTMError):
        CodingSuite("c", "1", PROBLEMS, sampling=Sampling(temperature=0.8, n=5), k=10)


def test_problem_files_native_and_humaneval_layouts(tmp_path):
    native = tmp_path / "code.jsonl"
    native.write_text(json.dumps({"prompt": "Write add.", "tests": "assert add(1, 2) == 3",
                                  "setup": "import math"}) + "\n")
    suite = coding_suite(native, sampled=False)
    assert suite.name == "coding:code" and suite.problems[0].setup == "import math"
    assert suite.run(ScriptedEngine(lambda p, s, i: GOOD)).metrics["pass@1"] == 100.0

    he = tmp_path / "he.jsonl"
    he.write_text(json.dumps({"prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n",
                              "test": "def check(f):\n    assert f(1, 2) == 3\n",
                              "entry_point": "add"}) + "\n")
    suite = coding_suite(he, sampled=False)
    assert "```python\ndef add(a, b):" in suite.problems[0].prompt
    assert suite.run(ScriptedEngine(lambda p, s, i: GOOD)).metrics["pass@1"] == 100.0
    assert suite.run(ScriptedEngine(lambda p, s, i: BAD)).metrics["pass@1"] == 0.0

    missing = tmp_path / "m.jsonl"
    missing.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(PTMError, match=r"m\.jsonl has no column 'tests'"):
        coding_suite(missing)
