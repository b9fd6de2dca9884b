"""GET /api/dashboard: the main screen's numbers from the plan and the ledger, on local days.

The user onboards with the app's own body (income 6000, rent 2000 on the 1st, utilities 150 on
the 5th, savings 500: 3350.00 a month of flexible money). In November 2026 (30 days) food gets
32.97 a day on the 18th and the whole day 111.66; on the 30th the day holds 111.63. December's
1st carries the rent: 2108.11.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.budget_helpers import AppUser, ledger_expense, onboarded
from tests.conftest import AuthActions, sql_statements

NOV_18 = datetime.fromisoformat("2026-11-18T15:00:00+00:00")  # 10:00 in New York, a Wednesday
DEC_2 = datetime.fromisoformat("2026-12-02T17:00:00+00:00")  # 12:00 in New York, a Wednesday
KEYS = {
    "today",
    "balance",
    "spent",
    "daily_targets",
    "week",
    "transactions",
    "insights_preview",
    "user_income",
    "monthly_budget",
    "monthly_spent",
}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def target(category: str, key: str, limit: float, spent: float, icon: str, color: str) -> dict:
    return {
        "category": category,
        "key": key,
        "limit": limit,
        "spent": spent,
        "icon": icon,
        "color": color,
    }


def day(name: str, date: str, status: str, spent: float, budget: float) -> dict:
    return {"day": name, "date": date, "status": status, "spent": spent, "budget": budget}


def test_the_dashboard_has_every_key_with_the_types_the_app_reads(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, user_id = onboarded(client, auth)
    lunch = ledger_expense(
        app, user_id, "10.00", "dining", "2026-11-18T14:00:00+00:00", description="Lunch"
    )

    response = user.send("GET", "/api/dashboard")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    data = response.get_json()["data"]
    assert set(data) == KEYS
    assert data["today"] == "2026-11-18"
    assert data["balance"] == 5490.0  # 5500.00 planned (6000 - 500 saved) - 10.00 spent
    assert data["spent"] == 10.0
    assert data["user_income"] == 6000.0
    assert data["monthly_budget"] == 5500.0
    assert data["monthly_spent"] == 10.0
    assert data["daily_targets"] == [
        target("Food & Dining", "food", 32.97, 10.0, "restaurant", "#4CAF50"),
        target("Transportation", "transportation", 16.28, 0.0, "directions_car", "#2196F3"),
        target("Shopping", "shopping", 10.85, 0.0, "shopping_bag", "#FF9800"),
        target("Entertainment", "entertainment", 13.57, 0.0, "movie", "#9C27B0"),
        target("Health & Fitness", "healthcare", 8.68, 0.0, "local_hospital", "#F44336"),
        target("Travel", "travel", 7.6, 0.0, "category", "#009688"),
        target("Education", "education", 5.43, 0.0, "category", "#3F51B5"),
        target("Other", "other", 16.28, 0.0, "category", "#9E9E9E"),
    ]
    assert sum(Decimal(str(t["limit"])) for t in data["daily_targets"]) == Decimal("111.66")
    assert data["week"] == [
        day("Mon", "2026-11-16", "good", 0.0, 111.66),
        day("Tue", "2026-11-17", "good", 0.0, 111.66),
        day("Wed", "2026-11-18", "good", 10.0, 111.66),
        day("Thu", "2026-11-19", "good", 0.0, 111.66),
        day("Fri", "2026-11-20", "good", 0.0, 111.66),
        day("Sat", "2026-11-21", "good", 0.0, 111.66),
        day("Sun", "2026-11-22", "good", 0.0, 111.66),
    ]
    assert data["transactions"] == [
        {
            "id": str(lunch),
            "amount": 10.0,
            "category": "dining",
            "action": "Lunch",
            "date": "2026-11-18T09:00:00-05:00",
            "icon": "restaurant",
            "color": "#4CAF50",
        }
    ]
    assert data["insights_preview"] == {
        "title": "On track",
        "text": "You have $101.66 left today and $5,490.00 left this month.",
    }
    for item in data["daily_targets"]:
        assert is_number(item["limit"])
        assert is_number(item["spent"])
        assert item["icon"] in {"restaurant", "directions_car", "movie", "shopping_bag"} | {
            "local_hospital",
            "power",
            "category",
            "attach_money",
        }
        assert re.fullmatch("#[0-9A-F]{6}", item["color"])
    for item in data["week"]:
        assert is_number(item["spent"])
        assert is_number(item["budget"])


def test_a_week_across_two_months_takes_each_day_from_its_own_month(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, user_id = onboarded(client, auth)
    # Monday 30 November: the month's last day, so nothing later can cover it.
    ledger_expense(app, user_id, "112.63", "food", "2026-11-30T17:00:00+00:00")
    ledger_expense(app, user_id, "5000.00", "shopping", "2026-12-02T16:00:00+00:00")
    budget_clock(DEC_2)

    data = user.get("/api/dashboard")

    assert data["today"] == "2026-12-02"
    assert data["week"] == [
        # November's 30th: 111.63, over by 1.00, within the tolerance (5 % = 5.58): yellow.
        day("Mon", "2026-11-30", "warning", 112.63, 111.63),
        day("Tue", "2026-12-01", "good", 0.0, 2108.11),  # the rent's day
        # 108.11 of its own, 1566.21 from the month's later days (half of each one's money).
        day("Wed", "2026-12-02", "over", 5000.0, 1674.32),
        day("Thu", "2026-12-03", "good", 0.0, 54.07),
        day("Fri", "2026-12-04", "good", 0.0, 54.07),
        day("Sat", "2026-12-05", "good", 0.0, 204.07),  # 150.00 of utilities stay
        day("Sun", "2026-12-06", "good", 0.0, 54.07),
    ]
    assert data["monthly_budget"] == 5500.0  # rebalancing never changes the month's total
    assert data["monthly_spent"] == 5000.0  # December only
    assert data["balance"] == 500.0
    assert data["spent"] == 5000.0
    shopping = next(t for t in data["daily_targets"] if t["key"] == "shopping")
    assert shopping == target("Shopping", "shopping", 1576.72, 5000.0, "shopping_bag", "#FF9800")
    assert data["insights_preview"] == {
        "title": "Over budget today",
        "text": "Over by $3,423.28 in Shopping today, more than the rest of the month can cover.",
    }


def test_the_latest_ten_transactions_newest_first_and_only_the_callers(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, user_id = onboarded(client, auth)
    _, other_id = onboarded(client, auth)
    ids = [
        ledger_expense(
            app, user_id, f"{n + 1}.25", "groceries", f"2026-11-{n + 3:02d}T20:00:00+00:00"
        )
        for n in range(12)
    ]
    ledger_expense(
        app, other_id, "99.00", "food", "2026-11-18T14:30:00+00:00", description="Not yours"
    )
    bus = ledger_expense(
        app, user_id, "2.75", "public_transport", "2026-11-18T12:00:00Z", merchant="MTA"
    )
    coffee = ledger_expense(
        app, user_id, "4.50", "dining", "2026-11-17T04:30:00Z", description="  ", merchant="Cafe"
    )

    data = user.get("/api/dashboard")

    listed = data["transactions"]
    assert len(listed) == 10
    assert [item["id"] for item in listed] == [str(bus), str(coffee)] + [
        str(i) for i in ids[::-1][:8]
    ]
    assert listed[0] == {
        "id": str(bus),
        "amount": 2.75,
        "category": "public_transport",
        "action": "MTA",
        "date": "2026-11-18T07:00:00-05:00",
        "icon": "directions_car",
        "color": "#2196F3",
    }
    assert listed[1]["action"] == "Cafe"  # a blank description: the merchant
    assert listed[1]["date"] == "2026-11-16T23:30:00-05:00"  # the 17th in UTC
    assert listed[2]["action"] == "Groceries"  # no description, no merchant: its category
    assert listed[2]["amount"] == 12.25
    assert listed[2]["date"] == "2026-11-14T15:00:00-05:00"
    assert str(ids[3]) not in {item["id"] for item in listed}  # the 11th newest
    # Another user's 99.00 counts nowhere: the caller spent 2.75 on the 18th.
    assert data["spent"] == 2.75
    assert "Not yours" not in {item["action"] for item in listed}


def test_a_user_who_has_not_onboarded_gets_zeros_and_empty_lists(
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user = AppUser(client, auth)

    data = user.get("/api/dashboard/")

    assert data == {
        "today": "2026-11-18",
        "balance": 0.0,
        "spent": 0.0,
        "daily_targets": [],
        "week": [],
        "transactions": [],
        "insights_preview": {
            "title": "Getting started",
            "text": "Finish setting up your budget: MITA spreads what is left after your bills "
            "and savings over the days of the month.",
        },
        "user_income": 0.0,
        "monthly_budget": 0.0,
        "monthly_spent": 0.0,
    }


def test_the_dashboard_reads_the_database_a_fixed_number_of_times(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, user_id = onboarded(client, auth)
    for n in range(40):
        ledger_expense(app, user_id, "3.00", "food", f"2026-11-{n % 18 + 1:02d}T15:00:00+00:00")
    user.get("/api/dashboard")  # the access token is checked once, then cached

    with sql_statements(app) as one_month:
        user.get("/api/dashboard")
    budget_clock(DEC_2)
    user.get("/api/dashboard")  # December's plan is made on its first use
    with sql_statements(app) as two_months:
        data = user.get("/api/dashboard")

    assert data["week"][0]["date"] == "2026-11-30"
    # The caller, the week's plans, their spending with the latest ten expenses.
    assert len(one_month) == 3, one_month
    assert len(two_months) == 3, two_months


def test_a_week_running_into_next_month_shows_its_plan_to_be(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, _ = onboarded(client, auth)
    budget_clock(datetime.fromisoformat("2026-11-30T17:00:00+00:00"))  # Monday the 30th
    user.get("/api/dashboard")

    with sql_statements(app) as seen:
        data = user.get("/api/dashboard")

    assert data["week"][:3] == [
        day("Mon", "2026-11-30", "good", 0.0, 111.63),
        day("Tue", "2026-12-01", "good", 0.0, 2108.11),  # December's plan, made, not stored
        day("Wed", "2026-12-02", "good", 0.0, 108.11),
    ]
    assert [d["date"] for d in data["week"]][-1] == "2026-12-06"
    assert data["monthly_budget"] == 5500.0
    assert len(seen) == 3, seen  # December's plan is previewed, not stored: no insert
