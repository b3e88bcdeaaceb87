"""The supervisor that runs inside one bubblewrap sandbox and executes programs one at a time.

Standard library only: `sandbox.py` runs this file's text with `python -I -S -c` inside bwrap.
It reads one JSON request per line on stdin ({"code", "tests", "timeout", "memory_mb"}) and
answers one JSON line on stdout ({"status", "reports", "overflow"}). Per program it forks

    A  (keeps the sandbox's privileges): a private mount, pid and IPC namespace, the timeout
    G  (pid 1 of that new pid namespace): a fresh /proc, /tmp and /dev/shm, rlimits, then it
       drops to uid 65534 with no capabilities and runs the candidate and the rewritten tests.

Killing G ends its pid namespace, so every process the candidate started dies with it, whatever
session or process group it moved to. G never holds the supervisor's stdin/stdout: its only
channel is the report pipe, which the supervisor frames per program, so a program can neither
answer for another one nor forge the supervisor's reply. G reports observed values; expected
values never enter the sandbox (see `sandbox_probes.py`).
"""

import builtins
import ctypes
import json
import math
import os
import resource
import select
import signal
import sys

NOBODY = 65534
SETUP_LIMIT_S = 60  # seconds G may take to isolate itself before the candidate's clock starts
REPORT_CAP = 8 << 20  # bytes of reports kept per program; beyond it the program fails
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWIPC = 0x00020000, 0x20000000, 0x08000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 0x40000
PR_SET_PDEATHSIG = 1
EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT, EXIT_SETUP = 0, 1, 124, 125

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]


def _ok(rc):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _mount(fstype, target, flags, data=None):
    _ok(_libc.mount(fstype.encode(), target.encode(), fstype.encode(), flags,
                    data.encode() if data else None))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_privileges():
    """uid/gid 65534, no supplementary groups, no capabilities; verified, not assumed."""
    if os.getuid() == 0:  # bwrap ran as root without a user namespace: become real nobody
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)  # leaving uid 0 clears every capability
    else:  # a user namespace whose only uid is ours: clear the capabilities bwrap gave us
        _ok(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()))
    with open("/proc/self/status") as status:
        caps = [line.split()[1] for line in status if line.startswith(("CapEff", "CapPrm"))]
    if any(int(c, 16) for c in caps) or os.getuid() != NOBODY:
        raise OSError("privileges were not dropped")


# Syscalls a program never needs and that would reach around the limits: new namespaces (a
# user namespace of its own could mount an unbounded tmpfs), mounts, memory outside RLIMIT_AS
# (memfd, SysV shared memory and message queues), debugging other processes, the keyring,
# BPF, userfaultfd, perf and io_uring. x86_64 numbers; `sandbox.py` refuses other machines.
_DENIED = (272, 308, 165, 166, 155, 319, 447, 29, 68, 250, 248, 249, 321, 323, 298, 101, 310,
           311, 304, 425, 428, 429, 430, 431, 432, 442)
_CLONE, _CLONE3, _NAMESPACE_FLAGS = 56, 435, 0x7E020080  # every CLONE_NEW* flag
_AUDIT_ARCH_X86_64 = 0xC000003E


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp():
    """Install the syscall filter on this process and everything it starts (after the mounts)."""
    import struct

    ld, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, eperm, enosys, kill = 0x7FFF0000, 0x50000 | 1, 0x50000 | 38, 0x80000000
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH_X86_64), (ret, 0, 0, kill), (ld, 0, 0, 0),
            (0x35, 0, 1, 0x40000000), (ret, 0, 0, kill)]  # x32 ABI numbers: refuse
    for number in _DENIED:
        prog += [(jeq, 0, 1, number), (ret, 0, 0, eperm)]
    prog += [(jeq, 0, 1, _CLONE3), (ret, 0, 0, enosys),  # libc falls back to clone(2)
             (jeq, 0, 3, _CLONE), (ld, 0, 0, 16), (jset, 0, 1, _NAMESPACE_FLAGS),
             (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    code = b"".join(struct.pack("=HBBI", *op) for op in prog)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(prog), ctypes.cast(buffer, ctypes.c_void_p))
    _ok(_libc.prctl(38, 1, 0, 0, 0))  # PR_SET_NO_NEW_PRIVS
    _ok(_libc.prctl(22, 2, ctypes.byref(fprog), 0, 0))  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def _limit(memory_mb, cpu_s, file_mb):
    """Hard limits equal soft ones: an unprivileged process cannot raise them again."""
    for which, value in ((resource.RLIMIT_AS, memory_mb << 20), (resource.RLIMIT_CPU, cpu_s),
                         (resource.RLIMIT_FSIZE, file_mb << 20), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NPROC, 64), (resource.RLIMIT_NOFILE, 256),
                         (resource.RLIMIT_MSGQUEUE, 0), (resource.RLIMIT_MEMLOCK, 0)):
        resource.setrlimit(which, (value, value))


def _encode(value, depth=0):
    """A Python literal for a plain value (the parent reads it with ast.literal_eval); the base
    types' own methods are used so that an honest subclass encodes as its base value."""
    if depth > 100:
        raise ValueError("too deep")
    if value is None or value is True or value is False:
        return repr(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "1e999" if value > 0 else "-1e999"
        if math.isnan(value):
            raise ValueError("nan equals nothing")
        return float.__repr__(value)
    if isinstance(value, complex):
        return complex.__repr__(value)
    if isinstance(value, str):
        return str.__repr__(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes.__repr__(bytes(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_encode(k, depth + 1)}: {_encode(v, depth + 1)}"
                               for k, v in dict.items(value)) + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_encode(x, depth + 1) for x in value]
        if isinstance(value, list):
            return "[" + ", ".join(items) + "]"
        if isinstance(value, tuple):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return "{" + ", ".join(items) + "}" if items else "set()"
    raise TypeError(type(value).__name__)


def _harness(code, tests, report_fd):
    """Run the candidate, then the rewritten tests, in one namespace; report each probe."""
    write, dumps = os.write, json.dumps

    def emit(record):
        data = (dumps(record) + "\n").encode()
        while data:
            data = data[write(report_fd, data):]

    def observe(probe, value):
        try:
            emit({"p": probe, "v": _encode(value)})
        except (TypeError, ValueError, RecursionError):
            emit({"p": probe, "x": 1})

    def truth(probe, value):
        emit({"p": probe, "t": bool(value)})

    getattr(sys, "set_int_max_str_digits", lambda n: None)(0)  # Python >= 3.11 (and late 3.10)
    namespace = {"__name__": "__main__", "__builtins__": builtins,
                 "__ptm_observe__": observe, "__ptm_truth__": truth}
    exec(compile(code, "candidate.py", "exec"), namespace)
    exec(compile(tests, "tests.py", "exec"), namespace)
    emit({"done": 1})


def _program(request, report_w, ready_w):
    """In G: isolate, limit, drop privileges, say so on `ready_w`, run. Never returns."""
    try:
        os.setsid()
        _mount("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        tmp = f"size={request['tmp_mb']}m,nr_inodes=4096,mode=0700,uid={NOBODY},gid={NOBODY}"
        _mount("tmpfs", "/tmp", MS_NOSUID | MS_NODEV, tmp)
        _mount("tmpfs", "/dev/shm", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=1777")
        _limit(request["memory_mb"], math.ceil(request["timeout"]) + 1, request["file_mb"])
        _drop_privileges()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a credential change clears it
        os.chdir("/tmp")
        _seccomp()
    except BaseException as exc:
        os.write(ready_w, f"{type(exc).__name__}: {exc}".encode()[:1000])
        os._exit(EXIT_SETUP)
    os.write(ready_w, b"ok")
    os.close(ready_w)  # closed before any candidate code: a candidate cannot fake a set-up error
    status = EXIT_FAILED
    try:
        _harness(request["code"], request["tests"], report_w)
        status = EXIT_OK
    except BaseException:
        pass
    os._exit(status)


def _namespace_keeper(request, report_w):
    """In A: a new mount/pid/IPC namespace for G, and G's wall-clock timeout. Never returns.
    A failure to set G up (never the candidate's doing) ends as EXIT_SETUP with the reason."""
    try:
        _ok(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC))
        _ok(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None))
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(ready_r)
            _program(request, report_w, ready_w)
        os.close(ready_w)
        pidfd = os.pidfd_open(child)
        # The timeout is the candidate's: it starts once G is set up (on a loaded machine the
        # set-up alone can outlast a short timeout, which is neither a timeout nor a set-up fault).
        if select.select([ready_r], [], [], SETUP_LIMIT_S)[0]:
            ready = os.read(ready_r, 1000) or b"the program ended during set-up"
        else:
            ready = f"set-up gave no answer within {SETUP_LIMIT_S} s".encode()
        timed_out = ready == b"ok" and not select.select([pidfd], [], [], request["timeout"])[0]
        if timed_out or ready != b"ok":
            os.kill(child, signal.SIGKILL)  # pid 1 of its namespace: every descendant dies
        _, wait_status = os.waitpid(child, 0)
    except BaseException as exc:
        ready, timed_out, wait_status = f"{type(exc).__name__}: {exc}".encode(), False, 1
    if ready != b"ok":
        line = json.dumps({"setup": ready.decode("utf-8", "replace") or "no reason"}) + "\n"
        os.write(report_w, line.encode())
        os._exit(EXIT_SETUP)
    if timed_out:
        os._exit(EXIT_TIMEOUT)
    os._exit(EXIT_OK if os.waitstatus_to_exitcode(wait_status) == 0 else EXIT_FAILED)


def run_one(request):
    report_r, report_w = os.pipe()
    keeper = os.fork()
    if keeper == 0:
        os.close(report_r)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):  # the supervisor's channel to the parent stays out of reach
            os.dup2(null, fd)
        os.closerange(3, report_w)
        os.closerange(report_w + 1, 1 << 16)
        _namespace_keeper(request, report_w)
    os.close(report_w)
    chunks, size, overflow = [], 0, False
    # Read until every writer is gone (G's namespace is dead); the keeper bounds that by the
    # timeout, this backstop bounds the keeper.
    deadline = request["timeout"] + SETUP_LIMIT_S + 10
    while True:
        ready = select.select([report_r], [], [], deadline)[0]
        if not ready:
            os.kill(keeper, signal.SIGKILL)
            overflow = True
            break
        chunk = os.read(report_r, 1 << 16)
        if not chunk:
            break
        size += len(chunk)
        if size > REPORT_CAP:
            overflow = True
        else:
            chunks.append(chunk)
    os.close(report_r)
    _, wait_status = os.waitpid(keeper, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    status = {EXIT_OK: "ok", EXIT_TIMEOUT: "timeout", EXIT_SETUP: "setup"}.get(code, "failed")
    return {"status": status, "overflow": overflow,
            "reports": b"".join(chunks).decode("utf-8", "replace")}


def main():
    requests = os.fdopen(0, "r", encoding="utf-8")
    answers = os.fdopen(1, "w", encoding="utf-8")
    answers.write(json.dumps({"ready": 1}) + "\n")
    answers.flush()
    for line in requests:
        answers.write(json.dumps(run_one(json.loads(line))) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
