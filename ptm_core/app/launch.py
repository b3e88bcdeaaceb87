"""`python -m ptm_core app` (and `make run`): the Streamlit app and an evaluation worker together.

Both run as child processes bound to localhost. When the app exits, or on Ctrl-C / SIGTERM, the
worker is stopped too (SIGTERM, then SIGKILL after a grace period), so nothing is left running.
If the worker dies, the app keeps serving every cached result (its pages say that new points
wait for a worker) and the launcher says how to start one again.

    python -m ptm_core app [--port 8501] [--experiment lab|paper|PATH] [--no-worker]
                           [--store PATH] [--export-dir DIR] [-- WORKER_ARGS...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from ptm_core.app.data import REPO

GRACE_S = 10.0


def streamlit_cmd(port: int, address: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "ptm_core.app.serve", str(REPO / "app.py"),
            "--server.address", address, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false"]


# The app's worker looks for new jobs this often (the worker's own default is 1 s): a live
# point's first answer should not wait a second for the claim; an idle claim costs ~0.05 ms.
WORKER_POLL_S = 0.2


def worker_cmd(extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "ptm_core", "worker", *extra]


def with_poll(worker_args: Sequence[str]) -> list[str]:
    """The app's worker arguments, polling every WORKER_POLL_S unless they say otherwise."""
    given = any(a == "--poll" or a.startswith("--poll=") for a in worker_args)
    return list(worker_args) if given else ["--poll", str(WORKER_POLL_S), *worker_args]


def _stop(procs: dict[str, subprocess.Popen], grace_s: float = GRACE_S) -> None:
    for p in procs.values():
        if p.poll() is None:
            try:
                p.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs.values():
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_children(cmds: dict[str, list[str]], *, env: dict[str, str] | None = None,
                 poll_s: float = 0.5, grace_s: float = GRACE_S, cwd: Path = REPO,
                 primary: str | None = None) -> int:
    """Start every command; return when the ``primary`` one exits (default: when any exits),
    or on Ctrl-C/SIGTERM, after stopping the others. Another child exiting is only reported.
    Returns the exit code of the child that ended the run (130 when interrupted)."""
    procs: dict[str, subprocess.Popen] = {}
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    if hasattr(signal, "SIGTERM"):
        try:
            signal.signal(signal.SIGTERM, on_term)
        except ValueError:  # not the main thread (tests): Ctrl-C handling still applies
            old_term = None
    code = 0
    try:
        for name, cmd in cmds.items():
            procs[name] = subprocess.Popen(cmd, env=env, cwd=cwd)
            print(f"[launch] started {name} (pid {procs[name].pid}): {' '.join(cmd)}", flush=True)
        reported: set[str] = set()
        while True:
            for name, p in procs.items():
                rc = p.poll()
                if rc is None or name in reported:
                    continue
                if primary is None or name == primary:
                    print(f"[launch] {name} exited with code {rc}; stopping the rest", flush=True)
                    return rc
                reported.add(name)
                print(f"[launch] {name} exited with code {rc}; the app keeps showing cached "
                      f"results (start a worker again with: {' '.join(cmds[name])})", flush=True)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        code = 130
        print("[launch] stopping…", flush=True)
        return code
    finally:
        _stop(procs, grace_s)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    worker_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, worker_args = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="python -m ptm_core app", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("PTM_APP_PORT", "8501")))
    ap.add_argument("--experiment", help="what the app opens first: lab (default), paper, or a "
                    "path (experiment YAML or results CSV)")
    ap.add_argument("--store", help="results store shared by app and worker: a SQLite file or "
                    "a postgresql:// URL (default: $PTM_STORE or .ptm/store.sqlite)")
    ap.add_argument("--export-dir", help="where exports go (default: $PTM_EXPORT_DIR or exports/)")
    ap.add_argument("--no-worker", action="store_true", help="start the app only")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    if args.experiment:
        env["PTM_APP_EXPERIMENT"] = args.experiment
    if args.store:
        from ptm_core.store.location import for_environment
        env["PTM_STORE"] = for_environment(args.store)  # a URL stays a URL
    if args.export_dir:
        env["PTM_EXPORT_DIR"] = str(Path(args.export_dir).expanduser().resolve())
    cmds = {"app": streamlit_cmd(args.port)}
    if not args.no_worker:
        cmds["worker"] = worker_cmd(with_poll(worker_args))
    print(f"[launch] PTM Explorer on http://127.0.0.1:{args.port} (Ctrl-C stops "
          f"{'both' if len(cmds) > 1 else 'it'})", flush=True)
    return run_children(cmds, env=env, primary="app")


if __name__ == "__main__":
    sys.exit(main())
