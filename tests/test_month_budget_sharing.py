"""A month's rebalancing is worked out once per process for the same plan and spending
(`budget._worked_out`, a small LRU): the dashboard, the budget screens and the calendar of one
app opening share it. What each caller gets is its own copy, equal to working it out afresh,
and any change to the ledger or the plan is another month.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from mita_app import budget
from mita_app.domain import budget as engine
from mita_app.extensions import db
from mita_app.models import User
from tests.budget_helpers import ledger_expense, onboarded
from tests.conftest import AuthActions

NOV_18 = datetime.fromisoformat("2026-11-18T15:00:00+00:00")  # 10:00 in New York


def afresh(month: budget.MonthBudget) -> engine.Balanced:
    """The month worked out without the shared copy."""
    lines = budget.plan_lines(month.plan) if month.plan is not None else []
    grid = engine.month_grid(lines, month.first.year, month.first.month)
    days = engine.month_days(month.first.year, month.first.month)
    return engine.rebalance(grid, [month.balanced.spent[day.day - 1] for day in days])


def test_each_caller_gets_its_own_copy_of_a_shared_month(
    app: Flask, client: FlaskClient, auth: AuthActions, budget_clock: Any
) -> None:
    budget_clock(NOV_18)
    _, user_id = onboarded(client, auth)
    ledger_expense(app, user_id, "250.00", "shopping", "2026-11-03T15:00:00+00:00")
    ledger_expense(app, user_id, "40.00", "dining", "2026-11-18T14:00:00+00:00")
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        budget._worked_out.cache_clear()
        first = budget.month_budget(user, 2026, 11)
        second = budget.month_budget(user, 2026, 11)
        board, _ = budget.month_budgets(user, NOV_18.date(), NOV_18.date(), newest=10)

        assert budget._worked_out.cache_info().hits == 2
        fresh = afresh(first)
        for month in (first, second, board[0]):
            assert month.grid == fresh.base
            assert month.balanced.base is month.grid
            assert (month.balanced.limit, month.balanced.received) == (fresh.limit, fresh.received)
            assert month.balanced.spent == fresh.spent
        # 250.00 of shopping on the 3rd: over its 10.86 by 239.14, all covered by later days.
        assert first.balanced.received[2] == {"shopping": 25_000 - 1_086}
        # Nothing mutable is shared: changing one caller's month changes no other's.
        shared = [
            (m.grid, m.balanced.limit, m.balanced.spent, m.balanced.received)
            for m in (first, second)
        ]
        for one, other in zip(*shared, strict=True):
            assert one is not other
            assert all(a is not b for a, b in zip(one, other, strict=True))
        first.balanced.limit[0]["food"] = 0
        first.balanced.spent[0]["food"] = 1
        first.grid[0].clear()
        again = budget.month_budget(user, 2026, 11)
        assert (again.balanced.limit, again.balanced.spent) == (fresh.limit, fresh.spent)
        assert again.grid == fresh.base


def test_a_new_expense_is_a_new_month_to_work_out(
    app: Flask, client: FlaskClient, auth: AuthActions, budget_clock: Any
) -> None:
    budget_clock(NOV_18)
    user, user_id = onboarded(client, auth)
    before = user.get("/api/calendar/saved/2026/11")["calendar"][2]
    assert before["limit"] == before["total"] == 111.7
    ledger_expense(app, user_id, "250.00", "shopping", "2026-11-03T15:00:00+00:00")

    after = user.get("/api/calendar/saved/2026/11")["calendar"][2]

    assert after["spent"] == 250.0
    assert after["limit"] == 350.84  # 111.70, and the 239.14 over shopping's 10.86, covered
    with app.app_context():
        stored = db.session.get(User, user_id)
        assert stored is not None
        month = budget.month_budget(stored, 2026, 11)
        assert month.balanced.limit == afresh(month).limit
