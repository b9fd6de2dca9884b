"""The app served by a real gunicorn master with two workers, spoken to over real HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import FAST_HASH, NO_POSTGRES, PASSWORD, TEST_SECRET, scratch_database

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKERS = 2


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(database_url):
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": database_url,
        "WEB_CONCURRENCY": str(WORKERS),
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "DB_POOL_TIMEOUT": "2",
    }


def upgrade(database_url):
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
    process: subprocess.Popen
    base_url: str
    port: int
    log_path: Path

    def log(self):
        return self.log_path.read_text(errors="replace")

    def url(self, path):
        return self.base_url + path


def wait_until_serving(server, deadline_seconds=20):
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"gunicorn exited early:\n{server.log()}")
        try:
            response = requests.get(server.url("/health"), timeout=2)
        except requests.RequestException:
            # Refused before the master binds; read timeout while no worker accepts yet.
            time.sleep(0.05)
            continue
        if response.status_code == 200:
            return
    raise AssertionError(f"gunicorn did not serve /health in time:\n{server.log()}")


@contextlib.contextmanager
def running_gunicorn(database_url, log_path):
    """A gunicorn master on a free loopback port; killed with its workers whatever happens."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "-c",
        "gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "wsgi:app",
    ]
    with open(log_path, "wb") as log:
        # Its own process group, so that the cleanup below reaches the workers too.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env(database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", port, log_path)
    try:
        wait_until_serving(server)
        yield server
    finally:
        stop(process)


def stop(process):
    """SIGTERM the master; if it is not gone in a few seconds, SIGKILL its whole group."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        # Not reaped yet, so the group id still belongs to this master and its workers.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def migrated_sqlite_database(directory):
    url = f"sqlite:///{directory}/mita.db"
    upgrade(url)
    return url


@contextlib.contextmanager
def migrated_postgres_database(base_url):
    """A database of its own, migrated with `flask db upgrade`, dropped afterwards."""
    with scratch_database(base_url, "mita_gunicorn") as url:
        upgrade(url)
        yield url


@contextlib.contextmanager
def served(backend, postgres_url, directory):
    """gunicorn on a freshly migrated database of the given backend."""
    if backend == "sqlite":
        with running_gunicorn(migrated_sqlite_database(directory), directory / "log") as server:
            yield server
        return
    if postgres_url is None:
        pytest.skip(NO_POSTGRES)
    with (
        migrated_postgres_database(postgres_url) as url,
        running_gunicorn(url, directory / "log") as server,
    ):
        yield server


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, postgres_url, tmp_path_factory):
    """One server per backend, shared by the tests of this module that leave it running."""
    with served(request.param, postgres_url, tmp_path_factory.mktemp("gunicorn")) as running:
        yield running


@pytest.fixture(params=BACKENDS)
def server_to_stop(request, postgres_url, tmp_path_factory):
    with served(request.param, postgres_url, tmp_path_factory.mktemp("gunicorn")) as running:
        yield running


def raw_exchange(port, payload):
    """Send raw bytes and read until the server closes the connection (bounded by timeouts)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(payload)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def status_of(raw_response):
    return int(raw_response.split(b" ", 2)[1])


def access_entries(server):
    """The access log's JSON lines, parsed."""
    entries = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def session_requests_by_worker(server):
    return {e["pid"] for e in access_entries(server) if e["path"] == "/api/auth/session"}


def test_gunicorn_serves_health_registration_and_authenticated_requests(server):
    assert requests.get(server.url("/health"), timeout=5).status_code == 200

    email = f"served-{uuid.uuid4().hex[:8]}@example.com"
    registered = requests.post(
        server.url("/api/auth/register"), json={"email": email, "password": PASSWORD}, timeout=5
    )
    assert registered.status_code == 201, registered.text
    bearer = {"Authorization": f"Bearer {registered.json()['data']['access_token']}"}

    def session():
        return requests.get(server.url("/api/auth/session"), headers=bearer, timeout=5)

    # Concurrent batches until both workers have answered (the token is valid in each).
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(25):
            responses = list(pool.map(lambda _: session(), range(4)))
            assert [r.status_code for r in responses] == [200] * 4
            assert {r.json()["data"]["user_id"] for r in responses} == {
                registered.json()["data"]["user"]["id"]
            }
            if len(session_requests_by_worker(server)) == WORKERS:
                break
            time.sleep(0.02)
    assert len(session_requests_by_worker(server)) == WORKERS, server.log()

    logged_in = requests.post(
        server.url("/api/auth/login"), json={"email": email, "password": PASSWORD}, timeout=5
    )
    assert logged_in.status_code == 200


def test_gunicorn_answers_a_garbage_bearer_with_401_and_a_challenge(server):
    response = requests.get(
        server.url("/api/auth/session"), headers={"Authorization": "Bearer garbage"}, timeout=5
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="mita"')
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_gunicorn_rejects_an_oversized_request_line_without_hanging(server):
    started = time.monotonic()
    raw = raw_exchange(
        server.port, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert status_of(raw) in (400, 414)
    assert time.monotonic() - started < 5


def test_gunicorn_rejects_an_oversized_header_with_431(server):
    started = time.monotonic()
    raw = raw_exchange(
        server.port,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    )
    assert status_of(raw) == 431
    assert time.monotonic() - started < 5


def test_gunicorn_rejects_too_many_headers_with_431(server):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    raw = raw_exchange(
        server.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n"
    )
    assert status_of(raw) == 431


def test_gunicorn_master_stops_cleanly_on_sigterm(server_to_stop):
    server = server_to_stop
    assert requests.get(server.url("/health"), timeout=5).status_code == 200
    started = time.monotonic()
    os.kill(server.process.pid, signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url("/health"), timeout=1)
    assert "Traceback" not in server.log()


def test_access_log_is_one_json_object_a_line_with_request_id_and_latency(server):
    hostile = 'x" \\n{"forged": true}'
    response = requests.get(
        server.url("/health"), headers={"X-Request-ID": "trace-7", "User-Agent": hostile}, timeout=5
    )
    assert response.status_code == 200

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        mine = [e for e in access_entries(server) if e["request_id"] == "trace-7"]
        if mine:
            break
        time.sleep(0.05)
    assert len(mine) == 1, server.log()
    entry = mine[0]
    assert entry["method"] == "GET"
    assert entry["path"] == "/health"
    assert entry["status"] == 200
    assert entry["user_agent"] == hostile
    assert isinstance(entry["duration_ms"], float)
    assert entry["duration_ms"] >= 0
    assert not any("forged" in e for e in access_entries(server))
