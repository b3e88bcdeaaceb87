"""The CLI's environment defaults are set before anything loads torch (libgomp reads them once)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = ("import os, sys\n"
         "import ptm_core.__main__ as cli\n"
         "assert 'torch' not in sys.modules, 'the CLI entry imported torch before its environment'\n"
         "cli.prepare_environment('worker', [])\n"
         "print(os.environ['GOMP_SPINCOUNT'])\n")


def _probe(env: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_openmp_spin_default_is_set_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    assert _probe(env) == "1000"


def test_a_users_openmp_spin_setting_wins():
    assert _probe({**os.environ, "GOMP_SPINCOUNT": "300000"}) == "300000"
