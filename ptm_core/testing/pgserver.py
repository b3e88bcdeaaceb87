"""A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries,
`initdb` into a temporary directory (as the `postgres` OS user when run as root: initdb refuses
root), `pg_ctl` on a free port bound to 127.0.0.1 only, its unix socket inside that directory.
`make postgres` installs the binaries.

initdb costs seconds of CPU (minutes on a loaded machine), so its output is made once per
PostgreSQL version under ~/.cache/ptm/ (or $XDG_CACHE_HOME/ptm/) and copied for each server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are (Debian keeps them out of PATH), or None."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):  # newest first
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return Path(d)
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PGServer:
    """`start()`, `url(db)`, `create_database()`, `restart()`, `stop()`."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="ptm-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, timeout: float = 600) -> None:
        subprocess.run([*self._as, *args], check=True, timeout=timeout, capture_output=True,
                       text=True, cwd=self.dir)

    def start(self) -> "PGServer":
        try:
            return self._start()
        except BaseException:  # leave no half-made server directory behind
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _start(self) -> "PGServer":
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
        shutil.copytree(self._template(), self.data, symlinks=True)
        if self._as:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.data)], check=True)
        os.chmod(self.data, 0o700)  # the server refuses a data directory others can read
        self._pg_ctl("start")
        return self

    def _template(self) -> Path:
        """A pristine initdb of this version (made once, renamed into place when complete)."""
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptm"
        version = (self.bindir.parent.name if self.bindir.parent.name[:1].isdigit()
                   else self.bindir.name)
        done = base / f"pg-initdb-{version}"
        if (done / "PG_VERSION").exists():
            return done
        base.mkdir(parents=True, exist_ok=True)
        work = self.dir / "initdb"  # where the postgres user can write (not under /root)
        self._run(str(self.bindir / "initdb"), "-D", str(work), "-U", "postgres",
                  "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        part = Path(tempfile.mkdtemp(prefix="pg-initdb-", dir=base)) / "data"
        shutil.copytree(work, part, symlinks=True)
        try:
            os.rename(part, done)
        except OSError:  # another session made it meanwhile
            pass
        shutil.rmtree(part.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        return done

    def _pg_ctl(self, action: str) -> None:
        # fsync off: a test server that loses its data on a power cut is fine
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100 -c shared_buffers=32MB")
        args = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "300"]
        if action in ("start", "restart"):
            args += ["-o", opts, "-l", str(self.dir / "server.log")]
        if action in ("stop", "restart"):
            args += ["-m", "fast"]
        self._run(*args, action)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self) -> None:
        """Stop (fast: every session is ended) and start again on the same port."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        try:
            self._pg_ctl("stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
