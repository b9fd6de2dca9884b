"""GET /api/calendar/saved/{year}/{month} and POST /api/calendar/shell, as the app reads them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mita_app.extensions import db
from mita_app.models import BudgetPlan
from tests.budget_helpers import AppUser, app_instant, cents
from tests.conftest import AuthActions

NOV_2 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York
FLEXIBLE = {
    "food",
    "transportation",
    "shopping",
    "entertainment",
    "healthcare",
    "travel",
    "education",
    "other",
}
# What api_service.dart sends: its default weights, the cached onboarding answers.
SHELL = {
    "savings_target": 500.0,
    "income": 6000.0,
    "location": None,
    "fixed": {"rent": 1800.0},
    "weights": {
        "food": 0.15,
        "transportation": 0.15,
        "entertainment": 0.08,
        "shopping": 0.10,
        "healthcare": 0.07,
    },
    "year": 2026,
    "month": 11,
}


def calendar(user: AppUser, year: int, month: int) -> list[dict[str, Any]]:
    days: list[dict[str, Any]] = user.get(f"/api/calendar/saved/{year}/{month}")["calendar"]
    return days


def shell(user: AppUser, **changes: Any) -> list[dict[str, Any]]:
    response = user.send("POST", "/api/calendar/shell", {**SHELL, **changes})
    assert response.status_code == 200, response.get_json()
    days: list[dict[str, Any]] = response.get_json()["data"]["calendar"]
    return days


def plan_months(app: Flask) -> list[date]:
    with app.app_context():
        return sorted(db.session.scalars(select(BudgetPlan.month)))


@pytest.fixture
def user(client: FlaskClient, auth: AuthActions, budget_clock: Any) -> AppUser:
    budget_clock(NOV_2)
    return AppUser(client, auth)


def test_the_month_sums_exactly_to_the_plan_with_bills_on_their_days(user: AppUser) -> None:
    user.onboard()

    days = calendar(user, 2026, 11)

    assert [day["day"] for day in days] == list(range(1, 31))
    assert [day["date"] for day in days] == [date(2026, 11, d).isoformat() for d in range(1, 31)]
    assert sum(cents(day["limit"]) for day in days) == 550000  # 2150 fixed + 3350 discretionary
    assert all(day["total"] == day["limit"] for day in days)
    assert all((day["spent"], day["status"]) == (0, "green") for day in days)
    assert set(days[0]["planned_budget"]) == FLEXIBLE | {"rent"}
    assert set(days[4]["planned_budget"]) == FLEXIBLE | {"utilities"}
    assert all(set(day["planned_budget"]) == FLEXIBLE for day in days[1:4] + days[5:])
    assert days[0]["planned_budget"]["rent"] == {"planned": 2000.0, "spent": 0, "status": "green"}
    assert days[4]["planned_budget"]["utilities"]["planned"] == 150.0
    for day in days:
        categories = day["planned_budget"].values()
        assert sum(cents(c["planned"]) for c in categories) == cents(day["limit"])
        flexible = cents(day["limit"]) - (200000 if day["day"] == 1 else 0)
        flexible -= 15000 if day["day"] == 5 else 0
        # 3350 / 30 = 111.67: each of the 8 categories' daily cents is its share rounded down or up
        assert abs(flexible * 30 - 335000) < 8 * 30


@pytest.mark.parametrize(
    ("now", "year", "month", "length"),
    [
        (datetime(2026, 12, 1, 6, tzinfo=UTC), 2026, 12, 31),  # 01:00 in New York
        (datetime(2027, 2, 10, 15, tzinfo=UTC), 2027, 2, 28),
        (datetime(2028, 2, 10, 15, tzinfo=UTC), 2028, 2, 29),
    ],
)
def test_a_later_month_gets_its_plan_when_it_comes(
    app: Flask,
    user: AppUser,
    budget_clock: Any,
    now: datetime,
    year: int,
    month: int,
    length: int,
) -> None:
    user.onboard()
    preview = calendar(user, year, month)  # still November: a preview, not stored
    assert plan_months(app) == [date(2026, 11, 1)]

    budget_clock(now)
    days = calendar(user, year, month)

    assert days == preview
    assert len(days) == length
    assert days[-1]["date"] == date(year, month, length).isoformat()
    assert sum(cents(day["limit"]) for day in days) == 550000
    assert cents(days[0]["planned_budget"]["rent"]["planned"]) == 200000
    assert plan_months(app) == [date(2026, 11, 1), date(year, month, 1)]


def test_spending_shows_on_its_local_day_and_turns_it_yellow_then_red(
    user: AppUser,
    budget_clock: Any,
) -> None:
    user.onboard()
    budget_clock(datetime(2026, 12, 1, 4, 30, tzinfo=UTC))  # 23:30 on 30 November in New York
    last = date(2026, 11, 30)
    limit = cents(calendar(user, 2026, 11)[-1]["limit"])
    tolerance = max(limit * 5 // 100, 200)

    # 23:00 local on the 30th is 1 December in UTC: the day is still the 30th.
    user.spend((limit + tolerance) / 100, "groceries", app_instant(last, 23))
    day = calendar(user, 2026, 11)[-1]
    assert (cents(day["spent"]), cents(day["limit"]), day["status"]) == (
        limit + tolerance,
        limit,  # the last day: no later day can give
        "yellow",
    )
    assert cents(day["planned_budget"]["food"]["spent"]) == limit + tolerance
    assert day["planned_budget"]["food"]["status"] == "red"

    user.spend(0.01, "dining", app_instant(last, 23, 1))
    day = calendar(user, 2026, 11)[-1]
    assert (cents(day["spent"]), day["status"]) == (limit + tolerance + 1, "red")
    assert sum(cents(d["limit"]) for d in calendar(user, 2026, 11)) == 550000


def test_an_overspend_is_covered_from_later_days_and_the_month_total_holds(
    user: AppUser,
) -> None:
    user.onboard()
    before = calendar(user, 2026, 11)

    user.spend(50.0, "food", app_instant(date(2026, 11, 2), 9))
    after = calendar(user, 2026, 11)

    food = after[1]["planned_budget"]["food"]
    assert (cents(food["spent"]), food["status"]) == (5000, "green")
    assert cents(food["planned"]) == 5000  # covered: from later days' food money first
    assert (cents(after[1]["spent"]), after[1]["status"]) == (5000, "green")
    given = sum(
        cents(b["limit"]) - cents(a["limit"]) for a, b in zip(after[2:], before[2:], strict=True)
    )
    assert given == cents(after[1]["limit"]) - cents(before[1]["limit"]) > 0
    assert sum(cents(day["limit"]) for day in after) == 550000


def test_a_category_with_spending_but_no_money_is_listed_with_planned_0(
    user: AppUser,
    budget_clock: Any,
) -> None:
    user.onboard(fixed_expenses={})
    budget_clock(datetime(2026, 11, 30, 20, tzinfo=UTC))

    user.spend(12.5, "rent", app_instant(date(2026, 11, 30), 9))
    day = calendar(user, 2026, 11)[-1]  # the last day: nothing later can cover it

    assert day["planned_budget"]["rent"] == {"planned": 0, "spent": 12.5, "status": "red"}
    assert "rent" not in calendar(user, 2026, 11)[0]["planned_budget"]


def test_the_users_local_month_not_utcs(
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(datetime(2026, 11, 30, 12, tzinfo=UTC))  # 1 December, 01:00 in Auckland
    kiwi = AppUser(client, auth)
    kiwi.onboard(timezone="Pacific/Auckland")

    assert calendar(kiwi, 2026, 11) == []  # before the month of onboarding
    days = calendar(kiwi, 2026, 12)
    assert len(days) == 31
    assert sum(cents(day["limit"]) for day in days) == 550000


def test_before_onboarding_every_month_is_empty_and_bad_paths_are_404(user: AppUser) -> None:
    assert calendar(user, 2026, 11) == []
    assert calendar(user, 2100, 12) == []

    for path in ("2026/13", "2026/0", "1999/12", "2101/1", "abcd/1", "2026/x", "-2026/1"):
        response = user.send("GET", f"/api/calendar/saved/{path}")
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "month_not_found"


def test_the_calendar_is_the_callers_own(
    client: FlaskClient, auth: AuthActions, user: AppUser
) -> None:
    user.onboard()
    other = AppUser(client, auth)
    other.onboard()

    other.spend(40.0, "food", app_instant(date(2026, 11, 2), 9))

    assert all(day["spent"] == 0 for day in calendar(user, 2026, 11))
    assert sum(cents(day["spent"]) for day in calendar(other, 2026, 11)) == 4000


# The preview ------------------------------------------------------------------------------------


def test_the_preview_spreads_what_is_left_over_the_month_exactly(user: AppUser) -> None:
    days = shell(user)

    assert [day["date"] for day in days] == [date(2026, 11, d).isoformat() for d in range(1, 31)]
    assert sum(cents(day["limit"]) for day in days) == 550000  # 6000 - 500 saved
    assert all("total" not in day for day in days)  # the app's preview reader: total = spent
    assert all((day["spent"], day["status"]) == (0, "green") for day in days)
    assert days[0]["planned_budget"]["rent"]["planned"] == 1800.0
    for day in days:
        flexible = cents(day["limit"]) - (180000 if day["day"] == 1 else 0)
        assert abs(flexible * 30 - 370000) < 5 * 30  # 3700 / 30 = 123.33, 5 categories
    per_category = {
        category: sum(cents(day["planned_budget"][category]["planned"]) for day in days)
        for category in SHELL["weights"]
    }
    # 3700 shared 15 : 15 : 8 : 10 : 7, largest remainder.
    assert per_category == {
        "food": 100909,
        "transportation": 100909,
        "entertainment": 53818,
        "shopping": 67273,
        "healthcare": 47091,
    }


@pytest.mark.parametrize(
    ("year", "month", "length"), [(2027, 2, 28), (2028, 2, 29), (2026, 12, 31)]
)
def test_the_preview_has_every_day_of_its_month(
    user: AppUser, year: int, month: int, length: int
) -> None:
    days = shell(user, year=year, month=month)

    assert len(days) == length
    assert sum(cents(day["limit"]) for day in days) == 550000


def test_the_preview_defaults_to_the_callers_month_and_the_default_shares(
    user: AppUser,
) -> None:
    answers = {"income": 6000.0, "fixed": {"rent": 2000.0, "utilities": 150.0}}
    response = user.send("POST", "/api/calendar/shell", {**answers, "savings_target": 500.0})
    days = response.get_json()["data"]["calendar"]

    assert len(days) == 30
    assert days[0]["date"] == "2026-11-01"
    assert set(days[1]["planned_budget"]) == FLEXIBLE
    user.onboard()
    saved = calendar(user, 2026, 11)
    assert sum(cents(d["limit"]) for d in days) == sum(cents(d["limit"]) for d in saved)
    only_unknown = shell(user, weights={"rent": 1.0, "naps": 2.0})
    assert set(only_unknown[1]["planned_budget"]) == FLEXIBLE


def test_the_preview_maps_fixed_names_and_rounds_the_apps_fractions(user: AppUser) -> None:
    fixed = {"rent": 1799.999, "internet": 60.0, "food": 100.0, "gym": 50.004}

    days = shell(user, savings_target=1200.0000000000002, fixed=fixed, weights=None)

    def first_over_second(category: str) -> int:
        first, second = (cents(day["planned_budget"][category]["planned"]) for day in days[:2])
        return first - second

    assert cents(days[0]["planned_budget"]["rent"]["planned"]) == 180000
    assert cents(days[4]["planned_budget"]["utilities"]["planned"]) == 6000
    # `food` is a category: its budget, on the 1st; `gym` is nothing known: `other`, the 1st.
    assert first_over_second("food") in (10000, 10001)  # the flexible cents differ by 0 or 1
    assert first_over_second("other") in (5000, 5001)
    assert sum(cents(day["limit"]) for day in days) == 600000 - 120000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"income": 0}, "income"),
        ({"income": "much"}, "income"),
        ({"savings_target": -1}, "savings_target"),
        ({"fixed": {"rent": "abc"}}, "fixed.rent"),
        ({"fixed": {"rent": float("1e300")}}, "fixed.rent"),
        ({"weights": {"food": -0.1}}, "weights.food"),
        ({"month": 13}, "month"),
        ({"year": 1999}, "year"),
    ],
)
def test_a_bad_preview_answer_is_a_422_naming_it(
    user: AppUser, changes: dict[str, Any], field: str
) -> None:
    response = user.send("POST", "/api/calendar/shell", {**SHELL, **changes})

    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


def test_the_calendar_needs_a_token(client: FlaskClient) -> None:
    for method, path in (("GET", "/api/calendar/saved/2026/11"), ("POST", "/api/calendar/shell")):
        response = client.open(path, method=method, json=SHELL, headers={"Authorization": ""})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="mita"')


def test_editing_and_deleting_expenses_recompute_the_month_from_the_ledger(
    user: AppUser,
) -> None:
    user.onboard()
    pristine = calendar(user, 2026, 11)
    small = user.spend(10.0, "groceries", app_instant(date(2026, 11, 2), 9))
    with_small = calendar(user, 2026, 11)
    big = user.spend(150.0, "dining", app_instant(date(2026, 11, 2), 13))
    assert big["rebalanced"] is True
    assert calendar(user, 2026, 11) != with_small

    # Edited down to a cent it needs no cover: every day's limit is back to what it was with
    # the small one alone; deleted, the calendar is exactly that again.
    path = f"/api/transactions/{big['id']}"
    assert user.send("PUT", path, {"amount": 0.01}).status_code == 200
    assert [cents(d["limit"]) for d in calendar(user, 2026, 11)] == [
        cents(d["limit"]) for d in with_small
    ]
    assert user.send("DELETE", path).status_code == 200
    assert calendar(user, 2026, 11) == with_small
    assert user.send("DELETE", f"/api/transactions/{small['id']}").status_code == 200
    assert calendar(user, 2026, 11) == pristine
