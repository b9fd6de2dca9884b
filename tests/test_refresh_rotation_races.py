"""Concurrent refreshes of one refresh token on PostgreSQL, with the reuse grace on (its
default): every one of them gets the same new refresh token, and the user stays signed in.

Against a real gunicorn (threaded workers, several of them) and, to make the race genuine
(every request waits on the session's row before any of them decides), in one process behind a
lock another connection holds.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from mita_app.extensions import db
from mita_app.models import AuthSession
from tests.conftest import PASSWORD, build_app, dispose, events_of, pg_connect
from tests.gunicorn_server import access_entries, migrated_postgres_database, running_gunicorn
from tests.races import gated_race

pytestmark = pytest.mark.postgres

RUNS = 3  # races per N, each on the pair the one before left
LOCK_ROW = "SELECT id FROM auth_sessions WHERE id = %s::uuid FOR UPDATE"


def session_id_of(refresh_token: str) -> uuid.UUID:
    return uuid.UUID(hex=refresh_token.split(".")[0])


def one_refresh_token(results: list[tuple[int, dict]]) -> str:
    """The refresh token every answer carries; fails unless every answer is a 200 with it."""
    assert [status for status, _ in results] == [200] * len(results), results
    tokens = {body["data"]["refresh_token"] for _, body in results}
    assert len(tokens) == 1, tokens
    for _, body in results:
        assert body["refresh_token"] == body["data"]["refresh_token"]
    return tokens.pop()


# --- real gunicorn ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(postgres_url, tmp_path_factory):
    if postgres_url is None:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    env = {
        "WEB_CONCURRENCY": "3",
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_THREADS": "8",
        "RATELIMIT_ENABLED": "false",  # 24 refreshes from one address are the point here
    }
    log = tmp_path_factory.mktemp("refresh-races") / "gunicorn.log"
    with migrated_postgres_database(postgres_url) as url, running_gunicorn(url, log, env=env) as s:
        yield s, url


def concurrently(server, count: int, body: dict) -> list[tuple[int, dict]]:
    """POST `body` to refresh-token from `count` threads, each on a connection of its own,
    released together once every connection is open."""
    barrier = threading.Barrier(count, timeout=10)

    def send() -> tuple[int, dict]:
        with requests.Session() as http:
            http.get(server.url("/health"), timeout=10)  # connected before the barrier
            barrier.wait()
            response = http.post(server.url("/api/auth/refresh-token"), json=body, timeout=30)
            return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(send) for _ in range(count)]
        return [future.result(timeout=60) for future in futures]


def signed_in(server, access_token: str) -> bool:
    response = requests.get(
        server.url("/api/auth/session"),
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )
    return response.status_code == 200


@pytest.mark.parametrize("count", [2, 3, 24])
def test_concurrent_refreshes_on_gunicorn_all_get_one_working_pair_every_time(server, count):
    running, url = server
    email = f"gunicorn-race-{count}-{uuid.uuid4().hex[:8]}@example.com"
    registered = requests.post(
        running.url("/api/auth/register"), json={"email": email, "password": PASSWORD}, timeout=10
    )
    assert registered.status_code == 201, registered.text
    refresh_token = registered.json()["data"]["refresh_token"]
    session_id = session_id_of(refresh_token)

    for _ in range(RUNS):
        results = concurrently(running, count, {"refresh_token": refresh_token})
        refresh_token = one_refresh_token(results)
        # Whichever answer the app kept, its access token works.
        for _, body in results:
            assert signed_in(running, body["data"]["access_token"])

    with pg_connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT revoked_at, rotations FROM auth_sessions WHERE id = %s", (str(session_id),)
        )
        assert cursor.fetchone() == (None, RUNS)
    # And the pair the user is left with refreshes as ever.
    after = requests.post(
        running.url("/api/auth/refresh-token"), json={"refresh_token": refresh_token}, timeout=10
    )
    assert after.status_code == 200, after.text
    if count == 24:
        # By now the module's races have been spread over more than one worker process.
        pids = {e["pid"] for e in access_entries(running) if e["path"] == "/api/auth/refresh-token"}
        assert len(pids) >= 2, pids


# --- a genuine race in one process ----------------------------------------------------------------


@pytest.fixture
def pg_app(pg_url):
    app = build_app(pg_url)
    yield app
    dispose(app)


@pytest.mark.parametrize("threads", [3, 8])
def test_refreshes_that_all_wait_on_the_session_row_all_get_the_same_refresh_token(
    pg_app, pg_url, threads
):
    client = pg_app.test_client()
    registered = client.post(
        "/api/auth/register", json={"email": f"gated-{threads}@example.com", "password": PASSWORD}
    )
    refresh_token = registered.get_json()["data"]["refresh_token"]
    session_id = session_id_of(refresh_token)

    for _ in range(RUNS):
        presented = refresh_token
        results = gated_race(
            pg_app,
            pg_url,
            threads,
            lambda c, t=presented: c.post("/api/auth/refresh", json={"refresh_token": t}),
            LOCK_ROW,
            (str(session_id),),
        )
        refresh_token = one_refresh_token(results)

    with pg_app.app_context():
        row = db.session.get(AuthSession, session_id)
        assert (row.revoked_at, row.rotations) == (None, RUNS)
    refreshes = events_of(pg_app, "auth.refresh")
    assert len(refreshes) == RUNS * threads
    assert sum(bool(e["details"].get("within_grace")) for e in refreshes) == RUNS * (threads - 1)
    assert not events_of(pg_app, "auth.refresh.reuse_detected")
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": refresh_token}).status_code == 200
    )


def test_a_refresh_held_up_by_a_locked_session_row_is_503_and_changes_nothing(pg_url):
    app = build_app(pg_url, DB_LOCK_TIMEOUT_MS="300")
    try:
        client = app.test_client()
        registered = client.post(
            "/api/auth/register", json={"email": "locked@example.com", "password": PASSWORD}
        )
        refresh_token = registered.get_json()["data"]["refresh_token"]
        holder = pg_connect(pg_url, autocommit=False)
        try:
            with holder.cursor() as cursor:
                cursor.execute(LOCK_ROW, (str(session_id_of(refresh_token)),))
            started = time.monotonic()
            response = client.post("/api/auth/refresh", json={"refresh_token": refresh_token})
            elapsed = time.monotonic() - started
        finally:
            holder.rollback()
            holder.close()

        assert response.status_code == 503, response.get_json()
        assert response.get_json()["error"]["code"] == "service_unavailable"
        assert response.headers["Retry-After"] == str(app.config["RETRY_AFTER"])
        assert "WWW-Authenticate" not in response.headers
        assert elapsed < 0.3 + 2
        # The token was never rotated: the client's retry, once the row is free, just works.
        retried = client.post("/api/auth/refresh", json={"refresh_token": refresh_token})
        assert retried.status_code == 200, retried.get_json()
    finally:
        dispose(app)
