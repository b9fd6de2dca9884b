"""The account flows of /api/auth, end to end through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import statistics
import time

import jwt
import pytest
from sqlalchemy import select

from mita_app.extensions import db
from mita_app.models import AuthSession, User
from tests.conftest import PASSWORD, TEST_SECRET


def session_of(client, token):
    return client.get("/api/auth/session", headers={"Authorization": f"Bearer {token}"})


def refresh(client, refresh_token):
    return client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


def test_register_returns_a_token_pair_and_the_user(client, auth):
    data = auth.register("New@Example.com", country="fr", annual_income=52000.5)
    assert data["token_type"] == "bearer"
    assert data["expires_in"] == 3600
    assert data["user"]["email"] == "new@example.com"
    assert data["user"]["country"] == "FR"
    assert data["user"]["income"] == 4333.38  # a twelfth of the yearly income, as a number
    assert data["user"]["role"] == "user"
    assert len(data["user"]["id"]) == 36  # a UUID, not a sequential integer
    assert session_of(client, data["access_token"]).status_code == 200


def test_access_token_carries_every_required_claim(app, auth):
    data = auth.register()
    claims = jwt.decode(
        data["access_token"],
        TEST_SECRET,
        algorithms=["HS256"],
        audience=app.config["JWT_AUDIENCE"],
        issuer=app.config["JWT_ISSUER"],
    )
    assert set(claims) == {"sub", "sid", "jti", "iat", "exp", "iss", "aud", "type"}
    assert claims["type"] == "access"
    assert claims["sub"] == data["user"]["id"]
    assert claims["exp"] - claims["iat"] == 3600


def test_refresh_token_is_opaque_and_stored_only_as_a_digest(app, auth):
    data = auth.register()
    refresh_token = data["refresh_token"]
    assert refresh_token.count(".") == 1  # not a JWT
    assert len(refresh_token.split(".")[1]) >= 43  # >= 256 bits of base64url
    with app.app_context():
        stored = db.session.scalars(select(AuthSession.refresh_token_hash)).all()
    assert refresh_token not in stored
    assert all(len(value) == 64 for value in stored)


def test_registering_a_taken_email_gets_409_email_taken(client, auth):
    auth.register("taken@example.com")
    response = client.post(
        "/api/auth/register",
        json={"email": " TAKEN@example.com", "password": "another long password"},
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "email_taken"


def test_login_with_the_right_password_opens_a_new_session(client, auth):
    first = auth.register("login@example.com")
    response = auth.login("LOGIN@example.com")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["user"]["id"] == first["user"]["id"]
    first_sid = session_of(client, first["access_token"]).get_json()["data"]["session_id"]
    second_sid = session_of(client, data["access_token"]).get_json()["data"]["session_id"]
    assert first_sid != second_sid


@pytest.mark.parametrize("case", ["unknown_email", "wrong_password", "disabled_account"])
def test_failed_logins_are_indistinguishable(app, client, auth, case):
    auth.register("victim@example.com")
    if case == "disabled_account":
        with app.app_context():
            db.session.scalar(select(User)).is_active = False
            db.session.commit()
    email = "nobody@example.com" if case == "unknown_email" else "victim@example.com"
    password = "wrong password" if case == "wrong_password" else PASSWORD
    response = auth.login(email, password)
    assert response.status_code == 401
    error = response.get_json()["error"]
    assert (error["code"], error["message"]) == (
        "invalid_credentials",
        "Invalid email or password.",
    )
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="mita"'


def test_repeated_failures_lock_the_account_even_for_the_right_password(app, client, auth):
    auth.register("locked@example.com")
    for _ in range(5):
        assert auth.login("locked@example.com", "wrong password").status_code == 401
    locked = auth.login("locked@example.com")
    assert locked.status_code == 401
    assert locked.get_json()["error"]["code"] == "invalid_credentials"
    with app.app_context():
        user = db.session.scalar(select(User))
        user.locked_until = user.locked_until.replace(year=2000)
        db.session.commit()
    assert auth.login("locked@example.com").status_code == 200


def test_failures_outside_the_window_do_not_add_up(app, client, auth):
    auth.register("slow@example.com")
    for _ in range(4):
        auth.login("slow@example.com", "wrong password")
    with app.app_context():
        user = db.session.scalar(select(User))
        user.first_failed_login_at = user.first_failed_login_at.replace(year=2000)
        db.session.commit()
    for _ in range(4):
        auth.login("slow@example.com", "wrong password")
    assert auth.login("slow@example.com").status_code == 200


def test_a_successful_login_resets_the_failure_count(client, auth):
    auth.register("reset@example.com")
    for _ in range(4):
        auth.login("reset@example.com", "wrong password")
    assert auth.login("reset@example.com").status_code == 200
    for _ in range(4):
        auth.login("reset@example.com", "wrong password")
    assert auth.login("reset@example.com").status_code == 200


def test_login_time_does_not_reveal_whether_the_account_exists(app_factory):
    # Real password hashing here: the dummy hash must cost what a real check costs.
    app = app_factory(PASSWORD_HASH_METHOD="pbkdf2:sha256:100000")
    client = app.test_client()
    client.post("/api/auth/register", json={"email": "real@example.com", "password": PASSWORD})

    def login_time(email: str) -> float:
        start = time.perf_counter()
        response = client.post(
            "/api/auth/login", json={"email": email, "password": "wrong password"}
        )
        elapsed = time.perf_counter() - start
        assert response.status_code == 401
        return elapsed

    # Keep the lockout out of the measurement: it would skip the real hash check.
    app.config["LOGIN_LOCKOUT_THRESHOLD"] = 10**6
    # Interleaved, so a slow spell of the machine weighs on both alike.
    pairs = [(login_time("ghost@example.com"), login_time("real@example.com")) for _ in range(20)]
    unknown = statistics.median(u for u, _ in pairs)
    wrong = statistics.median(w for _, w in pairs)
    assert abs(unknown - wrong) / max(unknown, wrong) < 0.20, (unknown, wrong)


def test_refresh_rotates_the_pair_and_kills_the_old_refresh_token(client, auth):
    data = auth.register()
    response = refresh(client, data["refresh_token"])
    assert response.status_code == 200
    rotated = response.get_json()["data"]
    assert rotated["refresh_token"] != data["refresh_token"]
    assert session_of(client, rotated["access_token"]).status_code == 200
    assert refresh(client, rotated["refresh_token"]).status_code == 200


def test_reusing_a_rotated_out_refresh_token_revokes_the_whole_family(client, auth):
    data = auth.register()
    first = refresh(client, data["refresh_token"]).get_json()["data"]
    second = refresh(client, first["refresh_token"]).get_json()["data"]

    replay = refresh(client, data["refresh_token"])  # the oldest member of the family
    assert replay.status_code == 401
    assert replay.get_json()["error"]["code"] == "invalid_token"
    assert 'error="invalid_token"' in replay.headers["WWW-Authenticate"]
    # Every token of the family is dead now, the newest included.
    assert refresh(client, second["refresh_token"]).status_code == 401
    for token in (data, first, second):
        assert session_of(client, token["access_token"]).status_code == 401


def test_reuse_revokes_only_that_family(app, client, auth):
    app.config["REFRESH_REUSE_GRACE"] = 0  # a replay at once is reuse only without the grace
    data = auth.register("two@example.com")
    other = auth.login("two@example.com").get_json()["data"]
    refresh(client, data["refresh_token"])
    assert refresh(client, data["refresh_token"]).status_code == 401
    assert session_of(client, other["access_token"]).status_code == 200


@pytest.mark.parametrize(
    "token",
    ["", "x", "0" * 32 + "." + "A" * 43, "not.a.jwt", "a" * 600],
    ids=["empty", "short", "unknown-session", "jwt-shaped", "too-long"],
)
def test_bad_refresh_tokens_get_401_or_422_never_500(client, token):
    response = refresh(client, token)
    assert response.status_code in (401, 422)
    if response.status_code == 401:
        assert response.get_json()["error"]["code"] == "invalid_token"


def test_an_access_token_is_not_a_refresh_token(client, auth):
    data = auth.register()
    assert refresh(client, data["access_token"]).status_code == 401


def test_logout_revokes_the_callers_session_only(client, auth):
    data = auth.register("out@example.com")
    other = auth.login("out@example.com").get_json()["data"]
    response = client.post("/api/auth/logout", headers=auth.bearer(data["access_token"]))
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "data": {"logged_out": True}}
    assert session_of(client, data["access_token"]).status_code == 401
    assert refresh(client, data["refresh_token"]).status_code == 401
    assert session_of(client, other["access_token"]).status_code == 200


def test_logout_all_revokes_every_session_of_the_user(client, auth):
    data = auth.register("all@example.com")
    other = auth.login("all@example.com").get_json()["data"]
    stranger = auth.register("stranger@example.com")
    assert (
        client.post("/api/auth/logout-all", headers=auth.bearer(data["access_token"])).status_code
        == 204
    )
    for token in (data, other):
        assert session_of(client, token["access_token"]).status_code == 401
        assert refresh(client, token["refresh_token"]).status_code == 401
    assert session_of(client, stranger["access_token"]).status_code == 200


def test_password_change_keeps_this_session_and_ends_the_others(client, auth):
    data = auth.register("pw@example.com")
    other = auth.login("pw@example.com").get_json()["data"]
    response = client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new password"},
        headers=auth.bearer(data["access_token"]),
    )
    assert response.status_code == 200
    assert session_of(client, data["access_token"]).status_code == 200
    assert session_of(client, other["access_token"]).status_code == 401
    assert auth.login("pw@example.com").status_code == 401
    assert auth.login("pw@example.com", "a brand new password").status_code == 200


def test_password_change_with_a_wrong_current_password_is_refused(client, auth):
    data = auth.register("pw2@example.com")
    response = client.post(
        "/api/auth/password",
        json={"current_password": "not it at all", "new_password": "a brand new password"},
        headers=auth.bearer(data["access_token"]),
    )
    # 403, not 401: the caller's token is fine and the app must not log them out.
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "invalid_current_password"
    assert auth.login("pw2@example.com").status_code == 200


def test_a_disabled_user_is_locked_out_of_every_path(app, client, auth):
    data = auth.register("gone@example.com")
    with app.app_context():
        from mita_app.auth.accounts import get_user, set_active

        set_active(get_user("gone@example.com"), False)
    assert session_of(client, data["access_token"]).status_code == 401
    assert refresh(client, data["refresh_token"]).status_code == 401
    assert auth.login("gone@example.com").status_code == 401


def test_session_endpoint_describes_the_presented_token(client, auth):
    data = auth.register()
    body = session_of(client, data["access_token"]).get_json()["data"]
    assert body["user_id"] == data["user"]["id"]
    assert body["role"] == "user"
    assert set(body) == {"user_id", "role", "session_id", "expires_at"}


def test_admin_only_views_answer_403_insufficient_scope_to_users(app, client, auth):
    from flask import Blueprint

    from mita_app.auth import login_required
    from mita_app.validation import ok

    bp = Blueprint("admin_probe", __name__)

    @bp.get("/admin-probe")
    @login_required(role="admin")
    def probe():
        return ok({"admin": True})

    app.register_blueprint(bp)
    user = auth.register("plain@example.com")
    response = client.get("/admin-probe", headers=auth.bearer(user["access_token"]))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]

    with app.app_context():
        from mita_app.auth.accounts import get_user, set_role

        set_role(get_user("plain@example.com"), "admin")
    assert client.get("/admin-probe", headers=auth.bearer(user["access_token"])).status_code == 200
