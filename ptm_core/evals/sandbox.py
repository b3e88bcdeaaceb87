"""Run model-generated code against assert-style tests in a sandboxed subprocess.

Model outputs are untrusted. Every call starts a fresh interpreter and enforces:

- process: `python -I -S` (isolated: no PYTHON* variables, no user or site-packages, so only the
  standard library is importable), its own session/process group, a fresh temporary working
  directory that is deleted afterwards, stdin/stdout/stderr not connected to ours (output is
  discarded);
- time: a wall-clock timeout after which the whole process group is killed (SIGKILL), plus
  RLIMIT_CPU as a backstop;
- memory and disk: RLIMIT_AS (address space, `memory_mb`), RLIMIT_FSIZE (largest file written),
  RLIMIT_CORE = 0;
- processes: RLIMIT_NPROC = 0 (no fork for non-root users) and, for everyone, an audit hook that
  refuses fork/exec/spawn/system/subprocess;
- network: a new, empty network namespace (`unshare -n`, or `unshare -rn` for non-root users with
  user namespaces) when the host allows it; in every case the audit hook also refuses socket
  creation, connect, bind and DNS lookups;
- files: the audit hook refuses opening files for writing, and removing, renaming or chmod-ing
  files, outside the working directory; it refuses importing `ctypes` (which could undo the hook).

Audit hooks cannot be removed once installed, but they are a guard rail against accidents and
reward-hacking code, not a security boundary against an adversary: for hostile inputs run the
worker in a container as well. Success is reported only through a one-time token written after
the tests ran, so code that exits early with status 0 (`sys.exit(0)`, `os._exit(0)`) fails.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

MAX_FILE_MB = 16

# The runner executes in the child before any untrusted code. It reads the token from stdin,
# applies limits, installs the audit hook, then runs code and tests in one namespace.
_RUNNER = r'''
import os, resource, sys

def _main():
    token = sys.stdin.readline().strip()
    result_fd = int(sys.argv[1])
    memory_mb, cpu_s, file_mb = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    code = open("candidate.py", encoding="utf-8").read()
    tests = open("tests.py", encoding="utf-8").read()
    workdir = os.path.realpath(os.getcwd())

    def limit(which, value):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass
    limit(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    limit(resource.RLIMIT_CPU, cpu_s)
    limit(resource.RLIMIT_FSIZE, file_mb * 1024 * 1024)
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_NPROC, 0)

    blocked = {
        "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
        "os.kill", "os.killpg", "subprocess.Popen", "pty.spawn",
        "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
        "socket.gethostbyname", "socket.sendto", "ctypes.dlopen",
    }
    path_events = {"os.remove", "os.rename", "os.rmdir", "os.chmod", "os.chown",
                   "os.link", "os.symlink", "os.truncate", "shutil.rmtree", "os.mkdir"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def inside(path):
        if isinstance(path, int):
            return True
        try:
            real = os.path.realpath(os.fsdecode(path))
        except Exception:
            return False
        return real == workdir or real.startswith(workdir + os.sep)

    def hook(event, args):
        if event in blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args and args[0] in ("ctypes", "_ctypes"):
            raise PermissionError("sandbox: ctypes is not allowed")
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1] or "", args[2] or 0
            writing = any(c in str(mode) for c in "wax+") or (flags & write_flags)
            if writing and not inside(path):
                raise PermissionError("sandbox: writing outside the working directory")
        if event in path_events and args and not inside(args[0]):
            raise PermissionError(f"sandbox: {event} outside the working directory")
        if event == "os.rename" and len(args) > 1 and not inside(args[1]):
            raise PermissionError("sandbox: rename outside the working directory")

    sys.addaudithook(hook)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(code, "candidate.py", "exec"), namespace)
        exec(compile(tests, "tests.py", "exec"), namespace)
    except BaseException:
        os._exit(1)
    os.write(result_fd, token.encode())
    os._exit(0)

_main()
'''


@functools.lru_cache(maxsize=1)
def network_isolation_prefix() -> tuple[str, ...]:
    """The command prefix that gives the child an empty network namespace, or () if none works."""
    unshare = shutil.which("unshare")
    if not unshare:
        return ()
    for prefix in ((unshare, "-n"), (unshare, "-r", "-n")):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def run_tests(code: str, tests: str, timeout_s: float = 5.0, memory_mb: int = 512) -> bool:
    """True only if `code` followed by `tests` runs to completion in the sandbox."""
    with tempfile.TemporaryDirectory(prefix="ptm-sandbox-") as workdir:
        Path(workdir, "candidate.py").write_text(code, encoding="utf-8")
        Path(workdir, "tests.py").write_text(tests, encoding="utf-8")
        Path(workdir, "_runner.py").write_text(_RUNNER, encoding="utf-8")
        token = secrets.token_hex(16)
        read_fd, write_fd = os.pipe()
        cmd = [*network_isolation_prefix(), sys.executable, "-I", "-S", "_runner.py",
               str(write_fd), str(memory_mb), str(int(timeout_s) + 1), str(MAX_FILE_MB)]
        try:
            proc = subprocess.Popen(
                cmd, cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(write_fd,), start_new_session=True,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        finally:
            os.close(write_fd)
        try:
            proc.communicate(input=(token + "\n").encode(), timeout=timeout_s)
            reported = _read_available(read_fd)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return False
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            os.close(read_fd)
        return proc.returncode == 0 and reported == token.encode()


def run_tests_batch(cases: Sequence[tuple[str, str]], timeout_s: float = 5.0,
                    memory_mb: int = 512, workers: int | None = None) -> list[bool]:
    """`run_tests` for many (code, tests) pairs, at most `workers` sandboxes at a time."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda case: run_tests(case[0], case[1], timeout_s, memory_mb),
                             cases))


def _read_available(fd: int) -> bytes:
    """What the child wrote to the result pipe; never blocks (the child has exited)."""
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's process group. Called only before the child is reaped, so its pid
    (= the group id) cannot have been reused by an unrelated process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
