"""A database that is unreachable, saturated or slow gets a fast 503, never a hang or a 401.

A 401 logs the mobile user out, so a dependency failure must never look like bad credentials.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from mita_app.extensions import db
from tests.conftest import PASSWORD, TEST_SECRET, build_app, dispose, free_port, pg_connect


def forged_access_token(app):
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
        "iss": app.config["JWT_ISSUER"],
        "aud": app.config["JWT_AUDIENCE"],
        "type": "access",
    }
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def deadline(app):
    """How long a request may take when the database is in trouble: DB_POOL_TIMEOUT + 1 s."""
    return app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_timeout"] + 1


def assert_unavailable(response, app):
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"] == str(app.config["RETRY_AFTER"])
    assert "WWW-Authenticate" not in response.headers


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.fixture(params=["postgresql-nothing-listening", "sqlite-missing-directory"])
def unreachable_app(request, tmp_path):
    if request.param == "postgresql-nothing-listening":
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/mita"
    else:
        url = f"sqlite:///{tmp_path}/no-such-directory/mita.db"
    app = build_app(url, create_schema=False, DB_POOL_TIMEOUT="1", DB_CONNECT_TIMEOUT="1")
    yield app
    dispose(app)


def test_protected_endpoint_answers_503_not_401_when_the_database_is_unreachable(
    unreachable_app,
):
    client = unreachable_app.test_client()
    headers = {"Authorization": f"Bearer {forged_access_token(unreachable_app)}"}
    response, elapsed = timed(lambda: client.get("/api/auth/session", headers=headers))
    assert_unavailable(response, unreachable_app)
    assert elapsed < deadline(unreachable_app)


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/register"])
def test_login_and_register_answer_503_when_the_database_is_unreachable(unreachable_app, path):
    client = unreachable_app.test_client()
    body = {"email": "someone@example.com", "password": PASSWORD}
    response, elapsed = timed(lambda: client.post(path, json=body))
    assert_unavailable(response, unreachable_app)
    assert elapsed < deadline(unreachable_app)


def test_ready_reports_the_failing_database_check_within_a_second(unreachable_app):
    client = unreachable_app.test_client()
    response, elapsed = timed(lambda: client.get("/ready"))
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["checks"]["database"]["ok"] is False
    assert body["error"]["checks"]["database"]["error"]
    assert "Retry-After" in response.headers
    assert elapsed < unreachable_app.config["READY_TIMEOUT"] + 0.5


def test_health_stays_200_when_the_database_is_unreachable(unreachable_app):
    response = unreachable_app.test_client().get("/health")
    assert response.status_code == 200
    assert response.get_json()["data"]["status"] == "ok"


def test_ready_answers_200_when_the_database_answers(client):
    response = client.get("/ready")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["status"] == "ok"
    assert data["checks"]["database"]["ok"] is True
    assert data["checks"]["database"]["breaker"]["state"] == "closed"
    assert data["checks"]["audit"]["ok"] is True


@contextmanager
def held_connection(app):
    """Check out a connection from the app's pool in another thread, until the block ends."""
    acquired = threading.Event()
    release = threading.Event()
    failures = []

    def hold():
        try:
            with app.app_context(), db.engine.connect():
                acquired.set()
                release.wait(timeout=30)
        except Exception as error:
            failures.append(error)
            acquired.set()

    holder = threading.Thread(target=hold, name="pool-holder")
    holder.start()
    try:
        assert acquired.wait(timeout=10)
        assert not failures
        yield
    finally:
        release.set()
        holder.join(timeout=10)
        assert not holder.is_alive()


@pytest.fixture
def one_connection_app(pg_url):
    app = build_app(
        pg_url, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", DB_POOL_TIMEOUT="1", AUTH_CACHE_TTL="0"
    )
    yield app
    dispose(app)


@pytest.mark.postgres
def test_exhausted_pool_gets_503_within_the_pool_timeout_and_recovers(one_connection_app):
    app = one_connection_app
    client = app.test_client()
    email = "pool@example.com"
    registered = client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201
    headers = {"Authorization": f"Bearer {registered.get_json()['data']['access_token']}"}

    def protected():
        return client.get("/api/auth/session", headers=headers)

    def login():
        return client.post("/api/auth/login", json={"email": email, "password": PASSWORD})

    with held_connection(app):
        for call in (protected, login):
            response, elapsed = timed(call)
            assert_unavailable(response, app)
            assert elapsed < deadline(app)
        ready, elapsed = timed(lambda: client.get("/ready"))
        assert ready.status_code == 503
        assert ready.get_json()["error"]["checks"]["database"]["ok"] is False
        assert elapsed < 1.5

    assert protected().status_code == 200
    assert login().status_code == 200


@contextmanager
def users_table_locked(url):
    """Hold ACCESS EXCLUSIVE on `users` from another connection until the block ends."""
    connection = pg_connect(url, autocommit=False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        connection.rollback()
        connection.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("statement_timeout_ms", "lock_timeout_ms"),
    [(300, 5000), (5000, 300)],
    ids=["statement-timeout", "lock-timeout"],
)
def test_statement_blocked_by_a_lock_gets_503_within_the_server_timeout(
    pg_url, statement_timeout_ms, lock_timeout_ms
):
    app = build_app(
        pg_url,
        DB_STATEMENT_TIMEOUT_MS=str(statement_timeout_ms),
        DB_LOCK_TIMEOUT_MS=str(lock_timeout_ms),
        AUTH_CACHE_TTL="0",
    )
    try:
        client = app.test_client()
        email = "slow@example.com"
        body = {"email": email, "password": PASSWORD}
        registered = client.post("/api/auth/register", json=body)
        assert registered.status_code == 201
        headers = {"Authorization": f"Bearer {registered.get_json()['data']['access_token']}"}
        budget = min(statement_timeout_ms, lock_timeout_ms) / 1000 + 1

        with users_table_locked(pg_url):
            for call in (
                lambda: client.post("/api/auth/login", json=body),
                lambda: client.get("/api/auth/session", headers=headers),
                lambda: client.post("/api/auth/register", json={**body, "email": "x@example.com"}),
            ):
                response, elapsed = timed(call)
                assert_unavailable(response, app)
                assert elapsed < budget

        assert client.post("/api/auth/login", json=body).status_code == 200
    finally:
        dispose(app)


class FreezableRelay:
    """A TCP relay on 127.0.0.1 in front of PostgreSQL that can stop passing bytes on, like a
    database server that has frozen while its host still acknowledges packets."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.relaying = threading.Event()
        self.relaying.set()
        self.closed = threading.Event()
        self.sockets = []
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self.acceptor.start()

    def _spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, name="relay", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                self.sockets.append(sock)
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source, destination):
        try:
            while data := source.recv(65536):
                while not self.relaying.wait(0.05):
                    if self.closed.is_set():
                        return
                destination.sendall(data)
            destination.shutdown(socket.SHUT_WR)
        except OSError:
            return

    def freeze(self):
        self.relaying.clear()

    def thaw(self):
        self.relaying.set()

    def close(self):
        self.closed.set()
        self.relaying.set()
        self.acceptor.join(timeout=5)
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def relay(pg_url):
    parsed = make_url(pg_url)
    relay = FreezableRelay(parsed.host, parsed.port or 5432)
    yield relay
    relay.close()


def relayed_url(pg_url, relay):
    return make_url(pg_url).set(port=relay.port).render_as_string(hide_password=False)


@pytest.mark.postgres
def test_database_that_accepts_connections_but_never_answers_gets_503_within_the_deadline(
    pg_url, relay
):
    relay.freeze()
    app = build_app(
        relayed_url(pg_url, relay),
        create_schema=False,
        DB_POOL_TIMEOUT="2",
        DB_CONNECT_TIMEOUT="2",
        AUTH_CACHE_TTL="0",
    )
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {forged_access_token(app)}"}
        response, elapsed = timed(lambda: client.get("/api/auth/session", headers=headers))
        assert_unavailable(response, app)
        assert elapsed < deadline(app)
        ready, elapsed = timed(lambda: client.get("/ready"))
        assert ready.status_code == 503
        assert elapsed < app.config["READY_TIMEOUT"] + 0.5
    finally:
        relay.thaw()
        dispose(app)


@pytest.mark.postgres
def test_request_on_a_pooled_connection_to_a_frozen_server_gets_503_and_the_pool_recovers(
    pg_url, relay
):
    # The server-side statement_timeout cannot fire on a server that is not running; the
    # client-side deadline (statement timeout + 1 s by default) must. The pool's pre-ping
    # meets it first, and then tries one new connection, which the connect timeout bounds.
    app = build_app(
        relayed_url(pg_url, relay),
        DB_POOL_TIMEOUT="1",
        DB_CONNECT_TIMEOUT="1",
        DB_STATEMENT_TIMEOUT_MS="500",
        AUTH_CACHE_TTL="0",
    )
    budget = 1.5 + 1
    try:
        client = app.test_client()
        registered = client.post(
            "/api/auth/register", json={"email": "frozen@example.com", "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {registered.get_json()['data']['access_token']}"}
        assert client.get("/api/auth/session", headers=headers).status_code == 200

        relay.freeze()
        with ThreadPoolExecutor(max_workers=1) as pool:
            try:
                started = time.monotonic()
                future = pool.submit(lambda: client.get("/api/auth/session", headers=headers))
                done, _ = wait([future], timeout=budget + 1)
                assert future in done, "the request was still waiting for the database"
                assert_unavailable(future.result(), app)
                assert time.monotonic() - started < budget + 0.5
            finally:
                relay.thaw()

        # The broken connection was discarded: the next request gets a fresh one.
        assert client.get("/api/auth/session", headers=headers).status_code == 200
    finally:
        dispose(app)


@pytest.mark.postgres
def test_a_frozen_server_never_holds_a_query_past_the_client_timeout(pg_url, relay):
    app = build_app(
        relayed_url(pg_url, relay),
        create_schema=False,
        DB_STATEMENT_TIMEOUT_MS="300",
        DB_CLIENT_TIMEOUT_MS="800",
    )
    try:
        with app.app_context(), db.engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
            relay.freeze()
            with ThreadPoolExecutor(max_workers=1) as pool:
                started = time.monotonic()
                future = pool.submit(connection.execute, text("SELECT 2"))
                done, _ = wait([future], timeout=3)
                elapsed = time.monotonic() - started
                relay.thaw()  # releases the query if the deadline did not
                assert future in done, "the query was still waiting for the database"
            with pytest.raises(OperationalError, match=r"did not answer within 0\.8 s"):
                future.result()
            assert connection.invalidated
        assert 0.8 <= elapsed < 1.3
    finally:
        relay.thaw()
        dispose(app)


@pytest.mark.postgres
def test_a_slow_statement_is_cancelled_by_the_server_before_the_client_gives_up(pg_url):
    app = build_app(pg_url, create_schema=False, DB_STATEMENT_TIMEOUT_MS="300")
    try:
        with app.app_context(), db.engine.connect() as connection:
            with pytest.raises(OperationalError, match="statement timeout"):
                connection.execute(text("SELECT pg_sleep(2)"))
            # The server cancelled it and kept the connection: it is still usable.
            assert not connection.invalidated
            connection.rollback()
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        dispose(app)
