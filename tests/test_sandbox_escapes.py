"""Every escape that got through the old audit-hook sandbox (issue 11), observed from outside.

Each test runs an attack as the candidate and checks its effect from this process: the file
outside did not appear, the listener got no connection, the parent is alive, no process is
left. Each one succeeded against the audit hook. They need bubblewrap (`make test` installs it)
and fail, never skip, without it.
"""

import os
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path

import ptm_core
from ptm_core.evals.sandbox import run_tests

ROOT = Path(ptm_core.__file__).resolve().parent.parent

# Clears the old hook's refusal sets through the candidate's own frames; harmless elsewhere.
TAMPER = """
import sys
_f = sys._getframe(0)
while _f is not None:
    for _name in ("blocked", "path_events"):
        if isinstance(_f.f_locals.get(_name), set):
            _f.f_locals[_name].clear()
    _f = _f.f_back
"""


def attempt(*lines: str) -> str:
    """Candidate code that tries each statement and carries on when one fails."""
    body = "".join(f"try:\n    {line}\nexcept BaseException:\n    pass\n" for line in lines)
    return TAMPER + "import os, sys, time\n" + body


def test_shell_after_tampering_with_the_hook(tmp_path):
    marker = tmp_path / "system"
    assert not run_tests(attempt(f"os.system('touch {marker}')",
                                 f"import subprocess; subprocess.run(['touch', '{marker}'])"),
                         "assert False")
    assert not marker.exists()


def test_posixsubprocess_fork_exec(tmp_path):
    marker = tmp_path / "fork_exec"
    code = attempt(
        "import _posixsubprocess; r, w = os.pipe(); _posixsubprocess.fork_exec("
        f"[b'/bin/sh', b'-c', b'touch {marker}'], [b'/bin/sh'], True, (w,), None, None,"
        " -1, -1, -1, -1, -1, -1, r, w, True, False, -1, None, None, None, -1, None, False)",
        "time.sleep(1)")
    run_tests(code, "")
    assert not marker.exists()


def test_libc_system_through_cffi_and_ctypes(tmp_path):
    marker = tmp_path / "libc"
    sites = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                    *sys.path[1:]})
    code = attempt(f"sys.path[:0] = {sites!r}",
                   "from cffi import FFI; ffi = FFI(); ffi.cdef('int system(const char *);');"
                   f" ffi.dlopen(None).system(b'touch {marker}')",
                   f"import ctypes; ctypes.CDLL(None).system(b'touch {marker}')")
    run_tests(code, "")
    assert not marker.exists()


def test_no_file_appears_or_changes_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    existing = outside / "existing"
    existing.write_text("x")
    before = existing.stat().st_mtime_ns
    code = attempt(
        "open('inside', 'w').write('x')",
        f"fd = os.open({str(outside)!r}, os.O_RDONLY); "
        "os.close(os.open('dirfd', os.O_CREAT | os.O_WRONLY, dir_fd=fd))",
        f"os.symlink('/etc/hostname', {str(outside / 'symlink')!r})",
        f"os.link('inside', {str(outside / 'hardlink')!r})",
        f"import sqlite3; sqlite3.connect({str(outside / 'db')!r}).execute('create table t(x)')",
        f"os.mkfifo({str(outside / 'fifo')!r})",
        f"os.utime({str(existing)!r}, (0, 0))")
    run_tests(code, "")
    assert sorted(p.name for p in outside.iterdir()) == ["existing"]
    assert existing.stat().st_mtime_ns == before


def _named(name: str) -> int:
    """How many processes on this machine carry `name` (any namespace)."""
    count = 0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            count += comm.read_text().strip() == name
        except OSError:
            pass
    return count


class Watch(threading.Thread):
    """The most processes named `name` seen at once while a run is in progress."""

    def __init__(self, name: str):
        super().__init__(daemon=True)
        self.name_, self.most, self.stop = name, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.most = max(self.most, _named(self.name_))
            time.sleep(0.02)


def naming(name: str) -> tuple[str, ...]:
    return (f"open('/proc/self/comm', 'w').write({name!r})",
            f"import ctypes; ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)")


def test_a_child_in_its_own_session_dies_with_the_run():
    name = "ptm" + uuid.uuid4().hex[:8]
    code = attempt(*naming(name),
                   "pid = os.fork()\n    if pid == 0:\n        os.setsid()\n"
                   "        if os.fork() == 0:\n            time.sleep(20)\n        os._exit(0)",
                   "time.sleep(20)")
    watch = Watch(name)
    watch.start()
    assert not run_tests(code, "", timeout_s=2.0)
    watch.stop.set()
    watch.join()
    assert watch.most >= 2  # the candidate and its detached grandchild did run, named
    assert _named(name) == 0


def test_fork_bomb_is_bounded_and_cleaned_up():
    name = "ptm" + uuid.uuid4().hex[:8]
    code = attempt(*naming(name),
                   "for _ in range(200):\n        try:\n            if os.fork() == 0:\n"
                   "                time.sleep(20)\n                os._exit(0)\n"
                   "        except OSError:\n            pass",
                   "time.sleep(20)")
    watch = Watch(name)
    watch.start()
    start = time.monotonic()
    assert not run_tests(code, "", timeout_s=2.0)
    watch.stop.set()
    watch.join()
    assert time.monotonic() - start < 15
    assert 1 <= watch.most <= 64
    assert _named(name) == 0


def test_the_parent_cannot_be_signalled():
    code = attempt("import signal; signal.pidfd_send_signal(os.pidfd_open(os.getppid()), "
                   "signal.SIGUSR1)", "import signal; os.kill(os.getppid(), signal.SIGUSR1)")
    script = ("import sys\nfrom ptm_core.evals.sandbox import run_tests\n"
              "print('verdict', run_tests(sys.argv[1], ''))\n")
    done = subprocess.run([sys.executable, "-c", script, code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "verdict" in done.stdout


def test_builtins_early_exit_and_forged_reports_do_not_pass():
    wrong = "def add(a, b):\n    return a - b\n"
    tests = "assert add(2, 2) == 4\n"
    forge = ("import json\n"
             "_f = sys._getframe(0)\nwhile _f is not None:\n"
             "    _l = _f.f_locals\n"
             "    if 'token' in _l and 'result_fd' in _l:\n"
             "        os.write(_l['result_fd'], _l['token'].encode())\n"
             "    _f = _f.f_back\n"
             "for fd in range(3, 64):\n"
             "    for i in range(4):\n"
             "        try:\n"
             "            os.write(fd, (json.dumps({'p': i, 'v': '0'}) + chr(10)).encode())\n"
             "            os.write(fd, b'{\"done\": 1}' + bytes([10]))\n"
             "        except OSError:\n"
             "            pass\n")
    cases = [
        wrong + "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
        TAMPER + "import os, sys\n" + forge + "os._exit(0)\n",
        "class Same:\n    __eq__ = lambda self, other: True\n"
        "def add(a, b):\n    return Same()\n",
        "class Int(int):\n    __eq__ = lambda self, other: True\n"
        "def add(a, b):\n    return Int(0)\n",
    ]
    for code in cases:
        assert not run_tests(code, tests), code


def test_expected_values_never_enter_the_sandbox():
    secret = 987654321
    spy = ("import gc, sys\n"
           "def holds(values, target):\n"
           "    return any(isinstance(v, str) and target in v for v in list(values))\n"
           "def spy(target):\n"
           "    if any(holds(o.values(), target) for o in gc.get_objects()\n"
           "           if isinstance(o, dict) and o is not globals()):\n"
           "        return True\n"
           "    frame = sys._getframe(2)\n"
           "    while frame is not None:\n"
           "        if holds(frame.f_locals.values(), target):\n"
           "            return True\n"
           "        frame = frame.f_back\n"
           "    return False\n"
           # the candidate's own text must not hold the secret
           f"SEEN = spy(str({secret - 1} + 1))\n"
           f"def answer(x):\n    return {secret - 1} + 1 if SEEN else 0\n")
    assert not run_tests(spy, f"assert answer(1) == {secret}\n")


def test_the_project_and_the_venv_are_not_importable():
    sites = sorted({str(ROOT), sysconfig.get_paths()["purelib"], *sys.path[1:]})
    code = (f"import sys, importlib.util\nsys.path[:0] = {sites!r}\n"
            "found = [n for n in ('ptm_core', 'torch', 'numpy', 'cffi')\n"
            "         if importlib.util.find_spec(n) is not None]\n")
    assert run_tests(code, "assert found == []\n")


def test_host_files_are_not_readable(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    home = Path(os.path.expanduser("~"))
    interpreter = Path(os.path.realpath(sys.executable))
    # the sandbox may show the directories leading to the interpreter, nothing else of home
    allowed = {interpreter.relative_to(home).parts[0]} if home in interpreter.parents else set()
    paths = [str(ROOT / "README.md"), str(Path(ptm_core.__file__).resolve()), str(secret),
             "/etc/passwd", "/etc/hostname", str(home / ".bashrc")]
    code = ("import os\n"
            "def readable(p):\n    try:\n        open(p, 'rb').close()\n        return True\n"
            "    except OSError:\n        return False\n"
            f"seen = [p for p in {paths!r} if readable(p)]\n"
            f"listed = set(os.listdir({str(home)!r})) if os.path.isdir({str(home)!r}) else set()\n")
    assert run_tests(code, f"assert seen == []\nassert listed <= {allowed!r}\n"
                     if allowed else "assert seen == []\nassert listed == set()\n")


def test_no_network_not_even_the_host_loopback_or_its_unix_sockets(tmp_path):
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    unix = socket.socket(socket.AF_UNIX)
    unix_path = str(tmp_path / "s.sock")
    unix.bind(unix_path)
    unix.listen(8)
    code = attempt(f"socket_ = __import__('socket'); socket_.create_connection(('127.0.0.1', "
                   f"{tcp.getsockname()[1]}), timeout=1)",
                   "u = __import__('socket').socket(1); u.settimeout(1); "
                   f"u.connect({unix_path!r})")
    run_tests(code, "")
    for listener in (tcp, unix):
        listener.setblocking(False)
        try:
            conn, _ = listener.accept()
            conn.close()
            raise AssertionError(f"the sandbox reached {listener.getsockname()}")
        except BlockingIOError:
            pass
        finally:
            listener.close()


def test_memory_bomb_is_bounded_whichever_way_it_allocates():
    code = attempt("import resource; resource.setrlimit(resource.RLIMIT_AS, "
                   "(resource.RLIM_INFINITY, resource.RLIM_INFINITY))") + (
        "held, fds = 0, []\n"
        "try:\n    held = len(bytearray(1 << 30))\nexcept MemoryError:\n    pass\n"
        "try:  # memfd pages are not address space\n"
        "    for _ in range(40):\n"
        "        fds.append(os.memfd_create('m'))\n"
        "        os.write(fds[-1], b'x' * (15 << 20))\n"
        "except (OSError, MemoryError):\n    pass\n"
        "held += len(fds) * (15 << 20)\n"
        "try:  # SysV shared memory outlives shmdt; a user namespace could mount its own tmpfs\n"
        "    import ctypes\n"
        "    libc = ctypes.CDLL(None)\n"
        "    held += (512 << 20) if libc.shmget(0, 512 << 20, 0o1600) >= 0 else 0\n"
        "    held += (1 << 40) if libc.unshare(0x10020000) == 0 else 0\n"
        "except Exception:\n    pass\n")
    assert run_tests(code, "assert held <= 268435456\n", memory_mb=256)
    assert run_tests("x = bytearray(100 << 20)", "assert len(x) == 104857600", memory_mb=256)


def test_file_size_and_disk_use_are_capped():
    code = attempt("import resource; resource.setrlimit(resource.RLIMIT_FSIZE, "
                   "(resource.RLIM_INFINITY, resource.RLIM_INFINITY))") + (
        "def fill(name, mib):\n"
        "    try:\n"
        "        with open(name, 'wb') as f:\n"
        "            for _ in range(mib):\n"
        "                f.write(b'x' * (1 << 20))\n"
        "                f.flush()\n"
        "    except OSError:\n"
        "        pass\n"
        "    return os.path.getsize(name)\n"
        "big = fill('big', 32)\n"
        "total = sum(fill(f'part{i}', 15) for i in range(6))\n")
    assert run_tests(code, "assert big <= 16777216\nassert big >= 1048576\n"
                           "assert total <= 67108864\n")


def test_preloads_of_this_process_do_not_open_the_venv(monkeypatch):
    """vLLM's import sets LD_PRELOAD to torch's libgomp and cv2's sets LD_LIBRARY_PATH into the
    venv; the sandbox's library list must come from the sandbox's own (empty) environment."""
    from ptm_core.evals import sandbox
    torch_lib = Path(sysconfig.get_paths()["purelib"]) / "torch" / "lib"
    preload = sorted(torch_lib.glob("libgomp*.so*")) or sorted(torch_lib.glob("*.so*"))
    monkeypatch.setenv("LD_PRELOAD", str(preload[0]) if preload else "")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{torch_lib}:{sysconfig.get_paths()['purelib']}")
    sandbox._filesystem.cache_clear()
    try:
        binds = sandbox._filesystem()
        inside = [b for b in binds if b.startswith(str(ROOT)) or b.startswith(sys.prefix + os.sep)]
        assert inside == [] or os.path.realpath(sys.prefix) == os.path.realpath(sys.base_prefix)
        test_the_project_and_the_venv_are_not_importable()
    finally:
        sandbox._filesystem.cache_clear()
