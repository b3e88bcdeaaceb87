"""The launcher behind `make run`: app and worker as children, both stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


from ptm_core.app import launch
from signals import default_sigint


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_when_one_child_exits_the_other_is_stopped(tmp_path):
    marker = tmp_path / "pids"
    cmds = {
        "short": [sys.executable, "-c", "import sys; sys.exit(3)"],
        "long": [sys.executable, "-c",
                 f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"],
    }
    t0 = time.monotonic()
    rc = launch.run_children(cmds, poll_s=0.1, grace_s=5)
    assert rc == 3
    assert time.monotonic() - t0 < 30
    for _ in range(50):
        if marker.exists():
            break
        time.sleep(0.05)
    if marker.exists() and marker.read_text():
        assert not _alive(int(marker.read_text()))


def test_a_dead_worker_leaves_the_app_running(tmp_path):
    marker = tmp_path / "done"
    cmds = {
        "app": [sys.executable, "-c", "import time; time.sleep(1.5)"],
        "worker": [sys.executable, "-c", f"open({str(marker)!r}, 'w'); raise SystemExit(1)"],
    }
    t0 = time.monotonic()
    rc = launch.run_children(cmds, poll_s=0.05, grace_s=5, primary="app")
    assert rc == 0 and marker.exists()
    assert time.monotonic() - t0 >= 1.4  # it waited for the app, not for the worker


def test_ctrl_c_stops_both(tmp_path):
    pids = tmp_path / "pids"
    code = (
        "import sys; from ptm_core.app import launch\n"
        "cmd = lambda n: [sys.executable, '-c', "
        f"f\"import os,time; open(r'{pids}', 'a').write(str(os.getpid())+chr(10)); time.sleep(60)\"]\n"
        "sys.exit(launch.run_children({'app': cmd(1), 'worker': cmd(2)}, poll_s=0.1, grace_s=5))\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], cwd=launch.REPO, preexec_fn=default_sigint)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.05)
    children = [int(x) for x in pids.read_text().split()]
    assert len(children) == 2 and all(_alive(c) for c in children)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 130
    time.sleep(0.2)
    assert not any(_alive(c) for c in children)


def test_sigterm_stops_both(tmp_path):
    pids = tmp_path / "pids"
    code = (
        "import sys; from ptm_core.app import launch\n"
        "cmd = [sys.executable, '-c', "
        f"f\"import os,time; open(r'{pids}', 'a').write(str(os.getpid())+chr(10)); time.sleep(60)\"]\n"
        "sys.exit(launch.run_children({'app': cmd, 'worker': cmd}, poll_s=0.1, grace_s=5))\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], cwd=launch.REPO)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.05)
    children = [int(x) for x in pids.read_text().split()]
    p.terminate()
    assert p.wait(timeout=30) == 130
    time.sleep(0.2)
    assert not any(_alive(c) for c in children)


def test_commands_bind_to_localhost():
    cmd = launch.streamlit_cmd(8599)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8599"
    assert str(launch.REPO / "app.py") in cmd
    assert launch.worker_cmd(["--once"])[-2:] == ["worker", "--once"]
