"""POST /api/onboarding/submit with the app's exact body: what it stores, the plan it builds,
its retries, and what it refuses."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from mita_app import budget
from mita_app.extensions import db
from mita_app.models import BudgetPlan, User
from tests.budget_helpers import ONBOARDING, AppUser, cents
from tests.conftest import AuthActions, build_app, dispose
from tests.races import gated_race

NOV_2 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York


def body(**changes: Any) -> dict[str, Any]:
    """The app's body with nested keys replaced: body(goals__all_goals=[...])."""
    result = copy.deepcopy(ONBOARDING)
    for path, value in changes.items():
        node = result
        *parents, leaf = path.split("__")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return result


def user_row(app: Flask, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        assert user is not None
        db.session.expunge(user)
        return user


def plans_of(app: Flask, email: str) -> list[BudgetPlan]:
    with app.app_context():
        rows = db.session.scalars(
            select(BudgetPlan).join(User, User.id == BudgetPlan.user_id).where(User.email == email)
        ).all()
        for row in rows:
            db.session.expunge(row)
        return list(rows)


def month_total(user: AppUser, year: int, month: int) -> int:
    return sum(cents(day["limit"]) for day in calendar(user, year, month))


def calendar(user: AppUser, year: int, month: int) -> list[dict[str, Any]]:
    days: list[dict[str, Any]] = user.get(f"/api/calendar/saved/{year}/{month}")["calendar"]
    return days


@pytest.fixture
def user(client: FlaskClient, auth: AuthActions, budget_clock: Any) -> AppUser:
    budget_clock(NOV_2)
    return AppUser(client, auth, email="onboard@example.com")


def test_the_apps_body_is_stored_whole_and_answers_the_plan(app: Flask, user: AppUser) -> None:
    data = user.onboard()

    assert data == {
        "status": "onboarded",
        "budget_plan": {
            "month": "2026-11-01",
            "income": 6000.0,
            "additional_income": 0.0,
            "fixed_total": 2150.0,
            "savings_goal": 500.0,
            "discretionary": 3350.0,
            "total_budget": 5500.0,
            "daily_budget": 111.67,  # 3350 / 30
            "fixed_expenses": {"rent": 2000.0, "utilities": 150.0},
            "discretionary_breakdown": data["budget_plan"]["discretionary_breakdown"],
        },
        "calendar_days": 30,
        "message": "Your budget for November 2026 is ready.",
    }
    breakdown = data["budget_plan"]["discretionary_breakdown"]
    assert list(breakdown) == [
        "food",
        "transportation",
        "shopping",
        "entertainment",
        "healthcare",
        "travel",
        "education",
        "other",
    ]
    assert sum(cents(amount) for amount in breakdown.values()) == 335000
    me = user.get("/api/users/me")
    assert (me["income"], me["savings_goal"], me["region"]) == (6000.0, 500.0, "US")
    assert (me["timezone"], me["has_onboarded"]) == ("America/New_York", True)
    stored = user_row(app, "onboard@example.com")
    assert stored.income == Decimal("6000.00")
    assert stored.additional_income == Decimal("0.00")
    assert stored.savings_goal == Decimal("500.00")
    assert stored.fixed_expenses == {"rent": "2000.00", "utilities": "150.00"}
    assert stored.fixed_due_days == {}
    assert stored.spending_habits == ONBOARDING["spending_habits"]
    assert stored.goals == ["save_more", "budgeting"]
    assert stored.has_emergency_fund is True
    assert stored.onboarded_at == NOV_2
    (plan,) = plans_of(app, "onboard@example.com")
    assert plan.month == date(2026, 11, 1)
    assert (plan.income, plan.fixed, plan.savings, plan.discretionary) == (
        Decimal("6000.00"),
        Decimal("2150.00"),
        Decimal("500.00"),
        Decimal("3350.00"),
    )
    assert month_total(user, 2026, 11) == 550000


def test_a_retry_is_200_and_duplicates_nothing(
    app: Flask,
    user: AppUser,
    budget_clock: Any,
) -> None:
    first = user.onboard()
    budget_clock(NOV_2 + timedelta(hours=1))
    again = user.onboard()

    assert again == first
    with app.app_context():
        count = select(func.count()).select_from(User).where(User.email == "onboard@example.com")
        assert db.session.scalar(count) == 1
    assert len(plans_of(app, "onboard@example.com")) == 1
    assert user_row(app, "onboard@example.com").onboarded_at == NOV_2  # the first time's
    assert month_total(user, 2026, 11) == 550000


def test_changed_answers_rebuild_the_months_plan(app: Flask, user: AppUser) -> None:
    user.onboard()

    data = user.onboard(
        income={"monthly_income": 7000.0, "additional_income": 250.5},
        fixed_expenses={"rent": 2500.0, "internet": 60.0},
    )

    plan = data["budget_plan"]
    assert (plan["income"], plan["additional_income"]) == (7000.0, 250.5)
    assert (plan["fixed_total"], plan["discretionary"], plan["total_budget"]) == (
        2560.0,
        4190.5,  # 7250.50 - 2560 - 500
        6750.5,
    )
    (stored,) = plans_of(app, "onboard@example.com")
    assert (stored.income, stored.fixed) == (Decimal("7250.50"), Decimal("2560.00"))
    assert user_row(app, "onboard@example.com").fixed_expenses == {
        "rent": "2500.00",
        "internet": "60.00",
    }
    days = calendar(user, 2026, 11)
    assert sum(cents(day["limit"]) for day in days) == 675050
    assert cents(days[0]["planned_budget"]["rent"]["planned"]) == 250000
    assert cents(days[4]["planned_budget"]["utilities"]["planned"]) == 6000  # internet: a bill


def test_no_fixed_expenses_and_integer_amounts_are_fine(app: Flask, user: AppUser) -> None:
    data = user.onboard(
        income={"monthly_income": 3000, "additional_income": 0},
        fixed_expenses={},
        goals={"savings_goal_amount_per_month": 0},
    )

    assert data["budget_plan"]["fixed_total"] == 0
    assert data["budget_plan"]["total_budget"] == data["budget_plan"]["discretionary"] == 3000
    assert user_row(app, "onboard@example.com").goals == []
    assert month_total(user, 2026, 11) == 300000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fixed_expenses": {"rent": 5600.0}}, "goals.savings_goal_amount_per_month"),
        ({"goals__savings_goal_amount_per_month": 3850.01}, "goals.savings_goal_amount_per_month"),
        ({"fixed_expenses": {"rent": 6000.0, "utilities": 0.01}}, "fixed_expenses"),
    ],
)
def test_fixed_costs_and_savings_above_the_income_are_refused(
    app: Flask, user: AppUser, changes: dict[str, Any], field: str
) -> None:
    response = user.send("POST", "/api/onboarding/submit", body(**changes))

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert list(error["fields"]) == [field]
    assert "exceed the monthly income" in error["message"]
    assert user_row(app, "onboard@example.com").has_onboarded is False
    assert plans_of(app, "onboard@example.com") == []


def test_savings_up_to_the_income_less_fixed_costs_are_accepted(user: AppUser) -> None:
    data = user.onboard(goals={"savings_goal_amount_per_month": 3850.0})

    assert data["budget_plan"]["discretionary"] == 0
    assert month_total(user, 2026, 11) == 215000  # the fixed costs alone


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"income__monthly_income": 0}, "income.monthly_income"),
        ({"income__monthly_income": 10.005}, "income.monthly_income"),
        ({"income__additional_income": -1}, "income.additional_income"),
        ({"income": None}, "income"),
        ({"fixed_expenses": {"boat": 10.0}}, "fixed_expenses.boat"),
        ({"fixed_expenses": {"rent": -1}}, "fixed_expenses.rent"),
        ({"fixed_expenses": {"rent": "lots"}}, "fixed_expenses.rent"),
        ({"fixed_due_days": {"rent": 32}}, "fixed_due_days.rent"),
        ({"fixed_due_days": {"yacht": 3}}, "fixed_due_days.yacht"),
        ({"spending_habits__coffee_per_week": -1}, "spending_habits.coffee_per_week"),
        ({"spending_habits__coffee_per_week": True}, "spending_habits.coffee_per_week"),
        ({"spending_habits__travel_per_year": 1.5}, "spending_habits.travel_per_year"),
        ({"goals__savings_goal_amount_per_month": -5}, "goals.savings_goal_amount_per_month"),
        ({"goals__all_goals": ["x" * 65]}, "goals.all_goals.0"),
        ({"goals__all_goals": ["save_more"] * 21}, "goals.all_goals"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"region": "Mars"}, "region"),
    ],
)
def test_a_bad_answer_is_a_422_naming_it(
    app: Flask, user: AppUser, changes: dict[str, Any], field: str
) -> None:
    response = user.send("POST", "/api/onboarding/submit", body(**changes))

    assert response.status_code == 422, response.get_json()
    assert list(response.get_json()["error"]["fields"]) == [field]
    assert user_row(app, "onboard@example.com").has_onboarded is False


def test_unknown_habits_and_keys_are_ignored(app: Flask, user: AppUser) -> None:
    user.onboard(spending_habits={"naps_per_day": 3, "coffee_per_week": 2}, extra={"x": 1})

    assert user_row(app, "onboard@example.com").spending_habits == {"coffee_per_week": 2}


def test_the_main_goal_comes_first_and_each_goal_once(app: Flask, user: AppUser) -> None:
    user.onboard(
        goals={
            "savings_goal_amount_per_month": 100.0,
            "savings_goal_type": "pay_off_debt",
            "has_emergency_fund": False,
            "all_goals": ["budgeting", "pay_off_debt", "investing"],
        }
    )

    stored = user_row(app, "onboard@example.com")
    assert stored.goals == ["pay_off_debt", "budgeting", "investing"]
    assert (stored.has_emergency_fund, stored.savings_goal) == (False, Decimal("100.00"))


def test_a_due_day_the_user_set_moves_the_cost_and_is_kept(app: Flask, user: AppUser) -> None:
    user.onboard(fixed_due_days={"rent": 15, "utilities": 31})

    days = calendar(user, 2026, 11)
    assert "rent" not in days[0]["planned_budget"]
    assert cents(days[14]["planned_budget"]["rent"]["planned"]) == 200000
    assert cents(days[29]["planned_budget"]["utilities"]["planned"]) == 15000  # 30 November
    user.onboard()  # the app's body: no fixed_due_days, so the user's stay
    assert user_row(app, "onboard@example.com").fixed_due_days == {"rent": 15, "utilities": 31}


def test_an_absent_timezone_keeps_the_users(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_2)
    paris = AppUser(client, auth, email="paris@example.com", timezone="Europe/Paris")
    answers = body()
    del answers["timezone"]

    response = paris.send("POST", "/api/onboarding/submit", answers)

    assert response.status_code == 200
    assert user_row(app, "paris@example.com").timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("zone", "now", "month", "days"),
    [
        # 01:00 on 1 December in Auckland, still 30 November in UTC.
        ("Pacific/Auckland", datetime(2026, 11, 30, 12, tzinfo=UTC), "2026-12-01", 31),
        # 21:00 on 30 November in Los Angeles, already 1 December in UTC.
        ("America/Los_Angeles", datetime(2026, 12, 1, 5, tzinfo=UTC), "2026-11-01", 30),
        # 23:30 on 28 February in New York: February, 28 days.
        ("America/New_York", datetime(2027, 3, 1, 4, 30, tzinfo=UTC), "2027-02-01", 28),
    ],
)
def test_the_plan_is_for_the_users_local_month(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
    zone: str,
    now: datetime,
    month: str,
    days: int,
) -> None:
    budget_clock(now)
    someone = AppUser(client, auth, email="zone@example.com")

    data = someone.onboard(timezone=zone)

    assert (data["budget_plan"]["month"], data["calendar_days"]) == (month, days)
    (plan,) = plans_of(app, "zone@example.com")
    assert plan.month.isoformat() == month
    first = date.fromisoformat(month)
    assert month_total(someone, first.year, first.month) == 550000


def test_onboarding_needs_a_token(client: FlaskClient) -> None:
    for headers in ({}, {"Authorization": "Bearer null"}):
        response = client.post("/api/onboarding/submit", json=ONBOARDING, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="mita"')


@pytest.mark.postgres
def test_submissions_at_once_make_one_plan_and_keep_the_first_onboarding_time(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build_app(pg_url)
    try:
        racer = AppUser(app.test_client(), AuthActions(app.test_client()), email="race@x.io")
        user_id = user_row(app, "race@x.io").id
        # Each reading of the budget clock is a second later: the submissions, which read it
        # only once they hold the user's lock, one after another, each see a later time.
        ticks = itertools.count()
        monkeypatch.setattr(budget, "utcnow", lambda: NOV_2 + timedelta(seconds=next(ticks)))

        def submit(client: FlaskClient) -> Any:
            headers = racer.headers
            return client.post("/api/onboarding/submit", json=ONBOARDING, headers=headers)

        lock = "SELECT id FROM users WHERE id = %s::uuid FOR UPDATE"
        results = gated_race(app, pg_url, 6, submit, lock, (str(user_id),))

        assert [status for status, _ in results] == [200] * 6
        assert len(plans_of(app, "race@x.io")) == 1
        assert user_row(app, "race@x.io").onboarded_at == NOV_2  # the first reading of all
        assert month_total(racer, 2026, 11) == 550000
    finally:
        dispose(app)
