"""The mobile app's budget session, replayed over HTTP against a real gunicorn on PostgreSQL:
register, the onboarding preview and submit (and its retry), the dashboard, a month of expenses,
the calendar, today's budget, an affordability check, edits and deletes, habits, refresh and
logout. Every answer is read the way the app reads it, and every total is checked against the
ledger the app itself wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path

import pytest

from mita_app.domain.categories import CATEGORIES
from tests.app_client import App
from tests.budget_helpers import NEW_YORK, ONBOARDING, app_instant, cents
from tests.gunicorn_server import Server, migrated_postgres_database, running_gunicorn

ADD_EXPENSE_CATEGORIES = CATEGORIES[:9]  # the add-expense screen's: the vocabulary's first


@pytest.fixture
def server(pg_url: str, tmp_path: Path) -> Iterator[Server]:
    with (
        migrated_postgres_database(pg_url) as url,
        running_gunicorn(
            url, tmp_path / "gunicorn.log", env={"RATELIMIT_ENABLED": "false"}
        ) as gunicorn,
    ):
        yield gunicorn


def data(response: object) -> object:
    assert response.status_code in (200, 201), response.text  # type: ignore[attr-defined]
    return response.json()["data"]  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_the_apps_budget_session(server: Server) -> None:
    app = App(server)
    register = {
        "email": "budget@example.com",
        "password": "Budget passw0rd",
        "country": "US",
        "timezone": "America/New_York",
    }
    app.take_tokens(app.call("POST", "/auth/register", register))
    today = datetime.now(NEW_YORK).date()

    # Before onboarding the dashboard's calls answer empty, never an error.
    assert data(app.call("GET", "/budget/daily")) == []
    assert data(app.call("GET", f"/calendar/saved/{today.year}/{today.month}"))["calendar"] == []
    empty = data(app.call("GET", "/dashboard"))
    assert empty["balance"] == 0
    assert empty["daily_targets"] == []

    # The onboarding preview (api_service.dart), then the submit and the app's retry of it.
    shell = data(
        app.call(
            "POST",
            "/calendar/shell",
            {
                "savings_target": 500.0,
                "income": 6000.0,
                "location": "US",
                "fixed": {"rent": 2000.0, "utilities": 150.0},
                "weights": {"food": 0.15, "transportation": 0.1, "entertainment": 0.05},
                "year": today.year,
                "month": today.month,
            },
        )
    )
    assert sum(cents(day["limit"]) for day in shell["calendar"]) == 550000
    for _ in range(2):
        data(app.call("POST", "/onboarding/submit", ONBOARDING))
    assert data(app.call("GET", "/users/me"))["has_onboarded"] is True

    calendar = data(app.call("GET", f"/calendar/saved/{today.year}/{today.month}"))["calendar"]
    assert [day["day"] for day in calendar] == list(range(1, len(calendar) + 1))
    assert sum(cents(day["limit"]) for day in calendar) == 550000  # 6000 - 500 saved
    assert cents(calendar[0]["planned_budget"]["rent"]["planned"]) == 200000

    # A month of expenses, the way the add-expense screen sends them, on days up to today.
    created = []
    for i in range(30):
        day = date(today.year, today.month, 1 + i * (today.day - 1) // 29)
        body = {
            "amount": round(3.5 + i * 1.25, 2),
            "category": ADD_EXPENSE_CATEGORIES[i % 9],
            "currency": "USD",
            "description": f"Expense {i}",
            "spent_at": app_instant(day, 8 + i % 12),
        }
        if i % 9 == 0:
            body["notes"] = "Subcategory: Groceries"
        if i % 10 == 0:
            check = data(
                app.call(
                    "POST",
                    "/transactions/check-affordability",
                    {
                        "category": body["category"],
                        "amount": body["amount"],
                        "date": datetime.combine(day, time(12)).isoformat(),
                    },
                )
            )
            assert check["warning_level"] in {"safe", "caution", "warning", "danger", "blocked"}
            for key in ("amount", "daily_budget", "remaining_budget", "overage"):
                assert isinstance(check[key], int | float), key
            assert isinstance(check["percentage_used"], int | float)
            assert isinstance(check["impact_message"], str)
            assert isinstance(check["alternative_categories"], list)
        answer = data(app.call("POST", "/transactions/", body))
        assert isinstance(answer["id"], str)
        assert isinstance(answer["rebalanced"], bool)
        assert isinstance(answer["rebalance_covered"], int | float)
        assert answer["date"] == day.isoformat()
        created.append((answer["id"], body))

    # The app retries a create whose answer it lost: the same transaction, not a second one.
    retried = data(app.call("POST", "/transactions/", created[5][1]))
    assert retried["id"] == created[5][0]

    # Edit one, delete another (the edit screen's PUT, the list's DELETE).
    edited_id, edited = created[7]
    data(app.call("PUT", f"/transactions/{edited_id}", {**edited, "amount": 99.99}))
    deleted_id, _ = created[8]
    assert data(app.call("DELETE", f"/transactions/{deleted_id}"))["deleted"] is True
    assert app.call("GET", f"/transactions/{deleted_id}").status_code == 404

    listed = data(app.call("GET", "/transactions/", limit="10000"))
    assert len(listed) == 29
    instants = [row["spent_at"] for row in listed]
    assert [datetime.fromisoformat(s) for s in instants] == sorted(
        (datetime.fromisoformat(s) for s in instants), reverse=True
    )
    ledger = sum(cents(float(row["amount"])) for row in listed)
    assert (
        ledger
        == sum(cents(body["amount"]) for _, body in created)
        - cents(created[8][1]["amount"])
        - cents(edited["amount"])
        + 9999
    )
    assert any(row["notes"] == "Subcategory: Groceries" for row in listed)

    # Every read of the month agrees with the ledger.
    calendar = data(app.call("GET", f"/calendar/saved/{today.year}/{today.month}"))["calendar"]
    assert sum(cents(day["spent"]) for day in calendar) == ledger
    assert sum(cents(day["limit"]) for day in calendar) == 550000  # rebalancing moves, never adds
    live = data(app.call("GET", "/budget/live_status"))
    assert cents(live["monthly_spent"]) == cents(live["total_spent"]) == ledger
    assert cents(live["monthly_budget"]) == 550000
    assert isinstance(live["on_track"], bool)
    remaining = data(app.call("GET", "/budget/remaining"))
    assert cents(remaining["total_spent"]) == ledger
    assert cents(remaining["remaining"]) == 550000 - ledger
    daily = data(app.call("GET", "/budget/daily"))
    assert {day["status"] for day in daily} <= {"good", "warning", "over"}
    assert sum(cents(day["spent"]) for day in daily) == ledger
    dashboard = data(app.call("GET", "/dashboard"))
    assert cents(dashboard["balance"]) == 550000 - ledger
    assert len(dashboard["week"]) == 7
    assert [row["id"] for row in dashboard["transactions"]] == [row["id"] for row in listed[:10]]
    assert isinstance(dashboard["insights_preview"]["text"], str)

    # Habits, refresh, logout.
    habit = data(
        app.call("POST", "/habits/", {"title": "No takeaway", "target_frequency": "daily"})
    )
    assert data(app.call("POST", f"/habits/{habit['id']}/complete"))["status"] == "completed"
    app.take_tokens(app.call("POST", "/auth/refresh-token", {"refresh_token": app.refresh}))
    assert app.call("POST", "/auth/logout", {"refresh_token": app.refresh}).status_code == 200
    assert app.call("GET", "/dashboard").status_code == 401
