"""POST /api/transactions/check-affordability with the app's body: the engine's levels at their
boundaries, every field the app's warning dialog casts, and the user's local day.

The user onboards with the app's own body; on Wednesday 18 November 2026 (New York) the food
budget holds 32.97 (3297 cents) and nothing is spent yet, so the levels turn at 70 % (2308
cents), 80 % (2638), 90 % (2968) and 100 % (3297; beyond it the rest of the month covers the
overage up to 669.66, half of every later day's flexible money).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.budget_helpers import AppUser, ledger_expense, onboarded
from tests.conftest import AuthActions, sql_statements

PATH = "/api/transactions/check-affordability"
BODY = {"category": "food", "amount": 12.5, "date": "2026-11-18T21:47:03.123"}
FOOD = 3297  # cents, on 18 November
NOV_18 = datetime.fromisoformat("2026-11-18T15:00:00+00:00")  # 10:00 in New York
COVERABLE = "669.66"  # what the month's later days can give to the 18th
NUMBERS = (
    "amount",
    "daily_budget",
    "remaining_budget",
    "current_spent",
    "overage",
    "percentage_used",
    "rebalance_available",
)
FIELDS = {
    "warning_level",
    "can_afford",
    "allow_override",
    "date",
    "category",
    "budget_category",
    "impact_message",
    "alternative_categories",
    "suggestions",
    "fully_covered",
    *NUMBERS,
}


def check(user: AppUser, category: str, amount: Any, **body: Any) -> dict[str, Any]:
    response = user.send("POST", PATH, {"category": category, "amount": amount, **body})
    assert response.status_code == 200, response.get_json()
    data: dict[str, Any] = response.get_json()["data"]
    assert set(data) == FIELDS
    # What budget_warning_dialog.dart hard-casts: `as num`, `as String`, `as List`.
    for name in NUMBERS:
        assert isinstance(data[name], int | float), (name, data[name])
        assert not isinstance(data[name], bool)
    for name in ("warning_level", "category", "impact_message"):
        assert isinstance(data[name], str)
        assert data[name]
    assert isinstance(data["suggestions"], list)
    assert all(isinstance(text, str) for text in data["suggestions"])
    assert isinstance(data["alternative_categories"], list)
    for alternative in data["alternative_categories"]:
        assert isinstance(alternative["category"], str)
        assert isinstance(alternative["available"], int | float)
    assert data["allow_override"] is True
    assert data["can_afford"] is (data["warning_level"] != "blocked")
    return data


def test_each_level_turns_at_its_share_of_the_days_limit(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, _ = onboarded(client, auth)
    with sql_statements(app) as seen:
        check(user, "food", 1)
    assert len(seen) == 3, seen  # the caller, the month's plan, its spending
    # (cents, level, percentage_used), the amounts from the limit: 69 %, then each side of
    # 70 %, 80 %, 90 % and 100 %.
    table = [
        (FOOD * 69 // 100, "safe", 69.0),
        (2307, "safe", 70.0),
        (2308, "caution", 70.0),
        (2637, "caution", 80.0),
        (2638, "warning", 80.0),
        (2967, "warning", 90.0),
        (2968, "danger", 90.0),
        (FOOD, "danger", 100.0),
    ]
    assert [cents for cents, _, _ in table[1:]] == [
        -(-FOOD * share // 10) - 1 + up for share in (7, 8, 9) for up in (0, 1)
    ] + [FOOD]
    for cents, level, percentage in table:
        data = check(user, "food", cents / 100, date="2026-11-18T12:00:00.000")
        assert (data["warning_level"], data["percentage_used"]) == (level, percentage), cents
        assert data["daily_budget"] == 32.97
        assert data["current_spent"] == 0.0
        assert data["overage"] == 0.0
        assert data["remaining_budget"] == (FOOD - cents) / 100

    # One cent over: the month's later days cover it.
    over = check(user, "food", 32.98)
    assert over["warning_level"] == "danger"
    assert over["overage"] == 0.01
    assert over["rebalance_available"] == 0.01
    assert over["fully_covered"] is True
    assert over["remaining_budget"] == 0.0

    assert check(user, "food", 669.66 + 32.97)["warning_level"] == "danger"  # all it can cover
    blocked = check(user, "food", 669.66 + 32.98)
    assert blocked["warning_level"] == "blocked"
    assert blocked["overage"] == 669.67
    assert blocked["rebalance_available"] == 669.66
    assert blocked["fully_covered"] is False
    assert blocked["can_afford"] is False


def test_the_whole_answer_for_a_caution_and_for_a_blocked_purchase(
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, _ = onboarded(client, auth)

    assert check(user, "food", 23.08, date="2026-11-18T21:47:03.123") == {
        "warning_level": "caution",
        "can_afford": True,
        "allow_override": True,
        "date": "2026-11-18",
        "category": "food",
        "budget_category": "food",
        "amount": 23.08,
        "daily_budget": 32.97,
        "current_spent": 0.0,
        "remaining_budget": 9.89,
        "overage": 0.0,
        "percentage_used": 70.0,
        "rebalance_available": 0.0,
        "fully_covered": True,
        "impact_message": "This uses 70% of today's Food & Dining budget; $9.89 will be left.",
        "alternative_categories": [],
        "suggestions": ["After this, keep Food & Dining spending today under $9.89."],
    }
    assert check(user, "food", 5000) == {
        "warning_level": "blocked",
        "can_afford": False,
        "allow_override": True,
        "date": "2026-11-18",
        "category": "food",
        "budget_category": "food",
        "amount": 5000.0,
        "daily_budget": 32.97,
        "current_spent": 0.0,
        "remaining_budget": 0.0,
        "overage": 4967.03,
        "percentage_used": 1000.0,  # capped
        "rebalance_available": 669.66,
        "fully_covered": False,
        "impact_message": "This goes $4,967.03 over today's Food & Dining budget, and only "
        "$669.66 of it can be covered from the rest of the month.",
        "alternative_categories": [],
        "suggestions": [
            "Spend at most $32.97 to stay within the Food & Dining budget today.",
            "Wait until tomorrow, when a new day's budget starts.",
        ],
    }


def test_spending_in_a_child_counts_against_its_parent_and_alternatives_have_room(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, user_id = onboarded(client, auth)
    other, other_id = onboarded(client, auth)
    ledger_expense(app, user_id, "40.00", "groceries", "2026-11-18T14:00:00+00:00")
    ledger_expense(app, other_id, "30.00", "food", "2026-11-18T14:00:00+00:00")
    ledger_expense(app, other_id, "16.00", "transportation", "2026-11-18T14:00:00+00:00")

    # 7.03 over the food budget, covered from later days: the 18th's food limit is now 40.00.
    assert check(user, "dining", 10) == {
        "warning_level": "danger",
        "can_afford": True,
        "allow_override": True,
        "date": "2026-11-18",
        "category": "dining",
        "budget_category": "food",
        "amount": 10.0,
        "daily_budget": 40.0,
        "current_spent": 40.0,
        "remaining_budget": 0.0,
        "overage": 10.0,
        "percentage_used": 125.0,
        "rebalance_available": 10.0,
        "fully_covered": True,
        "impact_message": "This goes $10.00 over today's Food & Dining budget; MITA covers it "
        "from the rest of the month's budget.",
        # The others with at least 10.00 left today, most first, at most 3 (shopping's 10.85
        # is the 4th), named as the app's add-expense screen names them.
        "alternative_categories": [
            {"category": "Transportation", "key": "transportation", "available": 16.28},
            {"category": "Other", "key": "other", "available": 16.28},
            {"category": "Entertainment", "key": "entertainment", "available": 13.57},
        ],
        "suggestions": [
            "Record it under Transportation instead: $16.28 is free there today.",
            "Go ahead: $10.00 moves from later days this month.",
        ],
    }
    # The other user's 30.00 of food and 16.00 of transport count for them alone.
    theirs = check(other, "groceries", 1)
    assert theirs["current_spent"] == 30.0
    assert theirs["alternative_categories"][0] == {
        "category": "Other",
        "key": "other",
        "available": 16.28,
    }
    assert [a["key"] for a in theirs["alternative_categories"]] == [
        "other",
        "entertainment",
        "shopping",
    ]


def test_a_los_angeles_user_at_2330_on_the_months_last_day_checks_that_day(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, user_id = onboarded(client, auth, timezone="America/Los_Angeles")
    ledger_expense(app, user_id, "5.00", "food", "2026-12-01T07:00:00+00:00")  # 23:00 on the 30th
    budget_clock(datetime.fromisoformat("2026-12-01T07:30:00+00:00"))  # 23:30 on the 30th

    for when in (
        {},
        {"date": None},
        {"date": "2026-11-30T23:30:00.000"},  # the app's local time
        {"date": "2026-11-30T23:30:00.000123"},
        {"date": "2026-12-01T07:30:00.000Z"},
        {"date": "2026-12-01T09:30:00+02:00"},
        {"date": "2026-11-30"},
    ):
        data = check(user, "food", 1, **when)
        # November's 30th (32.97 of food), not December's 1st (31.91).
        assert (data["date"], data["daily_budget"], data["current_spent"]) == (
            "2026-11-30",
            32.97,
            5.0,
        ), when
        assert data["impact_message"] == (
            "Safe to spend: $26.97 of today's Food & Dining budget will be left."
        )
    board = user.get("/api/dashboard")  # the dashboard's today is that day too
    assert (board["today"], board["spent"], board["week"][0]["date"]) == (
        "2026-11-30",
        5.0,
        "2026-11-30",
    )
    december = check(user, "food", 1, date="2026-12-01")
    assert (december["date"], december["daily_budget"], december["current_spent"]) == (
        "2026-12-01",
        31.91,
        0.0,
    )
    assert december["impact_message"] == (
        "Safe to spend: $30.91 of the Food & Dining budget on 2026-12-01 will be left."
    )


def test_a_user_without_a_budget_may_always_spend(
    app: Flask,
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user = AppUser(client, auth)
    user_id = uuid.UUID(user.get("/api/users/me")["id"])
    ledger_expense(app, user_id, "7.00", "dining", "2026-11-18T12:00:00+00:00")

    assert check(user, "food", 12.5, date="2026-11-18T10:00:00.000") == {
        "warning_level": "safe",
        "can_afford": True,
        "allow_override": True,
        "date": "2026-11-18",
        "category": "food",
        "budget_category": "food",
        "amount": 12.5,
        "daily_budget": 0.0,
        "current_spent": 7.0,
        "remaining_budget": 0.0,
        "overage": 0.0,
        "percentage_used": 0.0,
        "rebalance_available": 0.0,
        "fully_covered": True,
        "impact_message": "You have no budget yet: finish setting it up to see what you can "
        "afford.",
        "alternative_categories": [],
        "suggestions": [],
    }
    # An onboarded user, for a month before their first plan: no budget either.
    budget_clock(NOV_18)
    onboarded_user, _ = onboarded(client, auth)
    before = check(onboarded_user, "food", 12.5, date="2026-10-31")
    assert (before["warning_level"], before["daily_budget"]) == ("safe", 0.0)
    assert before["impact_message"] == (
        "There is no budget for October 2026: nothing to check against."
    )


def test_bad_bodies_are_422_naming_the_field_and_nothing_is_a_500(
    client: FlaskClient,
    auth: AuthActions,
    budget_clock: Any,
) -> None:
    budget_clock(NOV_18)
    user, _ = onboarded(client, auth)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"category": "coffee", "amount": 5}, "category", "unknown category 'coffee'"),
        ({"category": "Food", "amount": 5}, "category", "unknown category 'Food'"),
        ({"category": None, "amount": 5}, "category", ""),
        ({"amount": 5}, "category", ""),
        ({"category": "food", "amount": 0}, "amount", "greater than 0"),
        ({"category": "food", "amount": -3}, "amount", ""),
        ({"category": "food", "amount": 1.234}, "amount", ""),
        ({"category": "food", "amount": "lots"}, "amount", ""),
        ({"category": "food", "amount": True}, "amount", ""),
        ({"category": "food"}, "amount", ""),
        ({"category": "food", "amount": 5, "date": "tomorrow"}, "date", "YYYY-MM-DD"),
        ({"category": "food", "amount": 5, "date": "2026-02-30"}, "date", ""),
        ({"category": "food", "amount": 5, "date": 20261118}, "date", ""),
        ({"category": "food", "amount": 5, "date": "9999-12-31T23:59:59-12:00"}, "date", ""),
        ({"category": "food", "amount": 5, "date": "0001-01-01T00:00:00+14:00"}, "date", ""),
    ]
    for body, field, words in cases:
        response = user.send("POST", PATH, body)
        assert response.status_code == 422, (body, response.get_json())
        fields = response.get_json()["error"]["fields"]
        assert field in fields, (body, fields)
        assert words in fields[field], (body, fields)

    # Far away days and amounts are answered, not crashed on.
    assert check(user, "rent", 999999999999.99)["warning_level"] == "blocked"
    # January 2100 spreads food's 989.12 like any 31-day month: 31.91 on the first 22 days.
    assert check(user, "food", 5, date="2100-01-15")["daily_budget"] == 31.91
    assert check(user, "food", 5, date="0001-01-01")["daily_budget"] == 0.0
    assert check(user, "food", 5, date="9999-12-31T10:00:00")["date"] == "9999-12-31"
    assert user.send("POST", PATH).status_code == 400  # no body at all


def test_the_static_path_leaves_the_transaction_routes_alone(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    adapter = app.url_map.bind("localhost")
    assert adapter.match(PATH, method="POST")[0] == "affordability.check_affordability"
    assert adapter.match(PATH + "/", method="POST")[0] == "affordability.check_affordability"
    item = f"/api/transactions/{uuid.uuid4()}"
    for method in ("GET", "PUT", "DELETE"):
        assert adapter.match(item, method=method)[0].startswith("transactions."), method
    # GET on the static path is the transaction routes' own answer for an unknown id.
    user = AppUser(client, auth)
    versioned = user.send("POST", "/api/v1/transactions/check-affordability/", BODY)
    assert versioned.status_code == 200
    assert versioned.get_json()["data"]["warning_level"] == "safe"
    assert user.send("GET", PATH).status_code == 404
    assert user.send("DELETE", PATH).status_code == 404
