import os
import time

import pytest

from ptm_core.evals.sandbox import network_isolation_prefix, run_tests, run_tests_batch

ADD = "def add(a, b):\n    return a + b\n"


def test_passing_code_passes():
    assert run_tests(ADD, "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n")


def test_failing_assert_fails():
    assert not run_tests(ADD, "assert add(2, 2) == 5\n")


def test_syntax_error_and_exceptions_fail():
    assert not run_tests("def add(a, b) return a+b", "assert add(1, 1) == 2")
    assert not run_tests("raise RuntimeError('x')", "")
    assert not run_tests(ADD, "add()")


@pytest.mark.parametrize("early_exit", ["import sys\nsys.exit(0)", "import os\nos._exit(0)",
                                        "raise SystemExit(0)"])
def test_exiting_before_the_tests_fails(early_exit):
    assert not run_tests(early_exit, "assert False")


def test_infinite_loop_is_killed_on_time():
    start = time.monotonic()
    assert not run_tests("while True:\n    pass\n", "", timeout_s=1.0)
    assert time.monotonic() - start < 5


def test_memory_limit():
    assert not run_tests("x = bytearray(400 * 1024 * 1024)", "", memory_mb=128)
    assert run_tests("x = bytearray(10 * 1024 * 1024)", "assert len(x) > 0", memory_mb=256)


def test_no_subprocess_or_fork():
    assert not run_tests("import os\nos.system('true')", "")
    assert not run_tests("import subprocess\nsubprocess.run(['true'])", "")
    assert not run_tests("import os\npid = os.fork()", "")


def test_no_network():
    code = ("import socket\ns = socket.socket()\ns.settimeout(1)\n"
            "s.connect(('127.0.0.1', 9))\n")
    assert not run_tests(code, "")
    assert not run_tests("import socket\nsocket.getaddrinfo('localhost', 80)", "")
    assert not run_tests("import socket\nsocket.socket()", "")  # even creating one


def test_files_only_inside_the_working_directory(tmp_path):
    outside = tmp_path / "escaped.txt"
    assert not run_tests(f"open({str(outside)!r}, 'w').write('x')", "")
    assert not outside.exists()
    inside = "open('scratch.txt', 'w').write('hi')\n"
    assert run_tests(inside, "assert open('scratch.txt').read() == 'hi'")


def test_only_standard_library_is_importable():
    assert not run_tests("import torch", "")
    assert run_tests("import json, collections, itertools", "assert json.loads('[1]') == [1]")


def test_output_is_discarded_and_does_not_block():
    assert run_tests("print('x' * 1_000_000)\nimport sys\nsys.stderr.write('y' * 100000)", "")


def test_batch_keeps_order():
    cases = [(ADD, "assert add(1, 1) == 2"), (ADD, "assert add(1, 1) == 3"),
             ("while True: pass", ""), (ADD, "assert add(0, 0) == 0")]
    assert run_tests_batch(cases, timeout_s=1.0, workers=2) == [True, False, False, True]


def test_network_namespace_probe_is_a_command_prefix():
    prefix = network_isolation_prefix()
    assert prefix == () or os.path.basename(prefix[0]) == "unshare"
