"""`flask user ...`: operator commands, checked end to end through the API they affect."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from click.testing import Result
from flask import Flask, Response
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from mita_app.auth import login_required
from mita_app.extensions import db
from mita_app.models import AuthSession, User
from mita_app.validation import ok
from tests.conftest import PASSWORD, AuthActions

NEW_PASSWORD = "a brand new passphrase"
ADMIN_ONLY = "/test-only/admin"


def invoke(runner: FlaskCliRunner, *args: str, input: str | None = None) -> Result:
    return runner.invoke(args=["user", *args], input=input)


def create(runner: FlaskCliRunner, email: str, *extra: str) -> Result:
    result = invoke(runner, "create", email, "--password", PASSWORD, *extra)
    assert result.exit_code == 0, result.output
    return result


def show(runner: FlaskCliRunner, identifier: str) -> dict[str, Any]:
    result = invoke(runner, "show", identifier)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def listed_emails(runner: FlaskCliRunner, *options: str) -> list[str]:
    result = invoke(runner, "list", *options)
    assert result.exit_code == 0, result.output
    return [line.split()[1] for line in result.stdout.splitlines()]


def sessions_of(app: Flask, email: str) -> list[AuthSession]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        assert user is not None
        rows = db.session.scalars(select(AuthSession).where(AuthSession.user_id == user.id))
        return list(rows)


def user_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User)) or 0


def me(client: FlaskClient, access_token: str) -> Response:
    return client.get("/api/users/me", headers=AuthActions.bearer(access_token))


def refresh(client: FlaskClient, refresh_token: str) -> Response:
    return client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


def session_role(client: FlaskClient, access_token: str) -> str:
    response = client.get("/api/auth/session", headers=AuthActions.bearer(access_token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["role"]


def assert_401(response: Response, code: str) -> None:
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert "WWW-Authenticate" in response.headers


def email() -> str:
    return f"op-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture
def admin_only_app(app: Flask) -> Flask:
    """The app with one extra route that only admins may call (added before any request)."""

    @login_required(role="admin")
    def admin_only() -> Response:
        return ok({"admin": True})

    app.add_url_rule(ADMIN_ONLY, "test_admin_only", admin_only)
    return app


# --- create -------------------------------------------------------------------------------------


def test_create_makes_a_user_who_can_log_in(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    result = create(runner, address)

    assert f"created {address}" in result.stdout
    assert "role=user" in result.stdout
    response = auth.login(address)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["user"]["email"] == address
    assert data["user"]["role"] == "user"
    assert session_role(client, data["access_token"]) == "user"
    assert user_count(app) == 1


def test_create_with_admin_role_gives_an_admin_session(
    runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    result = create(runner, address, "--role", "admin")

    assert "role=admin" in result.stdout
    response = auth.login(address)
    assert response.status_code == 200
    assert session_role(client, response.get_json()["data"]["access_token"]) == "admin"


def test_create_prompts_for_a_hidden_confirmed_password(
    runner: FlaskCliRunner, auth: AuthActions
) -> None:
    address = email()
    result = invoke(runner, "create", address, input=f"{PASSWORD}\n{PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert "Password:" in result.output
    assert "Repeat for confirmation:" in result.output
    assert PASSWORD not in result.output
    assert auth.login(address).status_code == 200


def test_create_prompt_asks_again_when_the_confirmation_differs(
    runner: FlaskCliRunner, auth: AuthActions
) -> None:
    address = email()
    typed = f"{PASSWORD}\nsomething else entirely\n{PASSWORD}\n{PASSWORD}\n"
    result = invoke(runner, "create", address, input=typed)

    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert auth.login(address).status_code == 200


def test_create_stores_the_email_normalized(runner: FlaskCliRunner, auth: AuthActions) -> None:
    result = create(runner, "  Mixed.Case@Example.COM ")

    assert "created mixed.case@example.com" in result.stdout
    assert show(runner, "mixed.case@example.com")["email"] == "mixed.case@example.com"
    assert auth.login("mixed.case@example.com").status_code == 200


@pytest.mark.parametrize("second", ["taken@example.com", "TAKEN@example.com", " taken@example.com"])
def test_create_with_a_taken_email_fails_and_says_so(
    app: Flask, runner: FlaskCliRunner, second: str
) -> None:
    create(runner, "taken@example.com")

    result = invoke(runner, "create", second, "--password", "another password")

    assert result.exit_code != 0
    assert "already exists" in result.stderr
    assert user_count(app) == 1


@pytest.mark.parametrize(
    ("address", "password", "field"),
    [
        ("not-an-email", PASSWORD, "email"),
        ("two@@example.com", PASSWORD, "email"),
        ("nodomain@localhost", PASSWORD, "email"),
        ("nul\x00@example.com", PASSWORD, "email"),
        ("ok@example.com", "short", "password"),
        ("ok@example.com", "x" * 129, "password"),
    ],
)
def test_create_with_invalid_input_fails_naming_the_field(
    app: Flask, runner: FlaskCliRunner, address: str, password: str, field: str
) -> None:
    result = invoke(runner, "create", address, "--password", password)

    assert result.exit_code != 0
    assert f"{field}:" in result.stderr
    assert password not in result.output
    assert user_count(app) == 0


def test_create_with_an_unknown_role_is_a_usage_error(app: Flask, runner: FlaskCliRunner) -> None:
    result = invoke(runner, "create", email(), "--password", PASSWORD, "--role", "root")

    assert result.exit_code == 2
    assert "--role" in result.stderr
    assert user_count(app) == 0


# --- list and show ------------------------------------------------------------------------------


def test_list_shows_every_user_newest_first(runner: FlaskCliRunner) -> None:
    addresses = [email() for _ in range(3)]
    for address in addresses:
        create(runner, address)

    assert listed_emails(runner) == list(reversed(addresses))
    assert listed_emails(runner, "--limit", "2") == list(reversed(addresses))[:2]


def test_list_filters_by_role_and_by_disabled(runner: FlaskCliRunner) -> None:
    plain, admin, disabled_user, disabled_admin = (email() for _ in range(4))
    create(runner, plain)
    create(runner, admin, "--role", "admin")
    create(runner, disabled_user)
    create(runner, disabled_admin, "--role", "admin")
    for address in (disabled_user, disabled_admin):
        assert invoke(runner, "disable", address).exit_code == 0

    assert set(listed_emails(runner)) == {plain, admin, disabled_user, disabled_admin}
    assert set(listed_emails(runner, "--role", "admin")) == {admin, disabled_admin}
    assert set(listed_emails(runner, "--role", "user")) == {plain, disabled_user}
    assert set(listed_emails(runner, "--disabled")) == {disabled_user, disabled_admin}
    assert listed_emails(runner, "--role", "admin", "--disabled") == [disabled_admin]


def test_list_line_carries_id_email_role_and_state(runner: FlaskCliRunner) -> None:
    address = email()
    create(runner, address, "--role", "admin")
    user_id = show(runner, address)["id"]

    assert invoke(runner, "list").stdout.split() == [user_id, address, "admin", "active"]
    invoke(runner, "disable", address)
    assert invoke(runner, "list").stdout.split() == [user_id, address, "admin", "disabled"]


def test_list_with_no_users_prints_nothing(runner: FlaskCliRunner) -> None:
    result = invoke(runner, "list")

    assert result.exit_code == 0
    assert result.stdout == ""


def test_show_by_email_and_by_id_prints_the_same_json(
    runner: FlaskCliRunner, auth: AuthActions
) -> None:
    address = email()
    create(runner, address, "--role", "admin")

    by_email = show(runner, address)
    by_id = show(runner, by_email["id"])
    by_upper_email = show(runner, address.upper())

    assert by_email == by_id == by_upper_email
    assert uuid.UUID(by_email["id"])
    assert by_email["email"] == address
    assert by_email["role"] == "admin"
    assert by_email["is_active"] is True
    assert by_email["locked_until"] is None
    assert by_email["live_sessions"] == 0
    assert "password_hash" not in by_email
    assert by_email["created_at"].endswith("+00:00")


def test_show_counts_live_sessions_only(runner: FlaskCliRunner, auth: AuthActions) -> None:
    address = email()
    first = auth.register(address)
    auth.login(address)
    assert show(runner, address)["live_sessions"] == 2

    auth.client.post("/api/auth/logout", headers=auth.bearer(first["access_token"]))

    assert show(runner, address)["live_sessions"] == 1


def test_show_reports_the_profile_registered_through_the_api(
    runner: FlaskCliRunner, auth: AuthActions
) -> None:
    address = email()
    auth.register(address, country="fr", income=4333.5, timezone="Europe/Paris")

    shown = show(runner, address)

    assert shown["country"] == "FR"
    assert shown["income"] == "4333.50"
    assert shown["timezone"] == "Europe/Paris"


# --- disable and enable -------------------------------------------------------------------------


def test_disable_revokes_tokens_and_blocks_login(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    first = auth.register(address)
    second = auth.login(address).get_json()["data"]
    # Both sessions are used once, so the auth cache holds them as live.
    assert me(client, first["access_token"]).status_code == 200
    assert me(client, second["access_token"]).status_code == 200

    result = invoke(runner, "disable", address)

    assert result.exit_code == 0, result.output
    assert f"disabled {address}" in result.stdout
    assert_401(me(client, first["access_token"]), "invalid_token")
    assert_401(me(client, second["access_token"]), "invalid_token")
    assert_401(refresh(client, first["refresh_token"]), "invalid_token")
    assert_401(auth.login(address), "invalid_credentials")
    rows = sessions_of(app, address)
    assert len(rows) == 2
    assert all(row.revoked_at is not None for row in rows)
    assert {row.revoke_reason for row in rows} == {"user_disabled"}
    assert show(runner, address)["is_active"] is False
    assert show(runner, address)["live_sessions"] == 0


def test_disabled_user_login_looks_like_a_wrong_password(
    runner: FlaskCliRunner, auth: AuthActions
) -> None:
    address = email()
    auth.register(address)
    wrong = auth.login(address, "not the password at all").get_json()["error"]
    invoke(runner, "disable", address)

    disabled = auth.login(address).get_json()["error"]

    assert {k: v for k, v in disabled.items() if k != "request_id"} == {
        k: v for k, v in wrong.items() if k != "request_id"
    }


def test_enable_lets_a_disabled_user_log_in_again(
    runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    old = auth.register(address)
    invoke(runner, "disable", address)

    result = invoke(runner, "enable", address)

    assert result.exit_code == 0, result.output
    assert f"enabled {address}" in result.stdout
    response = auth.login(address)
    assert response.status_code == 200, response.get_json()
    assert me(client, response.get_json()["data"]["access_token"]).status_code == 200
    # Re-enabling does not bring back sessions that disabling ended.
    assert_401(me(client, old["access_token"]), "invalid_token")
    assert show(runner, address)["is_active"] is True


def test_enable_clears_a_login_lockout(
    app: Flask, runner: FlaskCliRunner, auth: AuthActions
) -> None:
    address = email()
    auth.register(address)
    for _ in range(app.config["LOGIN_LOCKOUT_THRESHOLD"]):
        assert_401(auth.login(address, "wrong password here"), "invalid_credentials")
    assert_401(auth.login(address), "invalid_credentials")
    assert show(runner, address)["locked_until"] is not None

    result = invoke(runner, "enable", address)

    assert result.exit_code == 0, result.output
    assert show(runner, address)["locked_until"] is None
    assert auth.login(address).status_code == 200


# --- set-role -----------------------------------------------------------------------------------


def test_set_role_admin_is_seen_at_once_by_live_sessions(
    admin_only_app: Flask, runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    token = auth.register(address)["access_token"]
    assert session_role(client, token) == "user"
    forbidden = client.get(ADMIN_ONLY, headers=auth.bearer(token))
    assert forbidden.status_code == 403
    assert forbidden.get_json()["error"]["code"] == "insufficient_scope"

    result = invoke(runner, "set-role", address, "admin")

    assert result.exit_code == 0, result.output
    assert f"{address} is now admin" in result.stdout
    assert session_role(client, token) == "admin"
    assert client.get(ADMIN_ONLY, headers=auth.bearer(token)).status_code == 200
    assert show(runner, address)["role"] == "admin"


def test_set_role_user_takes_admin_rights_away_at_once(
    admin_only_app: Flask, runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    create(runner, address, "--role", "admin")
    token = auth.login(address).get_json()["data"]["access_token"]
    assert client.get(ADMIN_ONLY, headers=auth.bearer(token)).status_code == 200

    assert invoke(runner, "set-role", address, "user").exit_code == 0

    assert session_role(client, token) == "user"
    assert client.get(ADMIN_ONLY, headers=auth.bearer(token)).status_code == 403


def test_set_role_rejects_an_unknown_role(runner: FlaskCliRunner) -> None:
    address = email()
    create(runner, address)

    result = invoke(runner, "set-role", address, "superuser")

    assert result.exit_code == 2
    assert "superuser" in result.stderr
    assert show(runner, address)["role"] == "user"


# --- revoke-sessions ----------------------------------------------------------------------------


def test_revoke_sessions_ends_every_token_but_not_the_account(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    first = auth.register(address)
    second = auth.login(address).get_json()["data"]
    assert me(client, first["access_token"]).status_code == 200
    assert me(client, second["access_token"]).status_code == 200

    result = invoke(runner, "revoke-sessions", address)

    assert result.exit_code == 0, result.output
    assert f"revoked all sessions of {address}" in result.stdout
    for tokens in (first, second):
        assert_401(me(client, tokens["access_token"]), "invalid_token")
        assert_401(refresh(client, tokens["refresh_token"]), "invalid_token")
    assert {row.revoke_reason for row in sessions_of(app, address)} == {"operator"}
    assert auth.login(address).status_code == 200


def test_revoke_sessions_spares_other_users(
    runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    target, bystander = email(), email()
    auth.register(target)
    other = auth.register(bystander)

    assert invoke(runner, "revoke-sessions", target).exit_code == 0

    assert me(client, other["access_token"]).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 200


def test_revoke_sessions_with_no_sessions_succeeds(runner: FlaskCliRunner) -> None:
    address = email()
    create(runner, address)

    assert invoke(runner, "revoke-sessions", address).exit_code == 0


# --- set-password -------------------------------------------------------------------------------


def test_set_password_replaces_the_password_and_ends_sessions(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    old = auth.register(address)
    assert me(client, old["access_token"]).status_code == 200

    result = invoke(runner, "set-password", address, "--password", NEW_PASSWORD)

    assert result.exit_code == 0, result.output
    assert f"password of {address} set" in result.stdout
    assert_401(auth.login(address), "invalid_credentials")
    assert auth.login(address, NEW_PASSWORD).status_code == 200
    assert_401(me(client, old["access_token"]), "invalid_token")
    assert_401(refresh(client, old["refresh_token"]), "invalid_token")
    revoked = [row for row in sessions_of(app, address) if row.revoked_at is not None]
    assert [row.revoke_reason for row in revoked] == ["password_changed"]


def test_set_password_prompts_for_a_hidden_confirmed_password(
    runner: FlaskCliRunner, auth: AuthActions
) -> None:
    address = email()
    create(runner, address)

    result = invoke(runner, "set-password", address, input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert auth.login(address, NEW_PASSWORD).status_code == 200


def test_set_password_too_short_fails_and_changes_nothing(
    runner: FlaskCliRunner, client: FlaskClient, auth: AuthActions
) -> None:
    address = email()
    tokens = auth.register(address)

    result = invoke(runner, "set-password", address, "--password", "short")

    assert result.exit_code != 0
    assert "password:" in result.stderr
    assert me(client, tokens["access_token"]).status_code == 200
    assert auth.login(address).status_code == 200


def test_set_password_clears_a_login_lockout(
    app: Flask, runner: FlaskCliRunner, auth: AuthActions
) -> None:
    address = email()
    auth.register(address)
    for _ in range(app.config["LOGIN_LOCKOUT_THRESHOLD"]):
        auth.login(address, "wrong password here")
    assert_401(auth.login(address), "invalid_credentials")

    assert invoke(runner, "set-password", address, "--password", NEW_PASSWORD).exit_code == 0

    assert auth.login(address, NEW_PASSWORD).status_code == 200


# --- unknown users ------------------------------------------------------------------------------

UNKNOWN_EMAIL = "nobody@example.com"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("who", [UNKNOWN_EMAIL, UNKNOWN_ID])
@pytest.mark.parametrize(
    "command",
    [
        ["show", "{who}"],
        ["disable", "{who}"],
        ["enable", "{who}"],
        ["set-role", "{who}", "admin"],
        ["revoke-sessions", "{who}"],
        ["set-password", "{who}", "--password", NEW_PASSWORD],
    ],
    ids=lambda command: command[0],
)
def test_command_on_an_unknown_user_fails_naming_the_user(
    app: Flask, runner: FlaskCliRunner, command: list[str], who: str
) -> None:
    create(runner, email())

    result = invoke(runner, *(part.format(who=who) for part in command))

    assert result.exit_code != 0
    assert f"No user '{who}'" in result.stderr
    assert result.stdout == ""
    assert user_count(app) == 1
