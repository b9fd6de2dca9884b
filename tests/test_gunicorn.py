"""The app served by a real gunicorn master with two workers, spoken to over real HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import NO_POSTGRES, PASSWORD
from tests.gunicorn_server import (
    WORKERS,
    access_entries,
    migrated_postgres_database,
    migrated_sqlite_database,
    running_gunicorn,
)


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
        # Over the 20 KB header line of gunicorn.conf.py (gunicorn's own default is 8190).
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 21000 + b"\r\n\r\n",
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
