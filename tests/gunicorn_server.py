"""A real gunicorn master serving the app on a free loopback port, for tests that speak HTTP.

The master runs in a session of its own, so the group it leads holds only it and its workers:
`stop` signals it by PID and, if it does not go, kills that group and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.conftest import FAST_HASH, TEST_SECRET, free_port, scratch_database

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKERS = 2
HOST = "127.0.0.1"


def server_env(database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of the server: nothing leaks in from the test process's own."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": database_url,
        "WEB_CONCURRENCY": str(WORKERS),
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "DB_POOL_TIMEOUT": "2",
        **(extra or {}),
    }


def upgrade(database_url: str) -> None:
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=server_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        """The master's."""
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, path: str) -> str:
        return self.base_url + path


def wait_until_serving(server: Server, deadline_seconds: float = 20) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"gunicorn exited early:\n{server.log()}")
        try:
            # Closed at once, not kept alive until the garbage collector gets to it: a stopping
            # worker lingers on a kept-alive connection (gunicorn's 2 s) before it exits.
            response = requests.get(
                server.url("/health"), timeout=2, headers={"Connection": "close"}
            )
        except requests.RequestException:
            # Refused before the master binds; read timeout while no worker accepts yet.
            time.sleep(0.05)
            continue
        if response.status_code == 200:
            return
    raise AssertionError(f"gunicorn did not serve /health in time:\n{server.log()}")


@contextlib.contextmanager
def running_gunicorn(
    database_url: str,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    deadline_seconds: float = 20,
) -> Iterator[Server]:
    """A gunicorn master on a free loopback port, with `env` added to its environment and
    `args` to its command line; stopped with its workers whatever happens."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "-c",
        "gunicorn.conf.py",
        "--bind",
        f"{HOST}:{port}",
        *args,
        "wsgi:app",
    ]
    environment = server_env(database_url, env)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://{HOST}:{port}", port, log_path)
    try:
        wait_until_serving(server, deadline_seconds)
        wait_for_workers(server, _worker_count(environment, args), deadline_seconds)
        yield server
    finally:
        stop(process)


def _worker_count(environment: Mapping[str, str], args: Sequence[str]) -> int:
    for flag in ("-w", "--workers"):
        if flag in args:
            return int(args[list(args).index(flag) + 1])
    return int(environment["WEB_CONCURRENCY"])


def wait_for_workers(server: Server, count: int, deadline_seconds: float = 20) -> None:
    """Until the master has forked all `count` workers: with the app preloaded, the first one
    serves before the master has forked the next (it spawns them 0-0.1 s apart)."""
    deadline = time.monotonic() + deadline_seconds
    while len(children_of(server.pid)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} workers in time:\n{server.log()}")
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """SIGTERM the master; if it is not gone within `timeout` s, SIGKILL its whole group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Not reaped yet, so the group id still belongs to this master and its workers.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # A master that died without reaping leaves its workers behind. Their group id is still
    # the master's PID, which the kernel does not hand out again while the group has members.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def migrated_sqlite_database(directory: Path) -> str:
    url = f"sqlite:///{directory}/mita.db"
    upgrade(url)
    return url


@contextlib.contextmanager
def migrated_postgres_database(base_url: str) -> Iterator[str]:
    """A database of its own, migrated with `flask db upgrade`, dropped afterwards."""
    with scratch_database(base_url, "mita_gunicorn") as url:
        upgrade(url)
        yield url


def access_entries(server: Server) -> list[dict[str, Any]]:
    """The access log's JSON lines, parsed (not the audit writer's spilled events, also JSON)."""
    entries = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if "audit_spill" not in entry:
                entries.append(entry)
    return entries


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is `pid` (scanning /proc, which every kernel has)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone while we looked
            continue
        # The command name may hold spaces and parentheses: the fields follow its last ")".
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads: line for pid {pid}")


def holders(condition: str) -> list[int]:
    """The PIDs holding the established TCP connections that match `ss`'s filter `condition`
    ("sport = :8000"), one for each connection."""
    done = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( {condition} )"],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return [int(pid) for pid in re.findall(r"pid=(\d+)", done.stdout)]


def connections_per_worker(port: int, master: int) -> dict[int, int]:
    """The established client connections each worker of the gunicorn `master` listening on
    `port` holds (0 for one holding none): a threaded worker keeps each kept-alive connection
    it accepted."""
    held = holders(f"sport = :{port}")
    return {pid: held.count(pid) for pid in children_of(master)}
