"""Password reset by email, as the MITA app asks for it, against a real SMTP server on 127.0.0.1:
forgot-password, the mail and its link, verify-reset-token, reset-password, and what happens
when mail is slow, down, or only logged."""

from __future__ import annotations

import logging
import os
import re
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from mita_app import create_app
from mita_app.audit import writer_of
from mita_app.auth import password_reset
from mita_app.auth.accounts import find_by_email, set_active
from mita_app.config import ConfigError, from_env
from mita_app.extensions import db
from mita_app.mail import mailer_of
from mita_app.models import User, utcnow
from tests.conftest import PASSWORD, AuthActions, build_app, dispose, events_of, free_port
from tests.gunicorn_server import migrated_postgres_database, running_gunicorn
from tests.smtp_server import SmtpServer

NEW_PASSWORD = "a brand new passphrase"
APP_REDIRECT = "https://app.mita.finance/reset-password"  # what the app sends (config.dart:51)
SENT = {
    "success": True,
    "data": {"message": "If an account exists for this email, a reset link has been sent."},
}
LINK = re.compile(r"mita://reset-password\?token=([A-Za-z0-9_-]{43})")
FAST_MAIL = {"MAIL_TIMEOUT": "2", "MAIL_RETRIES": "1", "MAIL_RETRY_BACKOFF": "0.05"}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(free_port()) as server:
        yield server


def smtp_env(port: int) -> dict[str, str]:
    return {
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(port),
        "MAIL_USE_TLS": "false",
        **FAST_MAIL,
    }


@pytest.fixture
def make_app(app_factory: Any) -> Iterator[Callable[..., Flask]]:
    """`app_factory`, whose apps' mail senders are stopped afterwards, whatever happened."""
    apps: list[Flask] = []

    def make(**env: str) -> Flask:
        apps.append(app_factory(**env))
        return apps[-1]

    yield make
    for app in apps:
        mailer_of(app).stop(timeout=2)


@pytest.fixture
def mail_app(make_app: Callable[..., Flask], smtp: SmtpServer) -> Flask:
    return make_app(**smtp_env(smtp.port))


@pytest.fixture
def client(mail_app: Flask) -> FlaskClient:
    return mail_app.test_client()


def forgot(client: FlaskClient, email: str, **headers: str) -> Any:
    """forgot-password exactly as the app sends it (api.dart:4079-4086)."""
    return client.post(
        "/api/auth/forgot-password",
        json={"email": email, "client_id": "mita_flutter_app", "redirect_url": APP_REDIRECT},
        headers={"Authorization": "Bearer null", **headers},
    )


def verify(client: FlaskClient, token: str) -> Any:
    return client.get(
        "/api/auth/verify-reset-token",
        query_string={"token": token},
        headers={"Authorization": "Bearer null"},
    )


def reset(client: FlaskClient, token: str, password: str = NEW_PASSWORD) -> Any:
    return client.post(
        "/api/auth/reset-password",
        json={"token": token, "new_password": password},
        headers={"Authorization": "Bearer null"},
    )


def token_in(message: Any) -> str:
    found = LINK.search(message.get_content())
    assert found, message.get_content()
    return found.group(1)


def delivered(app: Flask, smtp: SmtpServer, count: int) -> list[Any]:
    assert mailer_of(app).flush(10)
    assert len(smtp.inbox.messages) == count
    return smtp.inbox.wait_for(count, timeout=0)


def reset_token_for(client: FlaskClient, app: Flask, smtp: SmtpServer, email: str) -> str:
    before = len(smtp.inbox.messages)
    assert forgot(client, email).status_code == 202
    return token_in(delivered(app, smtp, before + 1)[-1])


def assert_invalid_token(response: Any) -> None:
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "invalid_reset_token"


# --- the journey -------------------------------------------------------------------------------


def test_reset_by_email_sets_the_password_and_ends_every_session(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    email = "reset-me@example.com"
    first = auth.register(email)
    second = auth.login(email).get_json()["data"]

    response = forgot(client, email, Authorization=f"Bearer {first['access_token']}")
    assert response.status_code == 202
    assert response.get_json() == SENT

    (message,) = delivered(mail_app, smtp, 1)
    assert message["To"] == email
    assert message["Subject"] == "Reset your MITA password"
    assert message["From"] == "MITA <no-reply@localhost>"
    assert smtp.inbox.envelopes[0][1] == [email]
    assert "valid for 30 minutes" in message.get_content()
    assert "app.mita.finance" not in message.get_content()  # the client's redirect_url
    token = token_in(message)

    for _ in range(2):  # checking does not spend it
        checked = verify(client, token)
        assert checked.status_code == 200
        data = checked.get_json()["data"]
        assert data["valid"] is True
        expires_in = datetime.fromisoformat(data["expires_at"]) - utcnow()
        assert timedelta(minutes=29) < expires_in <= timedelta(minutes=30)

    done = reset(client, token)
    assert done.status_code == 200
    assert done.get_json() == {"success": True, "data": {"reset": True}}

    signed_in = auth.login(email, NEW_PASSWORD)
    assert signed_in.status_code == 200
    assert signed_in.get_json()["data"]["user"]["email_verified"] is True  # the mail reached it
    assert auth.login(email, PASSWORD).status_code == 401
    for session in (first, second):
        refreshed = client.post(
            "/api/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert refreshed.status_code == 401
        denied = client.get("/api/auth/session", headers=auth.bearer(session["access_token"]))
        assert denied.status_code == 401
    assert_invalid_token(reset(client, token, "yet another passphrase"))
    assert_invalid_token(verify(client, token))
    assert auth.login(email, NEW_PASSWORD).status_code == 200

    user_id = str(first["user"]["id"])
    requested = events_of(mail_app, "auth.password_reset.requested")
    assert [(str(e["user_id"]), e["details"]["outcome"]) for e in requested] == [(user_id, "sent")]
    assert [str(e["user_id"]) for e in events_of(mail_app, "auth.password_reset.completed")] == [
        user_id
    ]
    failed = events_of(mail_app, "auth.password_reset.failed")
    assert [e["details"]["reason"] for e in failed] == ["token_used"]
    assert token not in repr(events_of(mail_app))


def test_the_api_v1_paths_work_too(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    email = "v1@example.com"
    auth.register(email)
    response = client.post("/api/v1/auth/forgot-password/", json={"email": email})
    assert response.status_code == 202
    token = token_in(delivered(mail_app, smtp, 1)[0])
    assert client.get(f"/api/v1/auth/verify-reset-token?token={token}").status_code == 200


@pytest.mark.parametrize("kind", ["unknown", "disabled", "external"])
def test_accounts_that_may_not_reset_get_the_same_answer_and_no_mail(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions, kind: str
) -> None:
    auth.register("known@example.com")
    email = f"{kind}@example.com"
    if kind == "disabled":
        auth.register(email)
        with mail_app.app_context():
            set_active(find_by_email(email), False)  # type: ignore[arg-type]
    elif kind == "external":
        with mail_app.app_context():
            db.session.add(
                User(email=email, auth_provider="better-auth", external_subject="ba-user-1")
            )
            db.session.commit()

    known = forgot(client, "known@example.com")
    other = forgot(client, email)

    assert (other.status_code, other.get_json()) == (known.status_code, known.get_json())
    assert other.status_code == 202
    assert [m["To"] for m in delivered(mail_app, smtp, 1)] == ["known@example.com"]
    outcomes = [
        e["details"]["outcome"] for e in events_of(mail_app, "auth.password_reset.requested")
    ]
    assert outcomes == [
        "sent",
        {
            "unknown": "unknown_email",
            "disabled": "account_disabled",
            "external": "external_account",
        }[kind],
    ]


def test_an_account_made_with_google_sets_its_first_password_by_reset(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    email = "google-only@example.com"
    with mail_app.app_context():
        db.session.add(User(email=email, password_hash=None))
        db.session.commit()
    assert auth.login(email, NEW_PASSWORD).status_code == 401

    token = reset_token_for(client, mail_app, smtp, email)

    assert reset(client, token).status_code == 200
    assert auth.login(email, NEW_PASSWORD).status_code == 200


def test_a_newer_token_ends_the_older_one(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    email = "twice@example.com"
    auth.register(email)
    older = reset_token_for(client, mail_app, smtp, email)
    newer = reset_token_for(client, mail_app, smtp, email)

    assert older != newer
    assert_invalid_token(verify(client, older))
    assert_invalid_token(reset(client, older))
    assert verify(client, newer).status_code == 200
    assert reset(client, newer).status_code == 200


def test_the_token_of_an_account_disabled_since_is_refused(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    email = "disabled-later@example.com"
    auth.register(email)
    token = reset_token_for(client, mail_app, smtp, email)
    with mail_app.app_context():
        set_active(find_by_email(email), False)  # type: ignore[arg-type]

    assert_invalid_token(verify(client, token))
    assert_invalid_token(reset(client, token))
    failed = events_of(mail_app, "auth.password_reset.failed")
    assert [e["details"]["reason"] for e in failed] == ["account_unavailable"]


def test_a_token_lives_30_minutes(
    mail_app: Flask,
    client: FlaskClient,
    smtp: SmtpServer,
    auth: AuthActions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    email = "late@example.com"
    auth.register(email)
    issued = utcnow()
    token = reset_token_for(client, mail_app, smtp, email)

    monkeypatch.setattr(password_reset, "utcnow", lambda: issued + timedelta(minutes=29))
    assert verify(client, token).status_code == 200
    monkeypatch.setattr(password_reset, "utcnow", lambda: issued + timedelta(minutes=30, seconds=1))
    assert_invalid_token(verify(client, token))
    assert_invalid_token(reset(client, token))
    assert auth.login(email, PASSWORD).status_code == 200
    failed = events_of(mail_app, "auth.password_reset.failed")
    assert [e["details"]["reason"] for e in failed] == ["token_expired"]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "short",
        "A" * 43,  # well-formed, never issued
        "A" * 42 + "=",
        "A" * 513,
        "A" * 10_000,
        "../../etc/passwd",
        "é" * 43,
    ],
    ids=["empty", "short", "unknown", "padded", "513", "10k", "path", "unicode"],
)
def test_a_bad_token_is_400_invalid_reset_token(client: FlaskClient, token: str) -> None:
    assert_invalid_token(verify(client, token))
    assert_invalid_token(reset(client, token))


def test_verify_without_a_token_is_400(client: FlaskClient) -> None:
    assert_invalid_token(client.get("/api/auth/verify-reset-token"))


def test_a_weak_new_password_is_422_and_keeps_the_token(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    email = "weak@example.com"
    auth.register(email)
    token = reset_token_for(client, mail_app, smtp, email)

    response = reset(client, token, "short")

    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"new_password"}
    assert verify(client, token).status_code == 200
    assert auth.login(email, PASSWORD).status_code == 200


def test_a_reset_clears_the_lockout(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    email = "locked@example.com"
    auth.register(email)
    for _ in range(6):
        auth.login(email, "wrong password")
    assert auth.login(email, PASSWORD).status_code == 401  # locked

    assert reset(client, reset_token_for(client, mail_app, smtp, email)).status_code == 200
    assert auth.login(email, NEW_PASSWORD).status_code == 200


def resets_at_once(app: Flask, token: str, passwords: list[str]) -> list[int]:
    """Reset with one token from one thread per password, released together."""
    barrier = threading.Barrier(len(passwords), timeout=10)
    statuses: list[int] = []

    def run(password: str) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(reset(client, token, password).status_code)

    threads = [threading.Thread(target=run, args=(password,)) for password in passwords]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return statuses


def test_of_two_concurrent_resets_with_one_token_exactly_one_wins(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    for race in range(3):
        email = f"race{race}@example.com"
        auth.register(email)
        token = reset_token_for(client, mail_app, smtp, email)
        passwords = [f"winner number {n} passphrase" for n in (1, 2)]

        statuses = resets_at_once(mail_app, token, passwords)

        assert sorted(statuses) == [200, 400]
        winners = [
            n
            for n in (1, 2)
            if auth.login(email, f"winner number {n} passphrase").status_code == 200
        ]
        assert len(winners) == 1


# --- the link ----------------------------------------------------------------------------------


def test_the_link_is_the_configured_url_never_the_clients(
    make_app: Callable[..., Flask], smtp: SmtpServer
) -> None:
    app = make_app(
        **smtp_env(smtp.port), PASSWORD_RESET_URL="https://mita.example/reset?from=mail#top"
    )
    client = app.test_client()
    AuthActions(client).register("link@example.com")

    client.post(
        "/api/auth/forgot-password",
        json={"email": "link@example.com", "redirect_url": "https://evil.example/steal"},
    )

    body = delivered(app, smtp, 1)[0].get_content()
    assert "evil.example" not in body
    assert re.search(r"https://mita\.example/reset\?from=mail&token=[A-Za-z0-9_-]{43}#top", body)


# --- mail after the response, and mail that fails -----------------------------------------------


def test_the_mail_is_sent_after_the_response(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, auth: AuthActions
) -> None:
    auth.register("slow@example.com")
    smtp.inbox.hold()  # the server takes the message's data only once released

    started = time.monotonic()
    response = forgot(client, "slow@example.com")
    answered_in = time.monotonic() - started

    assert response.status_code == 202
    assert answered_in < 1.0
    # The request has returned; its mail is being delivered now, and is not there yet.
    assert smtp.inbox.data_started.wait(5)
    assert smtp.inbox.messages == []
    assert not mailer_of(mail_app).flush(0.2)
    smtp.inbox.release()
    assert [m["To"] for m in delivered(mail_app, smtp, 1)] == ["slow@example.com"]


def test_an_smtp_server_that_is_down_costs_the_request_nothing_and_leaks_nothing(
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = ("S3cretT0ken" * 4)[:43]
    monkeypatch.setattr(password_reset, "new_reset_token", lambda: secret)
    app = make_app(**smtp_env(free_port()))  # nothing listens there
    client = app.test_client()
    AuthActions(client).register("down@example.com")

    started = time.monotonic()
    response = forgot(client, "down@example.com")
    answered_in = time.monotonic() - started

    assert (response.status_code, response.get_json()) == (202, SENT)
    assert answered_in < 1.0
    assert mailer_of(app).flush(10)
    mail_lines = [r.getMessage() for r in caplog.records if r.name == "mita_app.mail"]
    assert any("attempt 1 of 2 failed: ConnectionRefusedError" in line for line in mail_lines)
    assert any("giving up" in line for line in mail_lines)
    assert secret not in caplog.text
    assert "token=" not in caplog.text
    assert mailer_of(app).failed == 1
    assert verify(client, secret).status_code == 200  # the token itself is fine


def test_stopping_gives_up_on_a_stuck_server_within_its_budget(
    mail_app: Flask, client: FlaskClient, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp.inbox.hold()
    with mail_app.app_context():
        mailer_of(mail_app).send("stuck@example.com", "Hello", "body")
    assert smtp.inbox.data_started.wait(5)

    started = time.monotonic()
    mailer_of(mail_app).stop(timeout=0.3)

    assert time.monotonic() - started < 1.5
    assert "1 mail message(s) not delivered before shutdown" in caplog.text
    smtp.inbox.release()  # let the abandoned delivery end here, not in another test
    assert mailer_of(mail_app).flush(5)


def test_the_console_backend_logs_the_link_in_development(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mita_app.mail")
    app = make_app()  # development: MAIL_BACKEND defaults to console
    assert app.config["MAIL_BACKEND"] == "console"
    client = app.test_client()
    AuthActions(client).register("console@example.com")

    assert forgot(client, "console@example.com").status_code == 202

    assert mailer_of(app).flush(5)
    logged = [r for r in caplog.records if r.name == "mita_app.mail"]
    assert len(logged) == 1
    assert logged[0].levelno == logging.INFO
    assert LINK.search(logged[0].getMessage())


# --- configuration, modes and limits -----------------------------------------------------------


STRONG_KEY = "k" * 32


def test_production_without_a_mail_server_refuses_to_start(tmp_path: Any) -> None:
    env = {
        "MITA_ENV": "production",
        "SECRET_KEY": STRONG_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path}/never.db",
    }
    with pytest.raises(ConfigError, match="MAIL_SERVER"):
        create_app(env=env)
    with pytest.raises(ConfigError, match="console"):
        from_env({**env, "MAIL_BACKEND": "console"}, default_database_url="sqlite://")

    config = from_env({**env, "MAIL_SERVER": "smtp.example"}, default_database_url="sqlite://")
    assert (config["MAIL_BACKEND"], config["MAIL_PORT"], config["MAIL_USE_TLS"]) == (
        "smtp",
        587,
        True,
    )


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"MAIL_BACKEND": "smtp"}, "MAIL_SERVER"),
        ({"MAIL_BACKEND": "carrier-pigeon"}, "MAIL_BACKEND"),
        ({"MAIL_USE_SSL": "true", "MAIL_USE_TLS": "true"}, "MAIL_USE_SSL"),
        ({"MAIL_FROM": "nobody"}, "MAIL_FROM"),
        ({"PASSWORD_RESET_URL": "reset-password"}, "PASSWORD_RESET_URL"),
        ({"PASSWORD_RESET_TTL": "10"}, "PASSWORD_RESET_TTL"),
    ],
)
def test_mail_settings_that_cannot_work_are_refused(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_env(env, default_database_url="sqlite://")


def test_implicit_tls_defaults_to_port_465_without_starttls() -> None:
    config = from_env(
        {"MAIL_SERVER": "smtp.example", "MAIL_USE_SSL": "true"}, default_database_url="sqlite://"
    )
    assert (config["MAIL_PORT"], config["MAIL_USE_TLS"], config["MAIL_USE_SSL"]) == (
        465,
        False,
        True,
    )


def test_with_an_external_auth_server_the_routes_are_404(make_app: Callable[..., Flask]) -> None:
    app = make_app(AUTH_MODE="better-auth", AUTH_SERVER_URL="http://127.0.0.1:9")
    client = app.test_client()
    for response in (
        forgot(client, "someone@example.com"),
        verify(client, "A" * 43),
        reset(client, "A" * 43),
    ):
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "managed_by_auth_server"


def test_the_per_email_limit_treats_unknown_emails_as_known_ones(
    make_app: Callable[..., Flask], smtp: SmtpServer
) -> None:
    app = make_app(
        **smtp_env(smtp.port),
        RATELIMIT_ENABLED="true",
        RATELIMIT_FORGOT_PER_EMAIL="2 per hour",
        RATELIMIT_FORGOT_PER_IP="100 per minute",
    )
    client = app.test_client()
    AuthActions(client).register("limited@example.com")
    answers = {}
    for email in ("limited@example.com", "nobody@example.com"):
        statuses = []
        for n in range(3):
            response = client.post(
                "/api/auth/forgot-password",
                json={"email": email.upper() if n else email},
                environ_base={"REMOTE_ADDR": f"10.0.0.{n}"},
            )
            statuses.append(response.status_code)
        answers[email] = (
            statuses,
            response.get_json()["error"]["code"],
            "Retry-After" in response.headers,
        )
    assert answers["limited@example.com"] == answers["nobody@example.com"]
    assert answers["nobody@example.com"] == ([202, 202, 429], "rate_limited", True)


def test_forgot_password_is_limited_per_address(
    make_app: Callable[..., Flask], smtp: SmtpServer
) -> None:
    app = make_app(
        **smtp_env(smtp.port), RATELIMIT_ENABLED="true", RATELIMIT_FORGOT_PER_IP="3 per minute"
    )
    client = app.test_client()
    statuses = [
        client.post("/api/auth/forgot-password", json={"email": f"n{n}@example.com"}).status_code
        for n in range(4)
    ]
    assert statuses == [202, 202, 202, 429]


# --- timing ------------------------------------------------------------------------------------


def test_a_known_email_takes_as_long_as_an_unknown_one(pg_url: str, smtp: SmtpServer) -> None:
    """On PostgreSQL, the production database. (On SQLite, for local use, a commit that wrote
    a row waits for the disk and one that did not does not: the login path has the same gap.)

    Samples alternate (known, unknown, unknown, known, ...), with the mail and audit queues
    drained between them, so drift and background work fall on both alike."""
    app = build_app(pg_url, **smtp_env(smtp.port), AUDIT_FLUSH_INTERVAL="0.01")
    try:
        client = app.test_client()
        AuthActions(client).register("timed@example.com")
        samples: dict[str, list[float]] = {"known": [], "unknown": []}
        for n in range(80):
            pair = [("known", "timed@example.com"), ("unknown", f"nobody-{uuid.uuid4().hex}@x.io")]
            for kind, email in pair if n % 2 else reversed(pair):
                mailer_of(app).flush(5)
                writer_of(app).flush(5)
                started = time.perf_counter()
                response = client.post(
                    "/api/auth/forgot-password", json={"email": email}, buffered=False
                )
                # Until the response is there, as a client sees it; what the app does once it
                # has been sent (handing over mail and audit events) is not the client's wait.
                samples[kind].append(time.perf_counter() - started)
                response.close()
                assert response.status_code == 202
        known = statistics.median(samples["known"]) * 1000
        unknown = statistics.median(samples["unknown"]) * 1000
        print(f"median known {known:.2f} ms, unknown {unknown:.2f} ms")
        assert abs(known - unknown) < max(1.0, 0.15 * unknown), (known, unknown)
    finally:
        mailer_of(app).stop(timeout=2)
        dispose(app)


# --- under gunicorn ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_gunicorn_worker_told_to_stop_sends_its_queued_mail_before_it_exits(
    pg_url: str, smtp: SmtpServer, tmp_path: Any
) -> None:
    env = {
        **smtp_env(smtp.port),
        "MAIL_TIMEOUT": "10",
        "MAIL_SHUTDOWN_TIMEOUT": "5",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_GRACEFUL_TIMEOUT": "20",
        "RATELIMIT_ENABLED": "false",
    }
    email = "deploy@example.com"
    smtp.inbox.hold()
    with (
        migrated_postgres_database(pg_url) as database,
        running_gunicorn(database, tmp_path / "log", env=env) as server,
    ):
        registered = requests.post(
            server.url("/api/auth/register"), json={"email": email, "password": PASSWORD}, timeout=5
        )
        assert registered.status_code == 201
        answer = requests.post(
            server.url("/api/auth/forgot-password"), json={"email": email}, timeout=5
        )
        assert answer.status_code == 202
        assert smtp.inbox.data_started.wait(10)  # answered; the mail is on its way, held

        os.kill(server.pid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            server.process.wait(timeout=0.5)  # the worker waits for its mail ...
        smtp.inbox.release()
        code = server.process.wait(timeout=10)  # ... and goes once it is delivered

    assert code == 0, server.log()
    assert [m["To"] for m in smtp.inbox.wait_for(1, timeout=0)] == [email]
    assert "not delivered" not in server.log()
