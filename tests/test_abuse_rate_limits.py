"""Password work is rate limited wherever a client can ask for it, and a flood against a locked
account writes a bounded number of audit rows.

Each password check or hash costs real CPU (scrypt in production): a route that does one without a
limit lets one client make the whole worker slow for everyone.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mita_app.audit import writer_of
from mita_app.auth import passwords
from mita_app.auth.accounts import create_user, find_by_email
from mita_app.auth.password_reset import new_reset_token
from mita_app.auth.sessions import open_session
from mita_app.auth.tokens import hash_token
from mita_app.extensions import db
from mita_app.models import PasswordResetToken, utcnow
from tests.conftest import PASSWORD, HandClock, events_of

WRONG = "wrong password"
NEW_PASSWORD = "another long password"
# The routes that check or hash a password, by endpoint; each must be rate limited.
PASSWORD_ROUTES = {
    "auth.register",
    "auth.login",
    "auth.change_password",
    "auth.password",
    "password_reset.reset_password",
}


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password check or hash the app makes from now on, by kind."""
    made: list[str] = []

    def counted(kind: str, work: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            made.append(kind)
            return work(*args, **kwargs)

        return run

    monkeypatch.setattr(
        passwords, "check_password_hash", counted("check", passwords.check_password_hash)
    )
    monkeypatch.setattr(
        passwords, "generate_password_hash", counted("hash", passwords.generate_password_hash)
    )
    return made


def account(app: Flask, email: str | None = None) -> tuple[str, str]:
    """(email, access token) of a new account, made without spending any rate limit."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    with app.test_request_context():
        user = create_user(email, PASSWORD)
        pair = open_session(user)
        db.session.commit()
    return email, pair.access_token


def reset_token(app: Flask, email: str) -> str:
    token = new_reset_token()
    with app.app_context():
        user = find_by_email(email)
        assert user is not None
        db.session.add(
            PasswordResetToken(
                user_id=user.id,
                token_hash=hash_token(token),
                expires_at=utcnow() + timedelta(minutes=30),
            )
        )
        db.session.commit()
    return token


def change_password(
    client: FlaskClient, token: str, ip: str = "10.0.0.1", path: str = "/api/auth/password"
) -> Any:
    return client.post(
        path,
        json={"current_password": WRONG, "new_password": NEW_PASSWORD},
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": ip},
    )


def assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, (response.status_code, response.get_json())
    assert int(response.headers["Retry-After"]) > 0
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert error["request_id"] == response.headers["X-Request-ID"]


@pytest.fixture
def limited(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory(
        RATELIMIT_ENABLED="true",
        RATELIMIT_PASSWORD_CHANGE_PER_USER="3 per minute",
        RATELIMIT_PASSWORD_CHANGE_PER_IP="5 per minute",
    )


def test_password_changes_of_one_user_are_limited_from_any_address_and_either_path(
    limited: Flask, hashes: list[str]
) -> None:
    client = limited.test_client()
    _, token = account(limited)
    paths = ["/api/auth/password", "/api/auth/change-password"]
    for n in range(3):
        response = change_password(client, token, ip=f"10.0.0.{n}", path=paths[n % 2])
        assert response.status_code == 403, response.get_json()
    checked = len(hashes)

    for n in range(20):  # a flood: each attempt refused before any password work
        assert_rate_limited(change_password(client, token, ip=f"10.0.1.{n}", path=paths[n % 2]))
    assert len(hashes) == checked

    _, other = account(limited)
    assert change_password(client, other, ip="10.0.1.0").status_code == 403


def test_password_changes_from_one_address_are_limited_across_users(limited: Flask) -> None:
    client = limited.test_client()
    tokens = [account(limited)[1] for _ in range(6)]

    statuses = [change_password(client, token, ip="10.0.0.7").status_code for token in tokens]
    assert statuses[:5] == [403] * 5
    assert_rate_limited(change_password(client, tokens[5], ip="10.0.0.7"))
    assert change_password(client, tokens[5], ip="10.0.0.8").status_code == 403


def routes(app: Flask) -> Iterator[tuple[str, str, str]]:
    """(endpoint, method, path) of every API route, path arguments filled with a fresh UUID."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<[^>]+>", str(uuid.uuid4()), rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path


def test_every_route_that_does_password_work_is_one_of_the_rate_limited_ones(
    app: Flask, hashes: list[str]
) -> None:
    client = app.test_client()
    email, _ = account(app)
    # Every field a route might take a password or an account from.
    body = {
        "email": email,
        "password": WRONG,
        "current_password": WRONG,
        "new_password": NEW_PASSWORD,
        "token": reset_token(app, email),
        "refresh_token": "nope",
        "id_token": "nope",
        "confirmation": False,
    }
    working = set()
    for endpoint, method, path in routes(app):
        _, token = account(app)  # a live session each time: one route may end the last one
        before = len(hashes)
        response = client.open(
            path, method=method, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code < 500, (method, path, response.get_json())
        if len(hashes) > before:
            working.add(endpoint)

    assert working, "the probe must reach the password work of at least login"
    assert working <= PASSWORD_ROUTES, working - PASSWORD_ROUTES


@pytest.mark.parametrize("endpoint", sorted(PASSWORD_ROUTES))
def test_each_route_that_does_password_work_answers_429_past_its_limits(
    app_factory: Callable[..., Flask], endpoint: str
) -> None:
    app = app_factory(
        RATELIMIT_ENABLED="true",
        **{
            name: "2 per hour"
            for name in (
                "RATELIMIT_LOGIN_PER_IP",
                "RATELIMIT_LOGIN_PER_EMAIL",
                "RATELIMIT_REGISTER_PER_IP",
                "RATELIMIT_RESET_PER_IP",
                "RATELIMIT_PASSWORD_CHANGE_PER_USER",
                "RATELIMIT_PASSWORD_CHANGE_PER_IP",
            )
        },
    )
    client = app.test_client()
    email, token = account(app)
    bearer = {"Authorization": f"Bearer {token}"}
    requests: dict[str, Callable[[], Any]] = {
        "auth.register": lambda: client.post(
            "/api/auth/register", json={"email": "new@example.com", "password": PASSWORD}
        ),
        "auth.login": lambda: client.post(
            "/api/auth/login", json={"email": email, "password": WRONG}
        ),
        "auth.change_password": lambda: client.post(
            "/api/auth/change-password",
            json={"current_password": WRONG, "new_password": NEW_PASSWORD},
            headers=bearer,
        ),
        "auth.password": lambda: client.post(
            "/api/auth/password",
            json={"current_password": WRONG, "new_password": NEW_PASSWORD},
            headers=bearer,
        ),
        "password_reset.reset_password": lambda: client.post(
            "/api/auth/reset-password",
            json={"token": reset_token(app, email), "new_password": NEW_PASSWORD},
        ),
    }

    for _ in range(2):
        assert requests[endpoint]().status_code != 429
    assert_rate_limited(requests[endpoint]())


def locked_account(app: Flask) -> tuple[str, str]:
    """(email, access token) of an account just locked by two wrong passwords."""
    email, token = account(app)
    client = app.test_client()
    for _ in range(2):
        response = client.post("/api/auth/login", json={"email": email, "password": WRONG})
        assert response.status_code == 401
    return email, token


def wait_for(app: Flask, event_type: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while not (events := events_of(app, event_type)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return events


@pytest.fixture
def flood_app(app_factory: Callable[..., Flask]) -> tuple[Flask, HandClock]:
    app = app_factory(AUDIT_BURST_LIMIT="3", AUDIT_BURST_WINDOW="60", LOGIN_LOCKOUT_THRESHOLD="2")
    clock = HandClock()
    writer_of(app).gate.clock = clock
    return app, clock


def test_a_login_flood_against_a_locked_account_writes_a_few_rows_and_a_count(
    flood_app: tuple[Flask, HandClock],
) -> None:
    app, clock = flood_app
    email, _ = locked_account(app)
    client = app.test_client()
    for n in range(30):
        response = client.post(
            "/api/auth/login",
            json={"email": email, "password": PASSWORD},
            headers={"X-Request-ID": f"locked-{n}"},
            environ_base={"REMOTE_ADDR": "10.3.3.3"},
        )
        assert response.status_code == 401

    locked = [
        e for e in events_of(app, "auth.login.failed") if e["details"]["reason"] == "account_locked"
    ]
    assert [e["request_id"] for e in locked] == ["locked-0", "locked-1", "locked-2"]

    clock.now += 60  # the window closes; the writer sums it up on its next round
    (summary,) = wait_for(app, "auth.login.failed.suppressed")
    assert summary["ip"] == "10.3.3.3"
    assert summary["details"]["reason"] == "account_locked"
    assert summary["details"]["count"] == 27
    assert summary["details"]["last_request_id"] == "locked-29"


def test_a_password_change_flood_on_a_locked_account_writes_a_few_rows_and_a_count(
    flood_app: tuple[Flask, HandClock],
) -> None:
    app, clock = flood_app
    _, token = locked_account(app)
    client = app.test_client()
    for _ in range(30):
        assert change_password(client, token, ip="10.4.4.4").status_code == 403

    locked = [
        e
        for e in events_of(app, "auth.password_change.failed")
        if e["details"]["reason"] == "account_locked"
    ]
    assert len(locked) == 3

    clock.now += 60
    (summary,) = wait_for(app, "auth.password_change.failed.suppressed")
    assert (summary["details"]["reason"], summary["details"]["count"]) == ("account_locked", 27)


def test_failures_that_are_not_floods_are_still_written_one_by_one(
    flood_app: tuple[Flask, HandClock],
) -> None:
    app, _ = flood_app
    client = app.test_client()
    for _ in range(10):  # ten accounts, one wrong password each: nothing is suppressed
        email, _ = account(app)
        client.post("/api/auth/login", json={"email": email, "password": WRONG})

    failed = events_of(app, "auth.login.failed")
    assert [e["details"]["reason"] for e in failed] == ["wrong_password"] * 10
