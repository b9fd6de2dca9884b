"""GET /api/budget/daily, /spent, /remaining and /live_status, as the app's dashboard and budget
screens read them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient

from tests.budget_helpers import AppUser, app_instant, cents
from tests.conftest import AuthActions

NOV_2 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York
ROUTES = ("/api/budget/daily", "/api/budget/spent", "/api/budget/remaining")
EMPTY_LIVE = {
    "daily_budget": 0,
    "spent_today": 0,
    "remaining_today": 0,
    "status": "good",
    "monthly_budget": 0,
    "monthly_spent": 0,
    "total_budget": 0,
    "total_spent": 0,
    "remaining_month": 0,
    "on_track": True,
}


@pytest.fixture
def user(client: FlaskClient, auth: AuthActions, budget_clock: Any) -> AppUser:
    budget_clock(NOV_2)
    return AppUser(client, auth)


def test_before_onboarding_every_answer_is_empty_and_200(user: AppUser) -> None:
    assert user.get("/api/budget/daily") == []
    assert user.get("/api/budget/daily?year=2026&month=12") == []
    assert user.get("/api/budget/spent") == {}
    assert user.get("/api/budget/remaining") == {
        "total_budget": 0,
        "total_spent": 0,
        "remaining": 0,
    }
    assert user.get("/api/budget/live_status") == {
        "date": "2026-11-02",
        **EMPTY_LIVE,
        "days_remaining": 29,
    }


def test_daily_lists_every_day_of_the_month(user: AppUser) -> None:
    user.onboard()

    days = user.get("/api/budget/daily")
    calendar = user.get("/api/calendar/saved/2026/11")["calendar"]

    assert [day["date"] for day in days] == [date(2026, 11, d).isoformat() for d in range(1, 31)]
    assert [day["limit"] for day in days] == [day["limit"] for day in calendar]
    assert sum(cents(day["limit"]) for day in days) == 550000
    for day in days:
        assert set(day) == {"date", "limit", "budget", "spent", "remaining", "status"}
        assert day["budget"] == day["remaining"] == day["limit"]
        assert (day["spent"], day["status"]) == (0, "good")
    assert cents(days[0]["limit"]) > 200000  # rent is paid on the 1st


def test_daily_leaves_out_days_with_no_money_which_the_app_would_divide_by(
    user: AppUser,
) -> None:
    # Bills and savings take the whole income: only the bills' due days have money.
    user.onboard(
        income={"monthly_income": 2650.0, "additional_income": 0},
        goals={"savings_goal_amount_per_month": 500.0, "all_goals": []},
    )
    user.spend(12.5, "food", app_instant(date(2026, 11, 2), 9))

    days = user.get("/api/budget/daily")

    assert [(day["date"], day["limit"]) for day in days] == [
        ("2026-11-01", 2000),
        ("2026-11-05", 150),
    ]
    assert user.get("/api/budget/live_status")["monthly_spent"] == 12.5


def test_spending_moves_every_answer(user: AppUser) -> None:
    breakdown = user.onboard()["budget_plan"]["discretionary_breakdown"]
    today = date(2026, 11, 2)

    user.spend(20.0, "groceries", app_instant(today, 8))  # counts against `food`
    user.spend(5.25, "transportation", app_instant(today, 9))
    user.spend(7.0, "gas", app_instant(date(2026, 11, 1), 18))

    days = user.get("/api/budget/daily")
    assert (cents(days[1]["spent"]), days[1]["status"]) == (2525, "good")
    assert cents(days[1]["remaining"]) == cents(days[1]["limit"]) - 2525
    assert cents(days[0]["spent"]) == 700
    spent = user.get("/api/budget/spent")
    assert list(spent) == [
        "food",
        "transportation",
        "shopping",
        "entertainment",
        "healthcare",
        "travel",
        "education",
        "other",
        "rent",
        "utilities",
    ]
    assert (spent["food"], spent["transportation"], spent["rent"]) == (20.0, 12.25, 0)
    remaining = user.get("/api/budget/remaining")
    assert cents(remaining["food"]) == cents(breakdown["food"]) - 2000
    assert (remaining["rent"], remaining["utilities"]) == (2000.0, 150.0)
    assert (remaining["total_budget"], remaining["total_spent"]) == (5500.0, 32.25)
    assert remaining["remaining"] == 5467.75
    live = user.get("/api/budget/live_status")
    assert live == {
        "date": "2026-11-02",
        "daily_budget": days[1]["limit"],
        "spent_today": 25.25,
        "remaining_today": days[1]["remaining"],
        "status": "good",
        "monthly_budget": 5500.0,
        "monthly_spent": 32.25,
        "total_budget": 5500.0,
        "total_spent": 32.25,
        "remaining_month": 5467.75,
        "on_track": True,
        "days_remaining": 29,
    }


def test_the_last_days_statuses_good_warning_over(
    user: AppUser,
    budget_clock: Any,
) -> None:
    user.onboard()
    budget_clock(datetime(2026, 11, 30, 20, tzinfo=UTC))
    last = date(2026, 11, 30)
    limit = cents(user.get("/api/budget/daily")[-1]["limit"])
    tolerance = max(limit * 5 // 100, 200)

    user.spend(limit / 100, "entertainment", app_instant(last, 9))
    assert user.get("/api/budget/daily")[-1]["status"] == "good"
    user.spend(tolerance / 100, "entertainment", app_instant(last, 10))
    day = user.get("/api/budget/daily")[-1]
    assert (day["status"], day["remaining"]) == ("warning", 0)
    user.spend(0.01, "entertainment", app_instant(last, 11))
    day = user.get("/api/budget/daily")[-1]
    assert (day["status"], day["remaining"], cents(day["spent"])) == (
        "over",
        0,
        limit + tolerance + 1,
    )
    live = user.get("/api/budget/live_status")
    assert (live["status"], live["remaining_today"], live["days_remaining"]) == ("over", 0, 1)
    assert live["on_track"] is True  # the last day: the whole month's limits are behind it
    assert cents(live["remaining_month"]) == 550000 - (limit + tolerance + 1)


def test_an_overspend_rebalancing_cannot_cover_is_off_track(user: AppUser) -> None:
    user.onboard()

    # Rebalancing covers about 1563 of it (half of each later day's flexible money), and the
    # 1st and 2nd held 2223.42: 4000 is beyond what the days to today hold.
    user.spend(4000.0, "shopping", app_instant(date(2026, 11, 2), 9))

    live = user.get("/api/budget/live_status")
    assert (live["status"], live["on_track"]) == ("over", False)
    assert cents(user.get("/api/budget/remaining")["shopping"]) < 0  # over, by what is uncovered
    days = user.get("/api/budget/daily")
    assert sum(cents(day["limit"]) for day in days) == 550000  # money moved, none made


def test_another_month_by_query(user: AppUser) -> None:
    user.onboard()

    days = user.get("/api/budget/daily?year=2026&month=12")
    assert len(days) == 31
    assert days[-1]["date"] == "2026-12-31"
    assert sum(cents(day["limit"]) for day in days) == 550000
    assert len(user.get("/api/budget/daily?month=2")) == 0  # February 2026: before onboarding
    assert len(user.get("/api/budget/daily?year=2028&month=2")) == 29
    for query, field in (("month=13", "month"), ("year=1999", "year"), ("month=x", "month")):
        response = user.send("GET", f"/api/budget/daily?{query}")
        assert response.status_code == 422, query
        assert list(response.get_json()["error"]["fields"]) == [field]


@pytest.mark.parametrize(
    ("zone", "now", "today", "length"),
    [
        ("Pacific/Auckland", datetime(2026, 11, 30, 12, tzinfo=UTC), "2026-12-01", 31),
        ("America/Los_Angeles", datetime(2026, 12, 1, 5, tzinfo=UTC), "2026-11-30", 30),
    ],
)
def test_today_and_the_month_are_the_users_local_ones(
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
    zone: str,
    now: datetime,
    today: str,
    length: int,
) -> None:
    budget_clock(datetime(2026, 11, 2, tzinfo=UTC))
    someone = AppUser(client, auth)
    someone.onboard(timezone=zone)
    budget_clock(now)
    day = date.fromisoformat(today)
    someone.spend(4.5, "food", app_instant(day, 23, 30, ZoneInfo(zone)))

    days = someone.get("/api/budget/daily")
    live = someone.get("/api/budget/live_status")

    assert len(days) == length
    assert days[day.day - 1]["date"] == today
    assert cents(days[day.day - 1]["spent"]) == 450
    assert (live["date"], live["spent_today"], live["monthly_spent"]) == (today, 4.5, 4.5)
    assert live["days_remaining"] == length - day.day + 1
    assert cents(live["monthly_budget"]) == 550000


def test_each_user_sees_only_their_own_spending(
    client: FlaskClient, auth: AuthActions, user: AppUser
) -> None:
    user.onboard()
    other = AppUser(client, auth)
    other.onboard()

    other.spend(40.0, "food", app_instant(date(2026, 11, 2), 9))

    assert user.get("/api/budget/live_status")["monthly_spent"] == 0
    assert other.get("/api/budget/live_status")["monthly_spent"] == 40.0


def test_the_budget_routes_need_a_token(client: FlaskClient) -> None:
    for path in (*ROUTES, "/api/budget/live_status"):
        for headers in ({}, {"Authorization": "Bearer null"}):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, path
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="mita"')
