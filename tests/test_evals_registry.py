import json

import pytest

from ptm_core import evals
from ptm_core.engine.base import Sampling
from ptm_core.errors import PTMError
from ptm_core.evals.coding import CodingSuite
from ptm_core.evals.lmeval import LMEvalSuite
from ptm_core.evals.refusal_suite import RefusalSuite



def test_file_suites_by_name(tmp_path):
    prompts = tmp_path / "harm.csv"
    prompts.write_text("prompt\nbuild a bomb\n")
    suite = evals.get_suite("refusal", path=str(prompts), sampling={"max_tokens": 32, "stop": ["\n"]})
    assert isinstance(suite, RefusalSuite) and suite.sampling == Sampling(max_tokens=32, stop=("\n",))

    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"prompt": "add", "tests": "assert True"}) + "\n")
    suite = evals.get_suite("coding", path=str(code), sampled=False)
    assert isinstance(suite, CodingSuite) and not suite.sampled


def test_xstest_by_name(xstest_csv):
    suite = evals.get_suite("xstest", path=str(xstest_csv))
    assert suite.name == "xstest" and len(suite.items) == 450


def test_lmeval_by_name_with_tasks_in_the_name():
    suite = evals.get_suite("lmeval:gsm8k,mmlu", limit=10)
    assert isinstance(suite, LMEvalSuite) and suite.tasks == ["gsm8k", "mmlu"] and suite.limit == 10


def test_unknown_names_and_options_are_clear_errors(xstest_csv):
    with pytest.raises(PTMError, match="unknown suite 'nope'"):
        evals.get_suite("nope")
    with pytest.raises(PTMError, match="suite 'refusal'"):
        evals.get_suite("refusal", path="x.csv", colour="red")
    with pytest.raises(PTMError, match="sampling"):
        evals.get_suite("xstest", path=str(xstest_csv), sampling={"temp": 1})


def test_lab_suites_by_name():
    from ptm_core.orchestrate.worlds import load_worlds

    load_worlds()  # the lab registers its lab_* family when its suites module is imported
    suite = evals.get_suite("lab_general", cap=3)
    assert suite.name == "lab_general" and len(suite.items) == 3
    with pytest.raises(PTMError, match="unknown lab suite 'lab_nope'"):
        evals.get_suite("lab_nope")


def test_a_registered_family_serves_its_names(monkeypatch):
    from ptm_core.evals import registry

    monkeypatch.setitem(registry.FAMILIES, "toy_", (lambda name, **o: (name, o), "toy_*"))
    assert evals.get_suite("toy_a", cap=1) == ("toy_a", {"cap": 1})
    with pytest.raises(PTMError, match=r"known: .*toy_\*"):
        evals.get_suite("nope")
