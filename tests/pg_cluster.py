"""A PostgreSQL server the test owns: a throwaway cluster it can stop and restart at will.

The shared server of TEST_DATABASE_URL must never be stopped by a test, so tests that need the
database to go away (and come back) get a cluster of their own, on a free port of 127.0.0.1,
in a temporary directory that is removed afterwards. Use the `pg_cluster` fixture (import it into
the test module) or the `temporary_cluster()` context manager.

initdb refuses to run as root, so as root every server command runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from glob import glob
from pathlib import Path

import pytest

from tests.conftest import free_port, pg_connect

COMMAND_TIMEOUT = 120  # seconds; initdb is the slow one, and pg_ctl waits at most PG_CTL_WAIT
PG_CTL_WAIT = 30
SERVER_USER = "postgres"


def _has_server_binaries(bindir: str | os.PathLike[str]) -> bool:
    return all(os.access(Path(bindir, name), os.X_OK) for name in ("initdb", "pg_ctl"))


def _version_key(bindir: str) -> tuple[int, ...]:
    version = Path(bindir).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_bindir() -> str | None:
    """The directory of initdb and pg_ctl: pg_config's, else the newest Debian-style one."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            found = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
        # pg_config also ships with the client library alone, without a server next to it.
        if found and _has_server_binaries(found):
            return found
    candidates = [d for d in glob("/usr/lib/postgresql/*/bin") if _has_server_binaries(d)]
    return max(candidates, key=_version_key) if candidates else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PostgresCluster:
    """One initdb'd data directory and the server running on it (at most one at a time)."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700, so the postgres user could not
        # reach it, and its long paths would not fit a Unix socket's 107 characters either.
        self.root = Path(tempfile.mkdtemp(prefix="mita-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if self.as_root:
            server_user = pwd.getpwnam(SERVER_USER)
            try:
                # mkdtemp made it 0700 for root; /tmp itself is world-traversable.
                os.chown(self.root, server_user.pw_uid, server_user.pw_gid)
            except OSError:
                shutil.rmtree(self.root, ignore_errors=True)
                raise

    def new_database(self, prefix: str) -> str:
        """The URL of a new, empty database of this cluster (it goes with the cluster)."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        admin = pg_connect(self.url)
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            admin.close()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(self.bindir, args[0])), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        # cwd: the postgres user may not be allowed into the caller's directory.
        # stdin/out/err never inherited: a server holding the test's pipes would hang it.
        return subprocess.run(
            command,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            raise RuntimeError(
                f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                f"server log:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def initdb(self) -> None:
        result = self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            # The C locale exists everywhere; the environment's locale may not be installed.
            "--locale=C",
        )
        self._check(result, "initdb")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            str(PG_CTL_WAIT),
            "-o",
            options,
            "start",
        )
        self._check(result, "pg_ctl start")

    def postmaster_pid(self) -> int | None:
        """The running server's PID, from its own postmaster.pid (never looked up by name)."""
        try:
            first_line = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first_line)
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _pid_alive(pid)

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in an outage; waits until it is down."""
        pid = self.postmaster_pid()
        try:
            result = self._run(
                "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", str(PG_CTL_WAIT), "stop"
            )
        except subprocess.TimeoutExpired:
            result = None
        if result is not None and result.returncode == 0:
            return
        if pid is not None and self._kill(pid):
            return
        if result is not None:
            self._check(result, "pg_ctl stop")
        raise RuntimeError(f"PostgreSQL server {pid} did not stop:\n{self.log_tail()}")

    def backends(self, postmaster: int) -> list[int]:
        """Every process the server started (its backends), from the process table."""
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(postmaster)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        return [int(pid) for pid in children]

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Down (a fast shutdown) while the block runs, then up again."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Every process of the server stopped with SIGSTOP while the block runs: connections
        stay open and nothing answers, as on a host that hangs."""
        postmaster = self.postmaster_pid()
        assert postmaster is not None, "the server is not running"
        os.kill(postmaster, signal.SIGSTOP)  # first: it starts no backend after the listing
        pids = [postmaster, *self.backends(postmaster)]
        for pid in pids[1:]:
            with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def _kill(self, pid: int) -> bool:
        """Last resort when pg_ctl could not stop it: immediate shutdown, then SIGKILL."""
        for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return True
                time.sleep(0.05)
        return not _pid_alive(pid)

    def destroy(self) -> None:
        """Stop the server if it runs, and remove every file of the cluster."""
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def temporary_cluster() -> Iterator[PostgresCluster]:
    """A running cluster, stopped and removed at the end whatever happened (skips without one)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: no `pg_config --bindir` "
            "and no /usr/lib/postgresql/*/bin"
        )
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("PostgreSQL cluster as root needs `runuser` to drop to the postgres user")
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.skip("PostgreSQL cluster as root needs a `postgres` user to run the server")
    cluster = PostgresCluster(bindir)
    try:
        cluster.initdb()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One temporary cluster per test module; tests may stop it (see `running_cluster`)."""
    with temporary_cluster() as cluster:
        yield cluster
