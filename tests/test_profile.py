"""GET and PATCH /api/users/me, as the mobile app calls them: its bodies, its headers, its types."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mita_app.extensions import db
from mita_app.models import BudgetPlan, User
from tests.budget_helpers import AppUser
from tests.conftest import AuthActions

# Every request of the app carries these (api_service.dart: contentType on the Dio instance).
APP_HEADERS = {"Content-Type": "application/json"}
# The three bodies the app PATCHes (profile_screen, profile_settings_screen, user_settings_screen).
NAME_ONLY = {"name": "Ada Lovelace"}
PROFILE_SETTINGS = {
    "name": "Ada",
    "email": None,  # replaced per test: the app sends the address it shows
    "income": 6000.0,
    "savings_goal": 500.0,
    "region": "Europe",
    "budget_method": "Zero-Based",
}
APP_SETTINGS = {
    "dark_mode": True,
    "notifications": False,
    "biometric_auth": True,
    "auto_sync": False,
    "offline_mode": False,
    "currency": "EUR",
    "language": "English",
    "date_format": "dd/MM/yyyy",
    "budget_alert_threshold": 75.0,
}


def headers(token: str) -> dict[str, str]:
    return {**APP_HEADERS, "Authorization": f"Bearer {token}"}


def me(client: FlaskClient, token: str) -> Any:
    return client.get("/api/users/me", headers=headers(token))


def patch(client: FlaskClient, token: str, body: dict[str, Any]) -> Any:
    return client.patch("/api/users/me", json=body, headers=headers(token))


@pytest.fixture
def account(auth: AuthActions) -> dict[str, Any]:
    """A user registered with the app's own register body."""
    response = auth.client.post(
        "/api/auth/register",
        json={
            "email": "ada@example.com",
            "password": "Str0ng password",
            "country": "US",
            "annual_income": 0,
            "timezone": "America/New_York",
        },
        headers={**APP_HEADERS, "Authorization": "Bearer null"},
    )
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json()["data"])


def test_me_has_every_field_the_app_reads_with_the_app_types(
    client: FlaskClient, account: dict[str, Any]
) -> None:
    response = me(client, account["access_token"])

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    data = response.get_json()["data"]
    types = {
        "id": str,
        "email": str,
        "name": str,
        "income": (int, float),
        "savings_goal": (int, float),
        "currency": str,
        "country": str,
        "timezone": str,
        "budget_method": str,
        "has_onboarded": bool,
        "notifications_enabled": bool,
        "dark_mode_enabled": bool,
        "email_verified": bool,
        "verified_email": bool,
        "member_since": str,
        "profile_completion": int,
        "created_at": str,
    }
    for name, kind in types.items():
        assert isinstance(data[name], kind), (name, data[name])
    assert not isinstance(data["profile_completion"], bool)
    assert data["region"] is None
    assert data["name"] == ""
    assert data["income"] == 0
    assert data["has_onboarded"] is False
    assert 0 <= data["profile_completion"] <= 100
    assert data["created_at"].endswith(("Z", "+00:00"))


def test_me_puts_the_settings_screen_values_at_the_top_level_too(
    client: FlaskClient, account: dict[str, Any]
) -> None:
    body = me(client, account["access_token"]).get_json()

    for name in ("auto_sync", "offline_mode", "date_format", "budget_alert_threshold"):
        assert body[name] == body["data"][name]
    assert body["budget_alert_threshold"] == 80


def test_each_of_the_app_bodies_is_stored(client: FlaskClient, account: dict[str, Any]) -> None:
    token = account["access_token"]
    profile_settings = {**PROFILE_SETTINGS, "email": "ada@example.com"}

    for body in (NAME_ONLY, profile_settings, APP_SETTINGS):
        response = patch(client, token, body)
        assert response.status_code == 200, response.get_json()

    data = me(client, token).get_json()["data"]
    assert data["name"] == "Ada"
    assert data["income"] == 6000
    assert isinstance(data["income"], (int, float))
    assert data["savings_goal"] == 500
    assert data["region"] == "Europe"
    assert data["budget_method"] == "Zero-Based"
    assert data["dark_mode_enabled"] is True
    assert data["notifications_enabled"] is False
    assert data["biometric_auth"] is True
    assert data["auto_sync"] is False
    assert data["offline_mode"] is False
    assert data["currency"] == "EUR"
    assert data["language"] == "English"
    assert data["date_format"] == "dd/MM/yyyy"
    assert data["budget_alert_threshold"] == 75


def test_money_is_a_number_with_at_most_two_places(
    client: FlaskClient, account: dict[str, Any]
) -> None:
    token = account["access_token"]

    assert patch(client, token, {"income": 0.1 + 0.2}).status_code == 200  # a double's noise
    assert me(client, token).get_json()["data"]["income"] == 0.3
    assert patch(client, token, {"income": 1234.56}).status_code == 200
    assert me(client, token).get_json()["data"]["income"] == 1234.56

    refused = patch(client, token, {"income": 12.345})
    assert refused.status_code == 422
    assert set(refused.get_json()["error"]["fields"]) == {"income"}


def test_income_is_stored_as_numeric_not_float(
    app: Flask, client: FlaskClient, account: Any
) -> None:
    patch(client, account["access_token"], {"income": 4333.38})

    with app.app_context():
        column = User.__table__.c.income
        income = db.session.scalar(select(column))
    assert str(income) == "4333.38"
    assert column.type.__class__.__name__ == "Numeric"


def test_unknown_keys_are_ignored_and_known_keys_still_stored(
    client: FlaskClient, account: dict[str, Any]
) -> None:
    token = account["access_token"]

    response = patch(
        client, token, {"name": "Grace", "future_setting": {"x": 1}, "role": "admin", "id": "1"}
    )

    assert response.status_code == 200
    data = me(client, token).get_json()["data"]
    assert data["name"] == "Grace"
    assert data["role"] == "user"  # not a profile field: ignored, never applied
    assert data["id"] == account["user"]["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"region": "Mars"}, "region"),
        ({"region": "us"}, "region"),
        ({"budget_method": "YOLO"}, "budget_method"),
        ({"income": -1}, "income"),
        ({"income": "lots"}, "income"),
        ({"income": True}, "income"),
        ({"savings_goal": None}, "savings_goal"),
        ({"name": None}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"email": "not-an-email"}, "email"),
        ({"currency": "EURO"}, "currency"),
        ({"dark_mode": "yes please"}, "dark_mode"),
        ({"budget_alert_threshold": 101}, "budget_alert_threshold"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"country": "XX"}, "country"),
        ({"name": "a\x00b"}, "name"),
    ],
)
def test_a_bad_value_is_422_naming_the_field_and_changes_nothing(
    client: FlaskClient, account: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    token = account["access_token"]
    before = me(client, token).get_json()["data"]

    response = patch(client, token, {**body, "language": "Deutsch"})

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["fields"]) == {field}
    assert me(client, token).get_json()["data"] == before


def test_null_clears_region_country_and_timezone(
    client: FlaskClient, account: dict[str, Any]
) -> None:
    token = account["access_token"]
    patch(client, token, {"region": "UK"})

    response = patch(client, token, {"region": None, "country": None, "timezone": None})

    assert response.status_code == 200
    data = me(client, token).get_json()["data"]
    assert (data["region"], data["country"], data["timezone"]) == (None, None, None)


def test_changing_email_to_a_taken_one_is_409(
    client: FlaskClient, auth: AuthActions, account: dict[str, Any]
) -> None:
    other = auth.register("grace@example.com")

    response = patch(client, account["access_token"], {"email": "Grace@Example.com"})

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "email_taken"
    assert me(client, other["access_token"]).get_json()["data"]["email"] == "grace@example.com"


def test_a_new_email_is_unverified_and_signs_in(
    client: FlaskClient, auth: AuthActions, account: dict[str, Any]
) -> None:
    response = patch(client, account["access_token"], {"email": "ada.new@example.com"})

    assert response.status_code == 200
    assert response.get_json()["data"]["email_verified"] is False
    assert auth.login("ada.new@example.com", "Str0ng password").status_code == 200
    assert auth.login("ada@example.com", "Str0ng password").status_code == 401


def test_sending_its_own_email_unchanged_is_fine(
    client: FlaskClient, account: dict[str, Any]
) -> None:
    body = {**PROFILE_SETTINGS, "email": "ADA@example.com "}

    assert patch(client, account["access_token"], body).status_code == 200


def test_profile_completion_grows_as_the_profile_fills(
    client: FlaskClient, account: dict[str, Any]
) -> None:
    token = account["access_token"]
    before = me(client, token).get_json()["data"]["profile_completion"]

    patch(client, token, {**PROFILE_SETTINGS, "email": "ada@example.com"})

    after = me(client, token).get_json()["data"]["profile_completion"]
    assert before < after == 100


@pytest.mark.parametrize("path", ["/api/users/me", "/api/users/me/", "/api/v1/users/me"])
def test_every_spelling_of_the_path_answers(
    client: FlaskClient, account: dict[str, Any], path: str
) -> None:
    response = client.get(path, headers=headers(account["access_token"]))

    assert response.status_code == 200
    assert response.get_json()["data"]["email"] == "ada@example.com"


def test_me_without_a_valid_token_is_401_never_500(client: FlaskClient) -> None:
    for value in ("Bearer null", "Bearer ", "Bearer undefined", "Basic abc", None):
        sent = {**APP_HEADERS, **({"Authorization": value} if value else {})}
        response = client.get("/api/users/me", headers=sent)
        assert response.status_code == 401, value
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="mita"')


def test_a_new_income_or_savings_goal_rebuilds_this_months_plan_only(
    app: Flask, client: FlaskClient, auth: AuthActions, budget_clock: Any
) -> None:
    budget_clock(datetime(2026, 11, 10, 15, tzinfo=UTC))
    user = AppUser(client, auth)
    with app.app_context():
        # An October plan, made when October was current, must stay as it was.
        account = db.session.scalar(select(User).order_by(User.created_at.desc()))
        assert account is not None
        account_id = account.id
    user.onboard()
    october = BudgetPlan(
        user_id=account_id,
        month=date(2026, 10, 1),
        income=Decimal(5000),
        fixed=Decimal(2150),
        savings=Decimal(500),
        discretionary=Decimal(2350),
        lines=[],
    )
    with app.app_context():
        db.session.add(october)
        db.session.commit()

    def month_total(month: int) -> int:
        days = user.get(f"/api/calendar/saved/2026/{month}")["calendar"]
        return sum(round(day["limit"] * 100) for day in days)

    assert month_total(11) == 550000
    assert user.send("PATCH", "/api/users/me", {"income": 7000.0}).status_code == 200
    assert month_total(11) == 650000
    assert user.send("PATCH", "/api/users/me", {"savings_goal": 1000.0}).status_code == 200
    assert month_total(11) == 600000
    # Income below fixed costs plus savings: the savings give way, the bills stay planned.
    assert user.send("PATCH", "/api/users/me", {"income": 2500.0}).status_code == 200
    assert month_total(11) == 215000
    with app.app_context():
        plans = db.session.scalars(
            select(BudgetPlan).where(BudgetPlan.user_id == account_id).order_by(BudgetPlan.month)
        ).all()
        assert [(plan.month, plan.income, plan.savings) for plan in plans] == [
            (date(2026, 10, 1), Decimal("5000.00"), Decimal("500.00")),
            (date(2026, 11, 1), Decimal("2500.00"), Decimal("350.00")),
        ]
