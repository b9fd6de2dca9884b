"""The auth calls of the unchanged MITA mobile app, with its exact bodies and headers: it sends
`Content-Type: application/json` and a Bearer (stale, expired, or literally `null`) on every
request, public ones included. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta
from decimal import Decimal

import jwt
import pytest
from sqlalchemy import func, select

from mita_app.auth import service
from mita_app.extensions import db
from mita_app.models import (
    AuthSession,
    BudgetPlan,
    CrashReport,
    Habit,
    HabitCompletion,
    LinkedIdentity,
    PasswordResetToken,
    Transaction,
    User,
    utcnow,
)
from tests.conftest import PASSWORD, TEST_SECRET, events_of

NEW_PASSWORD = "a brand new password"


def expired_access_token(app, user_id=None, session_id=None) -> str:
    """An access token of ours, correctly signed, that expired a minute ago."""
    now = int(time.time())
    claims = {
        "sub": str(user_id or uuid.uuid4()),
        "sid": str(session_id or uuid.uuid4()),
        "jti": uuid.uuid4().hex,
        "iat": now - 3700,
        "exp": now - 60,
        "iss": app.config["JWT_ISSUER"],
        "aud": app.config["JWT_AUDIENCE"],
        "type": "access",
    }
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def app_headers(token: str | None) -> dict[str, str]:
    """What the app's interceptor puts on every request (api_service.dart:57, 83-86)."""
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def call(client, method, path, body=None, token: str | None = "null"):
    return client.open(path, method=method, json=body, headers=app_headers(token))


def session_of(client, token):
    return client.get("/api/auth/session", headers=app_headers(token))


def register_body(email):
    # What register_screen.dart sends.
    return {
        "email": email,
        "password": PASSWORD,
        "country": "US",
        "annual_income": 0,
        "timezone": "America/New_York",
    }


def user_count(app, email):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User).where(User.email == email))


@pytest.mark.parametrize("stale", ["null", "expired", "garbage", "none"])
def test_public_routes_ignore_the_authorization_header(app, client, stale):
    token = {
        "null": "null",
        "expired": expired_access_token(app),
        "garbage": "not.a.token",
        "none": None,
    }[stale]
    email = f"app-{uuid.uuid4().hex[:8]}@example.com"

    registered = call(client, "POST", "/api/auth/register", register_body(email), token)
    assert registered.status_code == 201, registered.get_json()
    credentials = {"email": email, "password": PASSWORD}
    logged_in = call(client, "POST", "/api/auth/login", credentials, token)
    assert logged_in.status_code == 200, logged_in.get_json()
    refresh_token = logged_in.get_json()["refresh_token"]
    for path in ("/api/auth/refresh-token", "/api/auth/refresh"):
        rotated = call(client, "POST", path, {"refresh_token": refresh_token}, token)
        assert rotated.status_code == 200, rotated.get_json()
        refresh_token = rotated.get_json()["refresh_token"]


def test_refresh_token_returns_both_tokens_as_strings_at_the_top_level_and_in_data(client, auth):
    first = auth.register()
    response = call(
        client,
        "POST",
        "/api/auth/refresh-token",
        {"refresh_token": first["refresh_token"]},
        first["access_token"],  # the interceptor's stale access token
    )
    assert response.status_code == 200
    body = response.get_json()
    for where in (body, body["data"]):
        assert isinstance(where["access_token"], str)
        assert isinstance(where["refresh_token"], str)
        assert where["access_token"]
        assert where["refresh_token"]
    assert body["access_token"] == body["data"]["access_token"]
    assert body["refresh_token"] == body["data"]["refresh_token"] != first["refresh_token"]
    assert session_of(client, body["access_token"]).status_code == 200


def test_refresh_token_works_under_api_v1(client, auth):
    first = auth.register()
    response = call(
        client, "POST", "/api/v1/auth/refresh-token", {"refresh_token": first["refresh_token"]}
    )
    assert response.status_code == 200
    assert response.get_json()["refresh_token"] != first["refresh_token"]


def test_both_refresh_paths_share_one_rotation_so_reuse_across_them_revokes_the_family(
    app, client, auth
):
    app.config["REFRESH_REUSE_GRACE"] = 0  # a replay at once is reuse only without the grace
    first = auth.register()
    second = call(
        client, "POST", "/api/auth/refresh-token", {"refresh_token": first["refresh_token"]}
    ).get_json()
    replay = call(client, "POST", "/api/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert 'error="invalid_token"' in replay.headers["WWW-Authenticate"]
    assert call(client, "POST", "/api/auth/refresh-token", second).status_code == 401


# --- change-password ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/change-password", "/api/auth/password"])
def test_change_password_answers_200_with_success_and_ends_only_the_other_sessions(
    client, auth, path
):
    email = f"pw-{uuid.uuid4().hex[:8]}@example.com"
    this = auth.register(email)
    other = auth.login(email).get_json()["data"]
    response = call(
        client,
        "POST",
        path,
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "timestamp": "2026-03-01T10:15:30.123",  # naive local time, as the app sends
        },
        this["access_token"],
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["success"] is True
    assert response.get_json()["data"] == {"password_changed": True}
    assert call(client, "POST", "/api/auth/refresh-token", other).status_code == 401
    assert session_of(client, other["access_token"]).status_code == 401
    assert session_of(client, this["access_token"]).status_code == 200
    assert call(client, "POST", "/api/auth/refresh-token", this).status_code == 200
    assert auth.login(email).status_code == 401
    assert auth.login(email, NEW_PASSWORD).status_code == 200


def test_change_password_with_a_wrong_current_password_is_403_not_401(client, auth):
    data = auth.register()
    response = call(
        client,
        "POST",
        "/api/auth/change-password",
        {"current_password": "not it at all", "new_password": NEW_PASSWORD},
        data["access_token"],
    )
    # 401 would make the app refresh and replay; the token is fine.
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "invalid_current_password"


def test_change_password_of_an_account_without_a_password_is_409_password_not_set(app, client):
    with app.test_request_context():
        from mita_app.auth.accounts import create_user
        from mita_app.auth.sessions import open_session

        user = create_user("google-only@example.com", None, email_verified=True)
        pair = open_session(user)
        db.session.commit()
        token = pair.access_token
    response = call(
        client,
        "POST",
        "/api/auth/change-password",
        {"current_password": "anything at all", "new_password": NEW_PASSWORD},
        token,
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "password_not_set"
    assert session_of(client, token).status_code == 200  # nobody was signed out
    with app.app_context():
        assert db.session.scalar(select(User.password_hash)) is None


# --- delete-account -------------------------------------------------------------------------------


def add_rows_of(app, user_id):
    """One row of each kind that belongs to the user."""
    with app.app_context():
        habit = Habit(user_id=user_id, title="Walk")
        db.session.add(habit)
        db.session.flush()
        db.session.add(HabitCompletion(habit_id=habit.id, day=date(2026, 1, 2)))
        db.session.add(
            PasswordResetToken(
                user_id=user_id,
                token_hash=uuid.uuid4().hex * 2,
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
        db.session.add(LinkedIdentity(user_id=user_id, provider="google", subject="g-123"))
        db.session.add(
            Transaction(
                user_id=user_id,
                amount=Decimal("12.50"),
                category="groceries",
                spent_at=utcnow(),
                spent_on=date(2026, 1, 2),
            )
        )
        db.session.add(
            BudgetPlan(
                user_id=user_id,
                month=date(2026, 1, 1),
                income=Decimal(6000),
                fixed=Decimal(2000),
                savings=Decimal(500),
                discretionary=Decimal(3500),
                lines=[],
            )
        )
        db.session.add(
            CrashReport(
                dedup_key=uuid.uuid4().hex,
                client_report_id="1",
                user_id=user_id,
                severity="low",
                category="ui",
                error="boom",
                context={},
                device_info={},
            )
        )
        db.session.commit()


def rows_of(app, user_id):
    with app.app_context():
        counts = {
            model.__tablename__: db.session.scalar(
                select(func.count()).select_from(model).where(model.user_id == user_id)
            )
            for model in (
                AuthSession,
                Habit,
                PasswordResetToken,
                LinkedIdentity,
                CrashReport,
                Transaction,
                BudgetPlan,
            )
        }
        counts["users"] = db.session.scalar(
            select(func.count()).select_from(User).where(User.id == user_id)
        )
        counts["habit_completions"] = db.session.scalar(
            select(func.count()).select_from(HabitCompletion)
        )
        counts["anonymous_crash_reports"] = db.session.scalar(
            select(func.count()).select_from(CrashReport).where(CrashReport.user_id.is_(None))
        )
        return counts


def test_delete_account_removes_the_user_and_everything_theirs(app, client, auth):
    email = f"bye-{uuid.uuid4().hex[:8]}@example.com"
    data = auth.register(email)
    other = auth.login(email).get_json()["data"]
    user_id = uuid.UUID(data["user"]["id"])
    add_rows_of(app, user_id)
    bystander = auth.register()
    assert session_of(client, data["access_token"]).status_code == 200  # cached as valid now

    response = call(
        client,
        "DELETE",
        "/api/auth/delete-account",
        {"timestamp": "2026-03-01T10:15:30.123456", "confirmation": True},
        data["access_token"],
    )

    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"success": True, "data": {"deleted": True}}
    # At once in this worker, warm cache or not.
    assert session_of(client, data["access_token"]).status_code == 401
    assert call(client, "GET", "/api/users/me", token=data["access_token"]).status_code == 401
    assert session_of(client, other["access_token"]).status_code == 401
    assert call(client, "POST", "/api/auth/refresh-token", data).status_code == 401
    assert auth.login(email).status_code == 401
    assert rows_of(app, user_id) == {
        "users": 0,
        "auth_sessions": 0,
        "habits": 0,
        "password_reset_tokens": 0,
        "linked_identities": 0,
        "crash_reports": 0,
        "habit_completions": 0,
        "transactions": 0,
        "budget_plans": 0,
        "anonymous_crash_reports": 1,
    }
    assert session_of(client, bystander["access_token"]).status_code == 200
    [event] = events_of(app, "auth.account_deleted")
    assert event["user_id"] == user_id
    assert event["status"] == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"confirmation": False}, {"confirmation": "true"}, {"confirmation": 1}, None],
    ids=["missing", "false", "string", "one", "no-body"],
)
def test_delete_account_without_confirmation_true_is_422_naming_it_and_deletes_nothing(
    app, client, auth, body
):
    data = auth.register()
    response = call(client, "DELETE", "/api/auth/delete-account", body, data["access_token"])
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["fields"]) == {"confirmation"}
    assert user_count(app, data["user"]["email"]) == 1
    assert session_of(client, data["access_token"]).status_code == 200


def test_delete_account_needs_a_valid_access_token(app, client, auth):
    data = auth.register()
    for token in ("null", expired_access_token(app, data["user"]["id"])):
        response = call(client, "DELETE", "/api/auth/delete-account", {"confirmation": True}, token)
        assert response.status_code == 401
    assert user_count(app, data["user"]["email"]) == 1


# --- register, retried ----------------------------------------------------------------------------


def test_a_register_retried_within_10_minutes_gets_201_with_working_tokens(app, client, auth):
    email = f"retry-{uuid.uuid4().hex[:8]}@example.com"
    first = call(client, "POST", "/api/auth/register", register_body(email))
    retry = call(client, "POST", "/api/auth/register", register_body(email))
    assert (first.status_code, retry.status_code) == (201, 201)
    again = retry.get_json()
    assert again["data"]["user"]["id"] == first.get_json()["data"]["user"]["id"]
    assert again["access_token"] != first.get_json()["access_token"]  # a session of its own
    assert session_of(client, again["access_token"]).status_code == 200
    assert session_of(client, first.get_json()["access_token"]).status_code == 200
    assert call(client, "POST", "/api/auth/refresh-token", again).status_code == 200
    assert user_count(app, email) == 1
    [event] = events_of(app, "auth.login.succeeded")
    assert event["details"]["via"] == "register_retry"


def test_a_register_of_an_account_older_than_10_minutes_is_409(app, client, monkeypatch):
    email = f"old-{uuid.uuid4().hex[:8]}@example.com"
    assert call(client, "POST", "/api/auth/register", register_body(email)).status_code == 201
    later = utcnow() + timedelta(minutes=10, seconds=5)
    monkeypatch.setattr(service, "utcnow", lambda: later)
    response = call(client, "POST", "/api/auth/register", register_body(email))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "email_taken"
    assert events_of(app, "auth.login.succeeded") == []


def test_a_register_with_another_password_is_409_and_counts_as_a_failed_login(app, client):
    email = f"other-{uuid.uuid4().hex[:8]}@example.com"
    assert call(client, "POST", "/api/auth/register", register_body(email)).status_code == 201
    wrong = {**register_body(email), "password": "somebody else's password"}
    for _ in range(app.config["LOGIN_LOCKOUT_THRESHOLD"]):
        response = call(client, "POST", "/api/auth/register", wrong)
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "email_taken"
    failures = events_of(app, "auth.login.failed")
    assert [e["details"]["reason"] for e in failures] == ["wrong_password"] * len(failures)
    assert {e["details"]["via"] for e in failures} == {"register_retry"}
    # Those failures locked the account, as as many wrong logins would have.
    login = call(client, "POST", "/api/auth/login", {"email": email, "password": PASSWORD})
    assert login.status_code == 401
    assert call(client, "POST", "/api/auth/register", register_body(email)).status_code == 409


def test_register_and_login_share_the_per_email_limit(app_factory):
    client = app_factory(RATELIMIT_ENABLED="true", RATELIMIT_LOGIN_PER_EMAIL="2 per minute")
    client = client.test_client()
    email = "limited@example.com"
    for ip in ("10.0.0.1", "10.0.0.2"):
        response = client.post(
            "/api/auth/login",
            json={"email": email, "password": "wrong password"},
            environ_base={"REMOTE_ADDR": ip},
        )
        assert response.status_code == 401
    response = client.post(
        "/api/auth/register", json=register_body(email), environ_base={"REMOTE_ADDR": "10.0.0.3"}
    )
    assert response.status_code == 429
    other = client.post(
        "/api/auth/register",
        json=register_body("free@example.com"),
        environ_base={"REMOTE_ADDR": "10.0.0.3"},
    )
    assert other.status_code == 201


# --- logout ---------------------------------------------------------------------------------------


def test_logout_with_a_refresh_token_and_an_expired_access_token_ends_that_session(
    app, client, auth
):
    email = f"out-{uuid.uuid4().hex[:8]}@example.com"
    data = auth.register(email)
    other = auth.login(email).get_json()["data"]
    session_id = session_of(client, data["access_token"]).get_json()["data"]["session_id"]
    expired = expired_access_token(app, data["user"]["id"], session_id)

    response = call(
        client, "POST", "/api/auth/logout", {"refresh_token": data["refresh_token"]}, expired
    )

    assert response.status_code == 200
    assert response.get_json() == {"success": True, "data": {"logged_out": True}}
    assert call(client, "POST", "/api/auth/refresh-token", data).status_code == 401
    assert session_of(client, data["access_token"]).status_code == 401
    assert session_of(client, other["access_token"]).status_code == 200
    with app.app_context():
        revoked = db.session.get(AuthSession, uuid.UUID(session_id))
        assert revoked.revoked_at is not None
        assert revoked.revoke_reason == "logout"
    [event] = events_of(app, "auth.logout")
    assert str(event["session_id"]) == session_id


def test_logout_with_an_empty_body_uses_the_access_token(client, auth):
    data = auth.register()
    response = call(client, "POST", "/api/auth/logout", {}, data["access_token"])
    assert response.status_code == 200
    assert response.get_json()["data"] == {"logged_out": True}
    assert session_of(client, data["access_token"]).status_code == 401
    assert call(client, "POST", "/api/auth/refresh-token", data).status_code == 401


@pytest.mark.parametrize("refresh", ["", "rotated-out", "unknown"])
def test_logout_without_a_live_refresh_token_or_valid_access_token_is_401(
    app, client, auth, refresh
):
    data = auth.register()
    current = call(client, "POST", "/api/auth/refresh-token", data).get_json()
    token = {
        "": "",
        "rotated-out": data["refresh_token"],
        "unknown": "0" * 32 + "." + "A" * 43,
    }[refresh]
    for bearer in ("null", expired_access_token(app, data["user"]["id"])):
        response = call(client, "POST", "/api/auth/logout", {"refresh_token": token}, bearer)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # A stale token at logout is no reuse: the session lives on.
    assert call(client, "POST", "/api/auth/refresh-token", current).status_code == 200


# --- an external auth server --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/auth/refresh-token"),
        ("POST", "/api/auth/change-password"),
        ("DELETE", "/api/auth/delete-account"),
        ("POST", "/api/auth/google"),
    ],
)
def test_local_account_routes_are_404_with_an_external_auth_server(app_factory, method, path):
    app = app_factory(AUTH_MODE="better-auth", AUTH_SERVER_URL="http://127.0.0.1:9")
    response = call(app.test_client(), method, path, {"confirmation": True})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "managed_by_auth_server"
