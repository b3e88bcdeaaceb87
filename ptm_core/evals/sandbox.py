"""Run model-generated code against assert-style tests, isolated by bubblewrap.

Model outputs are untrusted, and with real models hostile in earnest, so isolation comes from the
kernel through a kept tool (Debian's `bubblewrap`), not from hooks inside the interpreter:

- one sandbox = one `bwrap` with its own pid, network (empty: no route anywhere, not even to the
  host's loopback), IPC, UTS and cgroup namespaces, `--die-with-parent`, `--new-session`, and a
  filesystem holding only the interpreter binary, its standard library (site-packages hidden)
  and the shared libraries they link, all read-only. No project, no venv, nothing of /root or
  /home but the directories leading to the interpreter, no host /proc, no shell or binaries.
- inside, `sandbox_supervisor.py` runs each program in a fresh pid + mount + IPC namespace of
  its own: pid 1 of that namespace is the program, so the timeout kill ends every process it
  started (new sessions included); a fresh /proc shows only them; a fresh /tmp (the working
  directory, a size-capped tmpfs) and /dev/shm leave nothing for the next program. Before the
  candidate runs, its process sets hard rlimits (address space `memory_mb`, CPU time, file size
  16 MiB, 64 processes, no core files) and becomes uid/gid 65534 with no capabilities, so it
  cannot raise them back; a seccomp filter then refuses new namespaces, mounts, memfd and SysV
  shared memory (memory outside RLIMIT_AS), ptrace and a few more. As root the sandbox runs
  without a user namespace and 65534 is the host's `nobody` (root would escape RLIMIT_NPROC);
  as a normal user bwrap maps 65534 to that user inside a user namespace.
- the verdict is decided here: the tests are rewritten (`sandbox_probes.py`) so that the harness
  reports observed values and the expected ones never enter the sandbox. Exiting early, printing
  or writing a token, replacing builtins or forging reports cannot turn a wrong answer into a
  pass. Asserts without a literal side are reported as truth values and are only as strong as
  the harness (documented in docs/evaluation.md).

Speed: the supervisor forks each program from an interpreter that is already running, so a
program costs a fork, a few namespaces and mounts instead of a bwrap start and an interpreter
start. Measured on the 2-core CPU machine (load 4.1-4.5, 200 trivial programs): a fresh bwrap +
`python -I -S` per program 68-74 ms; the supervisor 12-15 ms per program with one worker, 9 ms
with two, plus one sandbox start (120-140 ms) per worker. Both keep each program in namespaces
of its own; the pool keeps one sandbox per worker and hands it the next program when the last
one ended, so two programs never share a sandbox at the same time (docs/evaluation.md).

Where bubblewrap is missing or cannot create namespaces, nothing runs: a PTMError says why.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from ptm_core.errors import PTMError
from ptm_core.evals.sandbox_probes import Probe, rewrite, verdict
from ptm_core.evals.sandbox_supervisor import SETUP_LIMIT_S

MAX_FILE_MB = 16  # the largest file a program may write
TMP_MB = 64  # the program's working directory (tmpfs)
_INSTALL = "install Debian's bubblewrap (`apt-get install bubblewrap`; `make test` does it)"
_SUPERVISOR = Path(__file__).with_name("sandbox_supervisor.py")


class SandboxUnavailable(PTMError):
    """bubblewrap is missing or cannot build the sandbox; generated code is never run without it."""


def run_tests(code: str, tests: str, timeout_s: float = 5.0, memory_mb: int = 512) -> bool:
    """True only if `code` followed by `tests` runs in the sandbox and every test holds."""
    return run_tests_batch([(code, tests)], timeout_s, memory_mb, workers=1)[0]


def run_tests_batch(cases: Sequence[tuple[str, str]], timeout_s: float = 5.0,
                    memory_mb: int = 512, workers: int | None = None) -> list[bool]:
    """`run_tests` for many (code, tests) pairs: one sandbox per worker, each running its
    programs one after another, every program in namespaces of its own."""
    prepared = [rewrite(tests) for _, tests in cases]
    results = [False] * len(cases)  # tests that do not parse fail without running anything
    todo = [i for i, p in enumerate(prepared) if p is not None]
    if not todo:
        return results
    command = sandbox_command()
    workers = max(1, min(workers or min(4, os.cpu_count() or 1), len(todo)))
    pending, lock = iter(todo), threading.Lock()

    def work() -> None:
        sandbox = _Sandbox(command)
        try:
            while True:
                with lock:
                    i = next(pending, None)
                if i is None:
                    return
                tests, probes = prepared[i]
                results[i] = sandbox.passes(cases[i][0], tests, probes, timeout_s, memory_mb)
        finally:
            sandbox.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()  # re-raises SandboxUnavailable from any worker
    return results


run_many = run_tests_batch


class _Sandbox:
    """One bwrap running the supervisor; restarted if it ever dies."""

    def __init__(self, command: list[str]):
        self.command, self.proc = command, None

    def _start(self) -> None:
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errors, start_new_session=True,
                                     env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        self.buffer = b""
        if self._read_line(60.0) != {"ready": 1}:
            self.errors.seek(0)
            why = self.errors.read()[-2000:].decode("utf-8", "replace").strip()
            self.close()
            raise SandboxUnavailable(f"bubblewrap could not start the sandbox "
                                     f"({why or 'no reply'}); it needs root or unprivileged "
                                     f"user namespaces; {_INSTALL}")

    def passes(self, code: str, tests: str, probes: list[Probe], timeout_s: float,
               memory_mb: int) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        request = {"code": code, "tests": tests, "timeout": float(timeout_s),
                   "memory_mb": int(memory_mb), "file_mb": MAX_FILE_MB, "tmp_mb": TMP_MB}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            answer = self._read_line(timeout_s + SETUP_LIMIT_S + 30.0)
        except OSError:
            answer = None
        if not isinstance(answer, dict):  # the supervisor died or hung: a fresh one next time
            self.close()
            return False
        if answer.get("status") == "setup":  # before any candidate code: the machine's doing
            raise SandboxUnavailable(f"the sandbox could not isolate a program "
                                     f"({_setup_reason(answer.get('reports'))}); it needs root or "
                                     f"unprivileged user namespaces; {_INSTALL}")
        return (answer.get("status") == "ok" and answer.get("overflow") is False
                and isinstance(answer.get("reports"), str) and verdict(probes, answer["reports"]))

    def _read_line(self, timeout_s: float) -> object:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            if not select.select([fd], [], [], timeout_s)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return None

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            try:  # bwrap --die-with-parent takes the whole sandbox with it
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        self.proc.stdout.close()
        self.errors.close()
        self.proc = None


def _setup_reason(reports: object) -> str:
    for line in str(reports).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "setup" in record:
            return str(record["setup"])[:500]
    return "no reason given"


def sandbox_command() -> list[str]:
    """The bwrap command line that starts one supervisor; SandboxUnavailable if bwrap is absent."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise SandboxUnavailable(f"generated code is never run unsandboxed: no `bwrap` on PATH; "
                                 f"{_INSTALL}")
    if platform.machine() != "x86_64":
        raise SandboxUnavailable(f"the sandbox's syscall filter knows x86_64 only, not "
                                 f"{platform.machine()}; generated code is not run here")
    if os.geteuid() == 0:
        # No user namespace: the program becomes the host's uid 65534 (RLIMIT_NPROC binds it,
        # it owns no host file); the supervisor keeps only what it needs to build namespaces,
        # drop to 65534 and kill a program that runs out of time.
        isolation = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                     "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SYS_ADMIN",
                     "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
    else:
        isolation = ["--unshare-all", "--uid", "65534", "--gid", "65534",
                     "--cap-add", "CAP_SYS_ADMIN"]
    source = _SUPERVISOR.read_text(encoding="utf-8")
    return [bwrap, *isolation, "--die-with-parent", "--new-session", "--clearenv",
            "--hostname", "sandbox", *_filesystem(), "--proc", "/proc", "--dev", "/dev",
            "--perms", "0755", "--dir", "/tmp", "--chdir", "/",
            _interpreter(), "-I", "-S", "-B", "-X", "utf8", "-c", source]


def _interpreter() -> str:
    return os.path.realpath(sys.executable)


@functools.lru_cache(maxsize=1)
def _filesystem() -> tuple[str, ...]:
    """Read-only binds of the interpreter, its standard library and the libraries they link,
    each at its own path; every directory above them is made world-traversable (bwrap makes
    them 0700, which uid 65534 could not pass)."""
    exe = _interpreter()
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    dynload = os.path.join(stdlib, "lib-dynload")
    libs = _linked_libraries([exe, *glob.glob(os.path.join(dynload, "*.so"))])
    libc_dir = next((os.path.dirname(p) for p in libs if "/libc.so" in p), None)
    if libc_dir and os.path.exists(os.path.join(libc_dir, "libgcc_s.so.1")):
        libs.append(os.path.join(libc_dir, "libgcc_s.so.1"))  # dlopen()ed by thread exit
    binds = sorted({exe, stdlib, *libs})
    def under(path: str, top: str) -> bool:
        return path == top or path.startswith(top.rstrip(os.sep) + os.sep)

    base = os.path.realpath(sys.base_prefix)
    private = {os.path.realpath(p) for p in (sys.prefix, str(Path(__file__).parents[2]))}
    leaked = [b for b in binds
              if any(under(b, p) for p in private) and not under(b, base)]
    if leaked:  # the project or venv would become importable inside the sandbox
        raise SandboxUnavailable(f"the interpreter links {leaked[0]}, inside the project or its "
                                 f"venv; the sandbox binds nothing from there")
    args: list[str] = []
    made: set[str] = set()
    for path in binds:
        parents = []
        parent = os.path.dirname(path)
        while parent not in ("/", "") and parent not in made:
            parents.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(parents):
            made.add(directory)
            args += ["--perms", "0755", "--dir", directory]
        args += ["--ro-bind", path, path]
    # the base interpreter's site-packages (pip, numpy, cffi, ...) are not the standard library
    for site in {sysconfig.get_paths(vars={"base": sys.base_prefix,
                                           "platbase": sys.base_prefix})[key]
                 for key in ("purelib", "platlib")}:
        if os.path.realpath(site).startswith(stdlib + os.sep) and os.path.isdir(site):
            site = os.path.realpath(site)
            args += ["--perms", "0555", "--size", "4096", "--tmpfs", site, "--remount-ro", site]
    return tuple(args)


def _linked_libraries(binaries: list[str]) -> list[str]:
    """Every shared library the binaries load, as `ldd` resolves them (the ELF interpreter too)."""
    try:
        # The environment the sandboxed interpreter gets (bwrap --clearenv), not this process's:
        # imports here set LD_PRELOAD / LD_LIBRARY_PATH (vLLM preloads torch's libgomp, cv2 adds
        # its lib64), and binding what they name would put the venv's directories in the sandbox.
        out = subprocess.run(["ldd", *binaries], capture_output=True, text=True, timeout=60,
                             check=False, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"cannot list the interpreter's libraries with ldd: {exc}")
    libs = set()
    for line in out.splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            target = words[words.index("=>") + 1]
        elif words and words[0].startswith("/") and not line.endswith(":"):
            target = words[0]
        else:
            continue
        if target.startswith("/") and os.path.exists(target):
            libs.add(target)
    return sorted(libs)
