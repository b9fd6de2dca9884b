"""What the budget tests share: a user sending the app's exact requests, the app's onboarding
body, money and times as the app writes them, and expenses put straight into the ledger. The
budget clock is conftest's `budget_clock` fixture."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask

from mita_app.domain.days import local_date
from mita_app.extensions import db
from mita_app.models import Transaction, User

NEW_YORK = ZoneInfo("America/New_York")

# The body the app's onboarding_finish_screen.dart builds (contract §3), exactly.
ONBOARDING: dict[str, Any] = {
    "region": "US",
    "timezone": "America/New_York",
    "income": {"monthly_income": 6000.0, "additional_income": 0},
    "fixed_expenses": {"rent": 2000.0, "utilities": 150.0},
    "spending_habits": {
        "dining_out_per_month": 9,
        "coffee_per_week": 5,
        "entertainment_per_month": 6,
        "clothing_per_month": 2,
        "transport_per_month": 8,
        "travel_per_year": 2,
    },
    "goals": {
        "savings_goal_amount_per_month": 500.0,
        "savings_goal_type": "save_more",
        "has_emergency_fund": True,
        "all_goals": ["save_more", "budgeting"],
    },
    "_meta": {
        "countryCode": "US",
        "stateCode": "NY",
        "incomeTier": "middle",
        "goals_list": ["save_more"],
        "habits_list": [],
    },
}


def onboarding_body(**changes: Any) -> dict[str, Any]:
    """The app's onboarding body with top-level keys replaced (`timezone="Asia/Tokyo"`)."""
    body = copy.deepcopy(ONBOARDING)
    body.update(changes)
    return body


class AppUser:
    """One registered user, sending requests with the app's headers (a JSON Content-Type on
    every request, bodiless ones too)."""

    def __init__(self, client: Any, auth: Any, **register: Any) -> None:
        self.client = client
        tokens = auth.register(**register)
        self.headers = {
            "Authorization": f"Bearer {tokens['access_token']}",
            "Content-Type": "application/json",
        }

    def send(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        return self.client.open(path, method=method, headers={**self.headers, **headers}, json=body)

    def get(self, path: str) -> Any:
        """GET `path`, asserting 200; its `data`."""
        response = self.send("GET", path)
        assert response.status_code == 200, (path, response.get_json())
        return response.get_json()["data"]

    def onboard(self, **changes: Any) -> Any:
        response = self.send("POST", "/api/onboarding/submit", onboarding_body(**changes))
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]

    def spend(self, amount: float, category: str, spent_at: str, **fields: Any) -> Any:
        """Record an expense as the app does; the created transaction (`data`)."""
        body = {"amount": amount, "category": category, "spent_at": spent_at, **fields}
        response = self.send("POST", "/api/transactions/", body)
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()["data"]


def onboarded(client: Any, auth: Any, **changes: Any) -> tuple[AppUser, uuid.UUID]:
    """A new user who onboarded with the app's body (top-level keys replaced), and their id."""
    user = AppUser(client, auth)
    user.onboard(**changes)
    return user, uuid.UUID(user.get("/api/users/me")["id"])


def cents(value: float) -> int:
    """An answer's money (a JSON number, never a bool) in cents."""
    assert isinstance(value, int | float), value
    assert not isinstance(value, bool), value
    return round(value * 100)


def app_instant(day: date, hour: int, minute: int = 0, zone: ZoneInfo = NEW_YORK) -> str:
    """What the app sends as `spent_at`: the local moment in UTC, with milliseconds and Z."""
    local = datetime.combine(day, time(hour, minute, 7, 250000), zone)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ledger_expense(
    app: Flask, user_id: uuid.UUID, amount: str, category: str, when: str, **fields: Any
) -> Any:
    """A transaction put straight into the ledger, on the local day of `when` (ISO, with an
    offset) in the user's time zone; its id."""
    instant = datetime.fromisoformat(when)
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        row = Transaction(
            user_id=user_id,
            amount=Decimal(amount),
            category=category,
            spent_at=instant,
            spent_on=local_date(user.timezone, instant),
            **fields,
        )
        db.session.add(row)
        db.session.commit()
        return row.id
