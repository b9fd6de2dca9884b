"""A long credential reaches the app, through a real gunicorn, and gets the app's JSON 401.

gunicorn's own default (8190 bytes a header line) turned a credential of about 8 KB away with
its plain 431, which the mobile app cannot read as a sign-in failure. Up to 16 KB gets the app's
answer; a header line over gunicorn's limit is still refused by gunicorn itself.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gunicorn_server import Server, migrated_sqlite_database, running_gunicorn

CREDENTIAL = 16 * 1024
PREFIX = b"Authorization: Bearer "


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The default configuration; SQLite: no database is reached before a bad token's 401.
    directory: Path = tmp_path_factory.mktemp("headers")
    with running_gunicorn(migrated_sqlite_database(directory), directory / "log") as running:
        yield running


def exchange(server: Server, *header_lines: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one GET /api/auth/session with these header lines; (status, headers, body)."""
    request = b"GET /api/auth/session HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    request += b"".join(line + b"\r\n" for line in header_lines) + b"\r\n"
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def bearer(length: int) -> bytes:
    return PREFIX + b"a" * length


@pytest.mark.parametrize("length", [8 * 1024, 12 * 1024, CREDENTIAL])
def test_a_credential_up_to_16_kb_gets_the_apps_json_401(server: Server, length: int) -> None:
    status, headers, body = exchange(server, bearer(length))

    assert status == 401, body[:200]
    assert headers["content-type"] == "application/json"
    assert headers["www-authenticate"].startswith('Bearer realm="mita"')
    assert b'"invalid_token"' in body


def test_a_16_kb_credential_in_a_cookie_beside_others_reaches_the_app_too(server: Server) -> None:
    cookie = b"Cookie: theme=dark; better-auth.session_token=" + b"b" * CREDENTIAL
    status, headers, _ = exchange(server, cookie, bearer(100))

    assert status == 401
    assert headers["content-type"] == "application/json"


def test_a_header_line_over_gunicorns_limit_is_still_refused_by_gunicorn(server: Server) -> None:
    status, headers, body = exchange(server, bearer(64 * 1024))

    assert status == 431
    assert headers.get("content-type") != "application/json"  # gunicorn's own answer
    assert b"invalid_token" not in body


LIMIT = 20480  # gunicorn.conf.py's default limit_request_field_size: a header line, CRLF included


def test_the_default_limit_is_a_header_line_of_20_kb(server: Server) -> None:
    fits = bearer(LIMIT - len(PREFIX) - 2)
    assert exchange(server, fits)[0] == 401
    assert exchange(server, fits + b"a")[0] == 431


def test_the_limit_is_read_from_the_environment(tmp_path: Path) -> None:
    env = {"GUNICORN_LIMIT_REQUEST_FIELD_SIZE": "4096", "WEB_CONCURRENCY": "1"}
    with running_gunicorn(migrated_sqlite_database(tmp_path), tmp_path / "log", env=env) as low:
        assert exchange(low, bearer(4000))[0] == 401
        assert exchange(low, bearer(5000))[0] == 431
