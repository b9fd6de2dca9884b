"""The signed-in user's budget: each month's plan, made when first needed from the onboarding
answers, the spending of its days read from the ledger, and the month as `domain.budget`
computes it (limits after rebalancing, statuses). Days are the user's local days.

`utcnow` is this module's one clock: tests patch `mita_app.budget.utcnow`.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Row, bindparam, delete, func, null, select, union_all

from .database import insert_or_skip
from .domain import budget as engine
from .domain.categories import Category, budget_category
from .domain.days import local_date, local_today
from .extensions import db
from .models import BudgetPlan, Transaction, User
from .models.base import utcnow

__all__ = ["MonthBudget", "month_budget", "month_budgets", "plan_of", "today_of", "utcnow"]


def today_of(user: User) -> date:
    return local_today(user.timezone, utcnow())


def first_of(day: date) -> date:
    return day.replace(day=1)


def lock_user(user: User) -> None:
    """Serialise this user's writes to the ledger and plans until the transaction ends (a row
    lock on PostgreSQL; SQLite has one writer at a time anyway)."""
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())


# Plans ------------------------------------------------------------------------------------------


# The statements each budget request runs are built once, here, and given their values as
# parameters: building one costs about as much CPU as running it, and one built once also keeps
# the cache key under which SQLAlchemy finds its compiled SQL.

# The stored plan of the month starting :month, and those of the :months.
PLAN = select(BudgetPlan).where(
    BudgetPlan.user_id == bindparam("user_id"), BudgetPlan.month == bindparam("month")
)
PLANS = select(BudgetPlan).where(
    BudgetPlan.user_id == bindparam("user_id"),
    BudgetPlan.month.in_(bindparam("months", expanding=True)),
)


def _cents(amount: Decimal | str | int) -> int:
    return engine.to_cents(Decimal(amount))


def plan_from_answers(user: User, *, strict: bool = False) -> engine.Plan:
    """A month's plan from the user's stored onboarding answers (see `domain.budget`)."""
    return engine.build_plan(
        income=_cents(user.income) + _cents(user.additional_income),
        fixed={name: _cents(amount) for name, amount in (user.fixed_expenses or {}).items()},
        savings=_cents(user.savings_goal),
        habits=user.spending_habits or {},
        due_days=user.fixed_due_days or {},
        strict=strict,
    )


def _row(user: User, month: date, plan: engine.Plan) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": uuid.uuid4(),
        "user_id": user.id,
        "month": month,
        "income": engine.from_cents(plan.income),
        "fixed": engine.from_cents(plan.fixed),
        "savings": engine.from_cents(plan.savings),
        "discretionary": engine.from_cents(plan.discretionary),
        "lines": [
            {
                "category": line.category,
                "kind": line.kind,
                "cents": line.cents,
                "due_day": line.due_day,
                "source": line.source,
            }
            for line in plan.lines
        ],
        "created_at": now,
        "updated_at": now,
    }


def replace_plan(user: User, month: date, plan: engine.Plan) -> BudgetPlan:
    """Make `plan` the month's plan, in place of any before it (the caller holds `lock_user`
    and commits)."""
    db.session.execute(
        delete(BudgetPlan).where(BudgetPlan.user_id == user.id, BudgetPlan.month == month)
    )
    stored = BudgetPlan(**_row(user, month, plan))
    db.session.add(stored)
    return stored


def plan_of(user: User, month: date) -> BudgetPlan | None:
    """The plan of the month starting `month`: the stored one; else, for a user who has
    onboarded, one made now from their answers, stored when the month has begun (two requests
    at once store one) and only previewed for a later month. None before onboarding."""
    stored = db.session.scalar(PLAN, {"user_id": user.id, "month": month})
    return stored if stored is not None else _unstored_plan(user, month)


def _unstored_plan(user: User, month: date) -> BudgetPlan | None:
    """`plan_of` for a month with no stored plan."""
    if not user.has_onboarded:
        return None
    if user.onboarded_at is not None and month < first_of(
        local_date(user.timezone, user.onboarded_at)
    ):
        return None
    row = _row(user, month, plan_from_answers(user))
    if month > first_of(today_of(user)):
        return BudgetPlan(**row)  # a preview, not stored
    db.session.execute(insert_or_skip(BudgetPlan, row, ["user_id", "month"]))
    db.session.commit()
    return db.session.scalar(PLAN, {"user_id": user.id, "month": month})


def plan_lines(plan: BudgetPlan) -> list[engine.PlanLine]:
    return [
        engine.PlanLine(
            category=cast(Category, line["category"]),
            kind=line["kind"],
            cents=int(line["cents"]),
            due_day=line.get("due_day"),
            source=line.get("source", ""),
        )
        for line in plan.lines
    ]


# Spending ---------------------------------------------------------------------------------------


# The ledger's order, newest first.
NEWEST_FIRST = (Transaction.spent_at.desc(), Transaction.created_at.desc(), Transaction.id.desc())
# What the user spent per local day and spending category from :first to :last, summed by the
# database on the (user_id, spent_on) index.
SUMS = (
    select(Transaction.spent_on, Transaction.category, func.sum(Transaction.amount))
    .where(
        Transaction.user_id == bindparam("user_id"),
        Transaction.spent_on >= bindparam("first"),
        Transaction.spent_on <= bindparam("last"),
    )
    .group_by(Transaction.spent_on, Transaction.category)
)
# The user's :newest latest expenses (on the (user_id, spent_at) index), then `SUMS`' rows,
# which have no id: two reads in one statement.
NEWEST = (
    select(
        Transaction.spent_on,
        Transaction.category,
        Transaction.amount,
        Transaction.id,
        Transaction.description,
        Transaction.merchant,
        Transaction.spent_at,
        Transaction.created_at,
    )
    .where(Transaction.user_id == bindparam("user_id"))
    .order_by(*NEWEST_FIRST)
    .limit(bindparam("newest"))
    .subquery()
)
NEWEST_AND_SUMS = union_all(select(NEWEST), SUMS.add_columns(*[null()] * 5))

SpentByDay = dict[date, dict[Category, int]]


def _by_day(sums: Iterable[tuple[date, str, Decimal]]) -> SpentByDay:
    """`SUMS`' rows as cents per local day and budget category."""
    spent: defaultdict[date, defaultdict[Category, int]] = defaultdict(lambda: defaultdict(int))
    for day, category, total in sums:
        spent[day][budget_category(category)] += engine.to_cents(total)
    return {day: dict(by_category) for day, by_category in spent.items()}


def spending(user: User, first: date, last: date) -> SpentByDay:
    """Cents spent per local day and budget category from `first` to `last`, summed by the
    database from the ledger (one query on the (user_id, spent_on) index)."""
    return _by_day(db.session.execute(SUMS, {"user_id": user.id, "first": first, "last": last}))


def spending_and_newest(
    user: User, first: date, last: date, newest: int
) -> tuple[SpentByDay, list[Row[Any]]]:
    """`spending(user, first, last)` and the user's `newest` latest expenses, newest first,
    in one statement (`NEWEST_AND_SUMS`)."""
    rows = db.session.execute(
        NEWEST_AND_SUMS, {"user_id": user.id, "first": first, "last": last, "newest": newest}
    ).all()
    latest = [row for row in rows if row.id is not None]
    # A union keeps no order: the ledger's, by (spent_at, created_at, id), descending.
    latest.sort(key=lambda row: (row.spent_at, row.created_at, row.id), reverse=True)
    # A sum's row: (spent_on, category, sum, None...).
    return _by_day(row[:3] for row in rows if row.id is None), latest


# The month --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayBudget:
    date: date
    limit: int  # cents, after rebalancing
    spent: int
    status: engine.Status
    categories: dict[Category, tuple[int, int]]  # budget category: (limit, spent)


@dataclass(frozen=True)
class MonthBudget:
    """One month of one user's budget, all amounts in cents."""

    first: date
    plan: BudgetPlan | None
    grid: engine.Grid
    balanced: engine.Balanced

    @property
    def days(self) -> list[date]:
        return engine.month_days(self.first.year, self.first.month)

    def index(self, day: date) -> int:
        if (day.year, day.month) != (self.first.year, self.first.month):
            raise ValueError(f"{day} is not in the month of {self.first}")
        return day.day - 1

    def day(self, day: date) -> DayBudget:
        i = self.index(day)
        limit, spent = self.balanced.day_limit(i), self.balanced.day_spent(i)
        return DayBudget(
            date=day,
            limit=limit,
            spent=spent,
            status=engine.status(limit, spent),
            categories={
                category: (
                    self.balanced.limit[i].get(category, 0),
                    self.balanced.spent[i].get(category, 0),
                )
                for category in self.balanced.categories(i)
            },
        )

    @property
    def total_budget(self) -> int:
        return self.balanced.total

    def spent_through(self, last: date | None = None) -> int:
        """Cents spent from the 1st to `last` (default: the whole month)."""
        end = len(self.grid) if last is None else self.index(last) + 1
        return sum(self.balanced.day_spent(i) for i in range(end))

    def by_category(self) -> dict[Category, tuple[int, int]]:
        """Each budget category's month: (planned after rebalancing, spent)."""
        totals: defaultdict[Category, list[int]] = defaultdict(lambda: [0, 0])
        for i in range(len(self.grid)):
            for category, cents in self.balanced.limit[i].items():
                totals[category][0] += cents
            for category, cents in self.balanced.spent[i].items():
                totals[category][1] += cents
        return {category: (planned, spent) for category, (planned, spent) in totals.items()}

    def affordability(self, day: date, category: str, amount: int) -> engine.Affordability:
        return engine.affordability(
            self.balanced, self.index(day), budget_category(category), amount
        )


@functools.lru_cache(maxsize=64)  # ~70 KiB each
def _worked_out(
    lines: tuple[engine.PlanLine, ...],
    year: int,
    month: int,
    spent: tuple[tuple[tuple[Category, int], ...], ...],
) -> tuple[engine.Grid, engine.Balanced]:
    """The month's grid and its rebalancing: pure functions of the plan's lines, the month and
    each day's spending (in order), so worked out once per process for the same ones: the
    dashboard, the budget screens and the calendar of one app opening ask for the same month.
    What it returns is shared: `_month` hands out copies only."""
    grid = engine.month_grid(lines, year, month)
    return grid, engine.rebalance(grid, [dict(day) for day in spent])


def _month(
    first: date, plan: BudgetPlan | None, spent_by_day: Mapping[date, Mapping[Category, int]]
) -> MonthBudget:
    """The month starting `first` from its plan (if any) and its spending per day, in objects
    of the caller's own."""
    days = engine.month_days(first.year, first.month)
    grid, balanced = _worked_out(
        tuple(plan_lines(plan)) if plan is not None else (),
        first.year,
        first.month,
        tuple(tuple(spent_by_day.get(day, {}).items()) for day in days),
    )
    mine = [dict(cells) for cells in grid]
    return MonthBudget(
        first,
        plan,
        mine,
        engine.Balanced(
            base=mine,
            spent=[dict(by_category) for by_category in balanced.spent],
            limit=[dict(by_category) for by_category in balanced.limit],
            received=[dict(by_category) for by_category in balanced.received],
        ),
    )


def month_budget(user: User, year: int, month: int) -> MonthBudget:
    """The month's plan (made if needed), its spending from the ledger, rebalanced."""
    first = date(year, month, 1)
    plan = plan_of(user, first)
    days = engine.month_days(year, month)
    return _month(first, plan, spending(user, days[0], days[-1]))


def month_budgets(
    user: User, first: date, last: date, *, newest: int = 0
) -> tuple[list[MonthBudget], list[Row[Any]]]:
    """`month_budget` of every month from `first`'s to `last`'s, with one query for their
    stored plans and one for their spending (a plan still to be made costs `plan_of`'s), and
    the user's `newest` latest expenses read with the spending (`spending_and_newest`)."""
    months = [first_of(first)]
    while months[-1] < first_of(last):
        months.append(first_of(months[-1] + timedelta(days=31)))
    stored = {
        plan.month: plan
        for plan in db.session.scalars(PLANS, {"user_id": user.id, "months": months})
    }
    plans = {month: stored.get(month) or _unstored_plan(user, month) for month in months}
    days = [day for month in months for day in engine.month_days(month.year, month.month)]
    if newest:
        spent_by_day, latest = spending_and_newest(user, days[0], days[-1], newest)
    else:
        spent_by_day, latest = spending(user, days[0], days[-1]), []
    return [_month(month, plan, spent_by_day) for month, plan in plans.items()], latest


@dataclass(frozen=True)
class Impact:
    """What one expense already in the ledger does to its month, against the same month without
    it: the cents moved to its day's budget category to cover it, and whether it left any
    overspend that no other money covers."""

    covered: int
    fully_covered: bool

    @property
    def rebalanced(self) -> bool:
        """Money moved for it (an overspend nothing could cover moved none)."""
        return self.covered > 0


def impact_of(user: User, day: date, category: str, cents: int) -> Impact:
    """The `Impact` of an expense of `cents` in `category` on the local `day`, which the ledger
    (as this session sees it) already holds."""
    month = month_budget(user, day.year, day.month)
    i, cell = month.index(day), budget_category(category)
    with_it = month.balanced
    spent = [dict(by_category) for by_category in with_it.spent]
    spent[i][cell] = spent[i].get(cell, 0) - cents
    without = engine.rebalance(month.grid, spent)
    covered = with_it.received[i].get(cell, 0) - without.received[i].get(cell, 0)
    left = with_it.uncovered(i, cell) - without.uncovered(i, cell)
    return Impact(covered=max(0, covered), fully_covered=left <= 0)
