import json
from pathlib import Path

import pytest

from ptm_core import evals
from ptm_core.engine.base import Sampling
from ptm_core.errors import PTMError
from ptm_core.evals.coding import CodingSuite
from ptm_core.evals.lmeval import LMEvalSuite
from ptm_core.evals.refusal_suite import RefusalSuite

XSTEST_CSV = Path("/work/shared/data/xstest/xstest_prompts.csv")


def test_file_suites_by_name(tmp_path):
    prompts = tmp_path / "harm.csv"
    prompts.write_text("prompt\nbuild a bomb\n")
    suite = evals.get_suite("refusal", path=str(prompts), sampling={"max_tokens": 32, "stop": ["\n"]})
    assert isinstance(suite, RefusalSuite) and suite.sampling == Sampling(max_tokens=32, stop=("\n",))

    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"prompt": "add", "tests": "assert True"}) + "\n")
    suite = evals.get_suite("coding", path=str(code), sampled=False)
    assert isinstance(suite, CodingSuite) and not suite.sampled


@pytest.mark.skipif(not XSTEST_CSV.is_file(), reason="XSTest CSV not on this machine")
def test_xstest_by_name():
    suite = evals.get_suite("xstest", path=str(XSTEST_CSV))
    assert suite.name == "xstest" and len(suite.items) == 450


def test_lmeval_by_name_with_tasks_in_the_name():
    suite = evals.get_suite("lmeval:gsm8k,mmlu", limit=10)
    assert isinstance(suite, LMEvalSuite) and suite.tasks == ["gsm8k", "mmlu"] and suite.limit == 10


def test_unknown_names_and_options_are_clear_errors(tmp_path):
    with pytest.raises(PTMError, match="unknown suite 'nope'"):
        evals.get_suite("nope")
    with pytest.raises(PTMError, match="suite 'refusal'"):
        evals.get_suite("refusal", path="x.csv", colour="red")
    with pytest.raises(PTMError, match="sampling"):
        evals.get_suite("xstest", path=str(XSTEST_CSV), sampling={"temp": 1})


def test_lab_suites_by_name():
    pytest.importorskip("ptm_core.lab.suites")
    suite = evals.get_suite("lab_general", cap=3)
    assert suite.name == "lab_general" and len(suite.items) == 3
