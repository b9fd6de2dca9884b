"""Concurrent refreshes and registrations, with real threads against a real PostgreSQL.

To make a race genuine (every request reads the current state before any of them writes), a
separate connection holds a lock that every writer needs; once all of them are waiting on it,
it lets go. The ungated races line the threads up with a barrier and let the scheduler decide.
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy import event, func, select

from mita_app.extensions import db
from mita_app.models import AuthSession, User
from tests.conftest import PASSWORD, build_app, dispose
from tests.races import at_once, gated_race

RACES = 10


@pytest.fixture
def pg_app(pg_url):
    # Strict single use (no reuse grace): of concurrent refreshes exactly one wins and none
    # revokes. With the grace, every one of them gets the winner's refresh token: see
    # test_refresh_rotation_races.py.
    app = build_app(pg_url, REFRESH_REUSE_GRACE="0")
    yield app
    dispose(app)


def refresh(client, refresh_token):
    return client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


def login(client, email):
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def register(client, email):
    response = client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def statuses(results):
    return sorted(status for status, _ in results)


def winner(results):
    (body,) = [body for status, body in results if status == 200]
    return body["data"]


def session_row(app, session_id):
    with app.app_context():
        return db.session.get(AuthSession, uuid.UUID(session_id))


def session_id_of(refresh_token):
    return str(uuid.UUID(hex=refresh_token.split(".")[0]))


@pytest.mark.postgres
@pytest.mark.parametrize("threads", [2, 8])
def test_genuinely_concurrent_refreshes_have_one_winner_and_losers_do_not_revoke(
    pg_app, pg_url, threads
):
    client = pg_app.test_client()
    tokens = register(client, f"race-{threads}@example.com")
    session_id = session_id_of(tokens["refresh_token"])
    lock_row = "SELECT id FROM auth_sessions WHERE id = %s::uuid FOR UPDATE"

    for _ in range(RACES):
        presented = tokens["refresh_token"]
        results = gated_race(
            pg_app, pg_url, threads, lambda c, t=presented: refresh(c, t), lock_row, (session_id,)
        )
        assert statuses(results) == [200] + [401] * (threads - 1), results
        for status, body in results:
            if status == 401:
                assert body["error"]["code"] == "invalid_token"
        tokens = winner(results)
        assert session_row(pg_app, session_id).revoked_at is None

    # The last winner's pair is fully usable: its access token and its refresh token.
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/api/auth/session", headers=bearer).status_code == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 200


@pytest.mark.postgres
@pytest.mark.parametrize("threads", [2, 8])
def test_concurrent_refreshes_lined_up_by_a_barrier_have_exactly_one_winner(pg_app, threads):
    client = pg_app.test_client()
    email = f"barrier-{threads}@example.com"
    register(client, email)

    for _ in range(RACES):
        presented = login(client, email)["refresh_token"]
        results = at_once(pg_app, threads, lambda c, t=presented: refresh(c, t))
        assert statuses(results) == [200] + [401] * (threads - 1), results
        assert all(body["error"]["code"] == "invalid_token" for s, body in results if s == 401)


def test_replaying_a_rotated_out_refresh_token_revokes_the_whole_family(client, app, auth):
    app.config["REFRESH_REUSE_GRACE"] = 0  # a replay at once is reuse only without the grace
    first = auth.register()
    second = refresh(client, first["refresh_token"]).get_json()["data"]
    third = refresh(client, second["refresh_token"]).get_json()["data"]

    replay = refresh(client, second["refresh_token"])
    assert replay.status_code == 401
    assert replay.get_json()["error"]["code"] == "invalid_token"

    # The newest member of the family, and its access token, die with it.
    assert refresh(client, third["refresh_token"]).status_code == 401
    bearer = {"Authorization": f"Bearer {third['access_token']}"}
    assert client.get("/api/auth/session", headers=bearer).status_code == 401
    row = session_row(app, session_id_of(third["refresh_token"]))
    assert row.revoked_at is not None
    assert row.revoke_reason == "refresh_token_reuse"


@pytest.mark.postgres
def test_a_race_loser_retrying_its_token_afterwards_revokes_the_family(pg_app, pg_url):
    client = pg_app.test_client()
    tokens = register(client, "retry@example.com")
    session_id = session_id_of(tokens["refresh_token"])
    lock_row = "SELECT id FROM auth_sessions WHERE id = %s::uuid FOR UPDATE"
    presented = tokens["refresh_token"]
    results = gated_race(
        pg_app, pg_url, 2, lambda c: refresh(c, presented), lock_row, (session_id,)
    )
    fresh = winner(results)

    # Once the race is over, the old token is plain reuse.
    assert refresh(client, presented).status_code == 401
    assert refresh(client, fresh["refresh_token"]).status_code == 401
    assert session_row(pg_app, session_id).revoke_reason == "refresh_token_reuse"


def assert_one_account_created(app, email, results, threads):
    assert statuses(results) == [201] + [409] * (threads - 1), results
    for status, body in results:
        if status == 409:
            assert body["error"]["code"] == "email_taken"
    with app.app_context():
        rows = db.session.scalar(select(func.count()).select_from(User).where(User.email == email))
    assert rows == 1


def distinct_passwords(email):
    """Register bodies for one email, each with its own password: only one can be the account's
    (the same password again would be the app retrying, and sign in)."""
    numbers = itertools.count()
    return lambda: {"email": email, "password": f"{PASSWORD} {next(numbers)}"}


@pytest.mark.postgres
def test_concurrent_registrations_of_one_email_create_one_account(pg_app):
    for attempt in range(3):
        email = f"same-{attempt}@example.com"
        bodies = distinct_passwords(email)
        results = at_once(pg_app, 8, lambda c, b=bodies: c.post("/api/auth/register", json=b()))
        assert_one_account_created(pg_app, email, results, 8)


@pytest.mark.postgres
def test_registrations_that_all_passed_the_email_check_still_create_one_account(pg_app, pg_url):
    email = "gated@example.com"
    bodies = distinct_passwords(email)
    # Inserts wait on this lock; the SELECT that checks the email does not, so every request
    # finds the email free before any of them inserts: the unique constraint has to decide.
    results = gated_race(
        pg_app,
        pg_url,
        8,
        lambda c: c.post("/api/auth/register", json=bodies()),
        "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE",
    )
    assert_one_account_created(pg_app, email, results, 8)
    (created,) = [body for status, body in results if status == 201]
    me = pg_app.test_client().get(
        "/api/users/me", headers={"Authorization": f"Bearer {created['data']['access_token']}"}
    )
    assert me.get_json()["data"]["email"] == email


@pytest.mark.postgres
def test_a_busy_worker_keeps_its_connections_instead_of_opening_new_ones(pg_url):
    """The default pool keeps a connection for each of a default worker's 16 threads: round after
    round of 16 requests that all hold a connection at once (each waits on a table lock) reuse
    them. (A pool of 5 plus 11 overflow closed the 11 as they came back, and opened 11 new ones
    for the next round.)"""
    app = build_app(pg_url)
    try:
        client = app.test_client()
        token = register(client, "busy@example.com")["access_token"]
        opened = itertools.count()
        with app.app_context():
            event.listen(db.engine, "connect", lambda *_: next(opened))

        def profile(client):
            return client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})

        lock = "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"
        for _ in range(3):
            results = gated_race(app, pg_url, 16, profile, lock)
            assert statuses(results) == [200] * 16
        assert next(opened) <= 16
    finally:
        dispose(app)
