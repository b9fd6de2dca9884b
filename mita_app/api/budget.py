"""/api/budget: the caller's month as the app's dashboard and budget screens read it.

Every answer is computed from one `budget.month_budget` (the plan and one read of the ledger,
rebalanced; `mita_app.domain.budget` has the rules). Days are local days in the caller's time
zone. A day's `remaining` is what it may still spend, never below 0 (its `status` says it went
over); a month's or a category's `remaining` is planned less spent, negative when over. Before
onboarding there is no plan: empty lists and budgets of 0 (spending, if any, is still counted).
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field, RootModel

from .. import budget
from ..auth import caller, login_required
from ..budget import DayBudget, MonthBudget
from ..domain import budget as engine
from ..domain.categories import BUDGET_CATEGORIES, ORDER
from ..fields import MoneyOut
from ..validation import ok, query, returns
from .schemas.budget import MonthQuery, money

bp = Blueprint("budget", __name__, url_prefix="/api/budget")

TOTALS = ("total_budget", "total_spent", "remaining")
assert not set(TOTALS) & set(BUDGET_CATEGORIES), "a category would hide a total"
BAD_MONTH = "year outside 2000-2100, or month outside 1-12"


def _month(params: MonthQuery) -> MonthBudget:
    user = caller()
    return budget.month_budget(user, *params.of(budget.today_of(user)))


class DayOut(BaseModel):
    date: dt.date
    limit: MoneyOut = Field(description="What the day may spend, after rebalancing")
    budget: MoneyOut = Field(description="The limit again")
    spent: MoneyOut
    remaining: MoneyOut = Field(description="limit - spent, never below 0")
    status: engine.StatusWord = Field(
        description="good: within the limit; warning: a little over; over"
    )

    @classmethod
    def of(cls, day: DayBudget) -> DayOut:
        return cls(
            date=day.date,
            limit=money(day.limit),
            budget=money(day.limit),
            spent=money(day.spent),
            remaining=money(max(0, day.limit - day.spent)),
            status=engine.STATUS_WORDS[day.status],
        )


class DayList(RootModel[list[DayOut]]):
    pass


class SpentOut(RootModel[dict[str, MoneyOut]]):
    """Spent this month per budget category (each with money or spending)."""


class RemainingOut(BaseModel):
    """The month's totals, and planned - spent for each budget category with money or spending
    (beside the totals, as MITA sent them)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"additionalProperties": {"type": "number"}},
    )

    total_budget: MoneyOut = Field(description="The month's plan: fixed costs + discretionary")
    total_spent: MoneyOut
    remaining: MoneyOut = Field(description="total_budget - total_spent; negative when over")


class LiveStatusOut(BaseModel):
    date: dt.date = Field(description="Today, in the caller's time zone")
    daily_budget: MoneyOut = Field(description="Today's limit")
    spent_today: MoneyOut
    remaining_today: MoneyOut = Field(description="Today's limit - spent, never below 0")
    status: engine.StatusWord
    monthly_budget: MoneyOut = Field(description="The month's plan: fixed costs + discretionary")
    monthly_spent: MoneyOut
    total_budget: MoneyOut = Field(description="monthly_budget again")
    total_spent: MoneyOut = Field(description="monthly_spent again")
    remaining_month: MoneyOut = Field(description="monthly_budget - monthly_spent")
    on_track: bool = Field(description="Spent so far <= the limits of the days up to today")
    days_remaining: int = Field(description="Days left in the month, today included")

    @classmethod
    def of(cls, month: MonthBudget, today: dt.date) -> LiveStatusOut:
        day = month.day(today)
        total, spent = month.total_budget, month.spent_through()
        limits_so_far = sum(month.balanced.day_limit(i) for i in range(today.day))
        return cls(
            date=today,
            daily_budget=money(day.limit),
            spent_today=money(day.spent),
            remaining_today=money(max(0, day.limit - day.spent)),
            status=engine.STATUS_WORDS[day.status],
            monthly_budget=money(total),
            monthly_spent=money(spent),
            total_budget=money(total),
            total_spent=money(spent),
            remaining_month=money(total - spent),
            on_track=month.spent_through(today) <= limits_so_far,
            days_remaining=len(month.days) - today.day + 1,
        )


def _by_category(month: MonthBudget) -> list[tuple[str, int, int]]:
    """(budget category, planned, spent) in the vocabulary's order."""
    totals = month.by_category()
    return [(category, *totals[category]) for category in sorted(totals, key=ORDER.__getitem__)]


@bp.get("/daily")
@returns(DayList, errors={422: BAD_MONTH})
@login_required
@query(MonthQuery)
def daily(params: MonthQuery) -> Response:
    """Each day of the month (default: this one) that has money: limit, spent, remaining and
    status. [] when the month has no plan (before onboarding)."""
    month = _month(params)
    # The app's daily budget screen divides by each day's limit (a 0 makes it throw): a day
    # with no money at all, in a month whose bills and savings take the whole income, is left
    # out; its spending shows in the calendar and the month's totals.
    days = [month.day(day) for day in month.days] if month.plan is not None else []
    return ok(DayList([DayOut.of(day) for day in days if day.limit > 0]))


@bp.get("/spent")
@returns(SpentOut, errors={422: BAD_MONTH})
@login_required
@query(MonthQuery)
def spent(params: MonthQuery) -> Response:
    """Spent in the month (default: this one) per budget category."""
    rows = _by_category(_month(params))
    return ok(SpentOut({category: money(used) for category, _, used in rows}))


@bp.get("/remaining")
@returns(RemainingOut, errors={422: BAD_MONTH})
@login_required
@query(MonthQuery)
def remaining(params: MonthQuery) -> Response:
    """What is left of the month (default: this one), in total and per budget category."""
    month = _month(params)
    total, used = month.total_budget, month.spent_through()
    categories = {
        category: float(money(planned - used_)) for category, planned, used_ in _by_category(month)
    }
    return ok(
        RemainingOut(
            total_budget=money(total),
            total_spent=money(used),
            remaining=money(total - used),
            **categories,
        )
    )


@bp.get("/live_status")
@returns(LiveStatusOut)
@login_required
def live_status() -> Response:
    """Today and this month at a glance."""
    user = caller()
    today = budget.today_of(user)
    month = budget.month_budget(user, today.year, today.month)
    return ok(LiveStatusOut.of(month, today))
