"""Children that Ctrl-C can reach, whatever the test runner inherited.

A shell starts background jobs with SIGINT ignored, and Python then keeps ignoring it, so a
test suite run in the background would see its Ctrl-C tests fail for a reason outside the
code. Tests that send SIGINT start their child with the default disposition instead."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """`preexec_fn` for subprocess.Popen: runs in the child just before exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
