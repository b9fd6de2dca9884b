"""The mobile app's journey, replayed over HTTP against a real gunicorn on PostgreSQL.

Each call is what the app sends (api_service.dart and the screens that call it): its paths and
trailing slashes, `Content-Type: application/json` on every request, its stale access token or
the literal `Bearer null` on the public routes, and its bodies; each answer is read the way the
app reads it (the fields and the types it casts to).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app_client import App
from tests.conftest import free_port
from tests.gunicorn_server import Server, migrated_postgres_database, running_gunicorn
from tests.smtp_server import SmtpServer

EMAIL = "journey@example.com"
PASSWORD = "Journey passw0rd"
NEW_PASSWORD = "An0ther journey password"
TOKEN_IN_MAIL = re.compile(r"token=([A-Za-z0-9_\-]+)")


@pytest.fixture
def server(pg_url: str, tmp_path: Path) -> Iterator[tuple[Server, SmtpServer]]:
    with (
        SmtpServer(free_port()) as smtp,
        migrated_postgres_database(pg_url) as url,
        running_gunicorn(
            url,
            tmp_path / "gunicorn.log",
            env={
                "MAIL_BACKEND": "smtp",
                "MAIL_SERVER": "127.0.0.1",
                "MAIL_PORT": str(smtp.port),
                "MAIL_USE_TLS": "false",
                "RATELIMIT_ENABLED": "false",
            },
        ) as gunicorn,
    ):
        yield gunicorn, smtp


@pytest.mark.postgres
def test_the_apps_journey_of_auth_profile_habits_and_crash_reports(
    server: tuple[Server, SmtpServer],
) -> None:
    gunicorn, smtp = server
    app = App(gunicorn)

    # Register (register_screen.dart), then the app's retry of it after a lost answer.
    register = {
        "email": EMAIL,
        "password": PASSWORD,
        "country": "US",
        "annual_income": 0,
        "timezone": "America/New_York",
    }
    first = app.call("POST", "/auth/register", register)
    assert first.status_code == 201
    retried = app.call("POST", "/auth/register", register)
    assert retried.status_code == 201
    app.take_tokens(retried)

    # Login: exactly 200, tokens at the top level; a stale bearer rides along.
    logged_in = app.call("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert logged_in.status_code == 200
    app.take_tokens(logged_in)

    # The dashboard loads the profile: data is a map, income a number, has_onboarded a bool.
    me = app.call("GET", "/users/me")
    assert me.status_code == 200
    profile = me.json()["data"]
    assert isinstance(profile["income"], int | float)
    assert profile["has_onboarded"] is False
    assert isinstance(profile["profile_completion"], int)

    # The three PATCH bodies, then the settings screen reads its values from the top level.
    for body in (
        {"name": "Journey"},
        {
            "name": "Journey",
            "email": EMAIL,
            "income": 6000.0,
            "savings_goal": 500.0,
            "region": "US",
            "budget_method": "50/30/20 Rule",
        },
        {
            "dark_mode": True,
            "notifications": True,
            "biometric_auth": False,
            "auto_sync": False,
            "offline_mode": True,
            "currency": "USD",
            "language": "English",
            "date_format": "MM/dd/yyyy",
            "budget_alert_threshold": 80.0,
        },
    ):
        assert app.call("PATCH", "/users/me", body).status_code == 200
    settings = app.call("GET", "/users/me").json()
    assert settings["auto_sync"] is False
    assert settings["data"]["income"] == 6000
    assert settings["data"]["dark_mode_enabled"] is True

    # Habits: create, list, complete twice, progress, uncomplete, edit, delete.
    created = app.call(
        "POST",
        "/habits/",
        {"title": "Walk", "description": "", "target_frequency": "daily"},
    )
    assert created.status_code == 201
    habit_id = created.json()["data"]["id"]
    assert isinstance(habit_id, str)
    listed = app.call("GET", "/habits/").json()["data"]
    assert [habit["id"] for habit in listed] == [habit_id]
    day = {"date": "2026-11-28"}
    assert app.call("POST", f"/habits/{habit_id}/complete", day).status_code == 200
    again = app.call("POST", f"/habits/{habit_id}/complete", day)
    assert again.json()["data"]["status"] == "already_completed"
    progress = app.call("GET", f"/habits/{habit_id}/progress")
    assert progress.status_code == 200
    undone = app.call("DELETE", f"/habits/{habit_id}/complete", day)
    assert undone.json()["data"]["status"] == "uncompleted"
    renamed = app.call("PATCH", f"/habits/{habit_id}", {"title": "Walk more"})
    assert renamed.json()["data"]["title"] == "Walk more"
    assert app.call("DELETE", f"/habits/{habit_id}").status_code == 200
    # Operators' runbooks probe the versioned path.
    assert app.call("GET", "/v1/habits").status_code == 200

    # Refresh, as the interceptor does: the stale access token in the header.
    refreshed = app.call("POST", "/auth/refresh-token", {"refresh_token": app.refresh})
    assert refreshed.status_code == 200
    app.take_tokens(refreshed)

    # A crash report, sent with `Bearer null` by package:http.
    report = {
        "id": "1764366423123",
        "timestamp": "2026-11-28T21:47:03.123",
        "error": "SocketException: Failed host lookup",
        "stackTrace": None,
        "severity": "high",
        "category": "network",
        "context": {"screen": "dashboard"},
        "appVersion": "1.0.0 (1)",
        "platform": "android",
        "deviceInfo": "Android Device",
        "isConnected": False,
        "userId": None,
    }
    anonymous = App(gunicorn)
    sent = anonymous.call("POST", "/errors/report", report)
    assert sent.status_code == 202
    assert anonymous.call("POST", "/errors/report", report).json() == sent.json()

    # Change the password: 200 with a top-level success.
    changed = app.call(
        "POST",
        "/auth/change-password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "timestamp": "2026-11-28T21:50:00.000",
        },
    )
    assert changed.status_code == 200
    assert changed.json()["success"] is True

    # Forget it, and reset it by the mailed token.
    forgot = App(gunicorn).call(
        "POST",
        "/auth/forgot-password",
        {"email": EMAIL, "client_id": "mita_flutter_app", "redirect_url": "https://x.invalid"},
    )
    assert forgot.status_code == 202
    (mail,) = smtp.inbox.wait_for(1, timeout=10)
    found = TOKEN_IN_MAIL.search(mail.get_content())
    assert found
    token = found.group(1)
    assert App(gunicorn).call("GET", "/auth/verify-reset-token", token=token).status_code == 200
    reset = App(gunicorn).call(
        "POST", "/auth/reset-password", {"token": token, "new_password": PASSWORD}
    )
    assert reset.status_code == 200
    # Every session ended with the reset: the app gets a 401, refreshes, and gets a 401.
    assert app.call("GET", "/users/me").status_code == 401
    assert app.call("POST", "/auth/refresh-token", {"refresh_token": app.refresh}).status_code == (
        401
    )
    app.take_tokens(app.call("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD}))

    # Delete the account: 200 with a top-level success; then login is 401.
    deleted = app.call(
        "DELETE",
        "/auth/delete-account",
        {"timestamp": "2026-11-28T22:00:00.000", "confirmation": True},
    )
    assert deleted.status_code == 200
    assert deleted.json()["success"] is True
    gone = App(gunicorn).call("POST", "/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert gone.status_code == 401
    assert app.call("GET", "/users/me").status_code == 401
