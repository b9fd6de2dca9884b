"""Fixtures: an app on SQLite and, when TEST_DATABASE_URL is set, the same app on PostgreSQL.

Each test run creates its own PostgreSQL database (so concurrent runs never collide) and drops it
at the end. Set MITA_REQUIRE_POSTGRES=1 to turn a missing PostgreSQL into a failure (CI does).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from mita_app import budget as budget_service
from mita_app import create_app
from mita_app.audit import writer_of
from mita_app.config import normalize_database_url
from mita_app.extensions import db
from mita_app.models import AuditEvent

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
PASSWORD = "correct horse battery"
# Cheap hashing keeps the suite fast; production uses scrypt.
FAST_HASH = "pbkdf2:sha256:1000"
NO_POSTGRES = (
    "PostgreSQL tests need TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"
)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (until something binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pg_connect(url: str, *, autocommit: bool = True) -> Any:
    """A plain psycopg2 connection to the database a URL names (for setup and inspection)."""
    parsed = make_url(normalize_database_url(url))
    connection = psycopg2.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        connect_timeout=3,
    )
    connection.autocommit = autocommit
    return connection


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """An empty database of its own on the server `server_url` names, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = pg_connect(server_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(normalize_database_url(server_url)).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test run, or None when none is configured."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        if os.environ.get("MITA_REQUIRE_POSTGRES") == "1":
            pytest.fail("MITA_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        yield None
        return
    with scratch_database(base, "mita_test") as url:
        yield url


@pytest.fixture
def pg_url(postgres_url: str | None) -> str:
    """The run's PostgreSQL URL; skips (visibly) when there is none."""
    if postgres_url is None:
        pytest.skip(NO_POSTGRES)
    return postgres_url


def env_for(database_url: str, **overrides: str) -> dict[str, str]:
    return {
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": database_url,
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "RATELIMIT_ENABLED": "false",
        "DB_POOL_TIMEOUT": "2",
        **overrides,
    }


class ClosingClient(FlaskClient):
    """A test client that consumes and closes each response, as a WSGI server does, so that
    what the app does once a response is closed (handing audit events over) happens."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def build_app(database_url: str, *, create_schema: bool = True, **env: str) -> Flask:
    """An app configured only from the given environment (never the process's own)."""
    app = create_app({"TESTING": True}, env=env_for(database_url, **env))
    app.test_client_class = ClosingClient
    if create_schema:
        with app.app_context():
            db.drop_all()
            db.create_all()
    return app


def dispose(app: Flask) -> None:
    """Stop the app's audit writer and close its connections."""
    writer_of(app).stop(timeout=5)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mita.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def app_factory(database_url: str) -> Iterator[Callable[..., Flask]]:
    """Build more apps on the same database, e.g. to stand for another worker process."""
    apps: list[Flask] = []

    def factory(**env: str) -> Flask:
        app = build_app(database_url, create_schema=not apps, **env)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        dispose(app)


@pytest.fixture
def app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


class AuthActions:
    """Register and log in through the API, as the mobile client does."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def register(self, email: str | None = None, password: str = PASSWORD, **extra: Any) -> dict:
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        response = self.client.post(
            "/api/auth/register", json={"email": email, "password": password, **extra}
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()["data"]

    def login(self, email: str, password: str = PASSWORD) -> Any:
        return self.client.post("/api/auth/login", json={"email": email, "password": password})

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


class HandClock:
    """A monotonic clock that moves only when told: `clock.advance(seconds)`, or set `now`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def timed_get(client: FlaskClient, path: str, **kwargs: Any) -> tuple[Any, float]:
    """A GET with the test client, and the seconds it took."""
    started = time.perf_counter()
    response = client.get(path, **kwargs)
    return response, time.perf_counter() - started


@contextlib.contextmanager
def sql_statements(app: Flask) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements, with their parameters, this thread sends through the app's engine
    while the block runs."""
    seen: list[tuple[str, Any]] = []
    me = threading.get_ident()

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if threading.get_ident() == me:
            seen.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def budget_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Set the clock of budgets, days and the ledger (`mita_app.budget.utcnow`, their only
    one): `budget_clock(datetime)`, aware."""

    def set_to(instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("the clock takes an aware datetime")
        monkeypatch.setattr(budget_service, "utcnow", lambda: instant)

    return set_to


def events_of(app: Flask, event_type: str | None = None) -> list[dict[str, Any]]:
    """Every event written so far (after waiting for the writer), oldest first."""
    assert writer_of(app).flush(10), writer_of(app).snapshot()
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.created_at)
        if event_type is not None:
            query = query.where(AuditEvent.event_type == event_type)
        return [
            {column.name: getattr(row, column.name) for column in AuditEvent.__table__.columns}
            for row in db.session.scalars(query)
        ]
