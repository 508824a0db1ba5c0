"""A throwaway PostgreSQL server from Debian's packages, on a free loopback port.

`initdb` refuses to run as root, so as root the cluster belongs to the `postgres` user the package
creates. The server is stopped by its process id when the test session ends.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def require_postgres() -> Path:
    """The server's bin directory; a failure under CI=true (never a skip), a skip elsewhere."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "PostgreSQL is not installed: `make system-deps` installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return bin_dir


@contextmanager
def postgres_server(port: int) -> Iterator[str]:
    """A fresh cluster listening on 127.0.0.1:`port`; yields its libpq connection string."""
    bin_dir = require_postgres()
    as_root = os.geteuid() == 0
    user = pwd.getpwnam("postgres") if as_root else pwd.getpwuid(os.geteuid())
    root = Path(tempfile.mkdtemp(prefix="stock-pipeline-pg-"))
    data = root / "data"
    if as_root:
        os.chown(root, user.pw_uid, user.pw_gid)

    def as_owner(*command: str, **kwargs) -> subprocess.Popen:
        prefix = ["runuser", "-u", user.pw_name, "--"] if as_root else []
        return subprocess.Popen([*prefix, *command], **kwargs)

    init = as_owner(
        str(bin_dir / "initdb"), "-D", str(data), "-U", user.pw_name, "--auth=trust",
        "--no-sync", "-E", "UTF8",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, init_errors = init.communicate(timeout=120)
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init_errors}")
    server = as_owner(
        str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
        "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
        "-c", "fsync=off", "-c", "max_connections=200",
        stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("w"),
    )  # fmt: skip
    dsn = f"host=127.0.0.1 port={port} user={user.pw_name} dbname=postgres"
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
        ).returncode:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.2)
        yield dsn
    finally:
        _stop(data / "postmaster.pid")
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _stop(pid_file: Path) -> None:
    """SIGINT (fast shutdown) to the postmaster named in its pid file, SIGKILL if it lingers.

    runuser stays in between as the parent, so the process we started is not the postmaster."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def create_database(dsn: str, name: str) -> str:
    """A new empty database on the server of `dsn`; its connection string."""
    bin_dir = require_postgres()
    subprocess.run(
        [str(bin_dir / "psql"), dsn, "-q", "-v", "ON_ERROR_STOP=1",
         "-c", f'create database "{name}"'],
        check=True, capture_output=True,
    )  # fmt: skip
    return dsn.replace("dbname=postgres", f"dbname={name}")
