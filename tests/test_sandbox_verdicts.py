"""The sandbox's verdicts on honest code, its probes, its pool and its refusal to run unsandboxed.

The run_tests cases need bubblewrap (`make test` installs it) and fail, never skip, without it.
"""

import time

import pytest

from ptm_core.errors import PTMError
from ptm_core.evals import sandbox
from ptm_core.evals.sandbox import run_tests, run_tests_batch
from ptm_core.evals.sandbox_probes import rewrite, verdict

ADD = "def add(a, b):\n    return a + b\n"


def test_passing_and_failing_code():
    assert run_tests(ADD, "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n")
    assert not run_tests(ADD, "assert add(2, 2) == 5\n")
    assert not run_tests(ADD, "assert add(2, 3) == 5\nassert add(2, 2) == 5\n")


def test_syntax_errors_and_exceptions_fail():
    assert not run_tests("def add(a, b) return a+b", "assert add(1, 1) == 2")
    assert not run_tests("raise RuntimeError('x')", "")
    assert not run_tests(ADD, "add()")
    assert not run_tests(ADD, "assert add(1, 1) ==")  # tests that do not parse


@pytest.mark.parametrize("early_exit", ["import sys\nsys.exit(0)", "import os\nos._exit(0)",
                                        "raise SystemExit(0)"])
def test_exiting_before_the_tests_fails(early_exit):
    assert not run_tests(early_exit, "assert False")


def test_every_kind_of_assert_keeps_its_meaning():
    code = ("def f(x):\n    return [x, x]\n"
            "def check(candidate):\n"
            "    assert candidate(1) == [1, 1]\n"
            "    assert candidate(2) != [1, 1]\n"
            "    assert 3 in candidate(3)\n"
            "    assert candidate(0) is not None\n"
            "    assert len(candidate(0)) > 1\n"
            "    for i in range(3):\n"
            "        assert candidate(i) == [i, i]\n")
    assert run_tests(code, "check(f)\n")
    assert not run_tests(code.replace("[x, x]", "[x, x, x]"), "check(f)\n")
    assert run_tests("def g():\n    return (1, 2)\n", "assert g() == (1, 2)\nassert g() != [1, 2]")
    assert not run_tests("def g():\n    return [1, 2]\n", "assert g() == (1, 2)")
    assert run_tests("def g():\n    return 1\n", "assert g() == 1.0\nassert g() == True")
    assert run_tests("import collections\ndef g():\n    return collections.OrderedDict(a=1)\n",
                     "assert g() == {'a': 1}")
    assert run_tests("def g():\n    return float('inf'), {1, 2}, b'x'\n",
                     "assert g() == (1e999, {2, 1}, b'x')")


def test_infinite_loop_is_killed_on_time():
    start = time.monotonic()
    assert not run_tests("while True:\n    pass\n", "", timeout_s=1.0)
    assert time.monotonic() - start < 10


def test_the_working_directory_is_private_and_writable():
    assert run_tests("open('scratch.txt', 'w').write('hi')",
                     "assert open('scratch.txt').read() == 'hi'")
    cases = [("open('left', 'w').write('x')", ""),
             ("import os\nseen = os.listdir('.')", "assert seen == []")]
    assert run_tests_batch(cases, workers=1) == [True, True]  # nothing left for the next one


def test_standard_library_is_importable_and_output_is_discarded():
    assert run_tests("import json, sqlite3, ssl, zlib, decimal, threading",
                     "assert json.loads('[1]') == [1]")
    assert run_tests("print('x' * 1_000_000)\nimport sys\nsys.stderr.write('y' * 100000)", "")


def test_batch_keeps_order_and_survives_timeouts():
    cases = [(ADD, "assert add(1, 1) == 2"), (ADD, "assert add(1, 1) == 3"),
             ("while True: pass", ""), (ADD, "assert add(0, 0) == 0"), ("x", "assert x")]
    assert run_tests_batch(cases, timeout_s=1.0, workers=2) == [True, False, False, True, False]
    assert run_tests_batch([]) == []


def test_probes_hide_literals_and_mark_branches():
    tests, probes = rewrite("assert f(2) == 4\nif x:\n    assert g(1)\nassert 7 in h()\n")
    assert "4" not in tests and "7" not in tests
    assert [p.required for p in probes] == [True, False, True]
    assert probes[0].expected == 4 and probes[1].op is None and probes[2].expected == 7
    assert rewrite("assert (") is None


def test_verdict_needs_completion_every_required_probe_and_agreement():
    _, probes = rewrite("assert f() == 4\nif y:\n    assert g() == 1\n")
    ok = '{"p": 0, "v": "4"}\n{"done": 1}\n'
    assert verdict(probes, ok)
    assert not verdict(probes, '{"p": 0, "v": "4"}\n')  # no completion
    assert not verdict(probes, '{"done": 1}\n')  # a required probe never ran
    assert not verdict(probes, '{"p": 0, "v": "5"}\n{"done": 1}\n')
    assert not verdict(probes, ok + '{"p": 1, "v": "2"}\n')  # an optional one that ran wrong
    assert not verdict(probes, '{"p": 0, "x": 1}\n{"done": 1}\n')  # not a plain value
    assert not verdict(probes, '{"p": 9, "v": "4"}\n' + ok)  # no such probe
    assert not verdict(probes, '{"p": 0, "v": "__import__(\'os\')"}\n{"done": 1}\n')
    assert not verdict(probes, "not json\n" + ok)
    assert not verdict(probes, "[" * 100_000 + "\n" + ok)
    assert not verdict(probes, '{"p": 0, "v": "' + "[" * 100_000 + '"}\n{"done": 1}\n')


def test_refuses_to_run_without_bubblewrap(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(PTMError, match="bubblewrap"):
        run_tests(ADD, "assert add(1, 1) == 2")


def test_refuses_when_bubblewrap_cannot_build_the_sandbox(monkeypatch):
    failing = ["/bin/sh", "-c", "echo 'bwrap: No permissions to create new namespace' >&2"]
    monkeypatch.setattr(sandbox, "sandbox_command", lambda: failing)
    with pytest.raises(PTMError, match="No permissions to create new namespace.*bubblewrap"):
        run_tests(ADD, "assert add(1, 1) == 2")


def test_refuses_when_a_program_cannot_be_isolated(monkeypatch):
    command = sandbox.sandbox_command()
    at = command.index("CAP_SYS_ADMIN")  # without it no namespace per program can be made
    monkeypatch.setattr(sandbox, "sandbox_command", lambda: command[:at - 1] + command[at + 1:])
    with pytest.raises(PTMError, match="could not isolate a program .*Operation not permitted"):
        run_tests(ADD, "assert add(1, 1) == 2")
