"""The main screen's dashboard: today's budget by category, this week's days, the latest
expenses and one sentence about where the user stands, all from `budget.month_budgets` and the
ledger, on the user's local days.

A request reads at most: the stored plans of this week's months (one query), then their
spending and the ten latest expenses (one: `budget.spending_and_newest`); a plan still to be
made adds its insert. A user who has not onboarded has no budget: zeros and empty lists, without
a query.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row

from . import budget
from .domain import budget as engine
from .domain.categories import Category, budget_category
from .domain.days import zone
from .models import User

RECENT = 10
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# How the app shows a category: its key in title case, but for the names of the app's
# add-expense screen (the alternatives of an affordability check go back into its dropdown).
LABELS: dict[str, str] = {
    "food": "Food & Dining",
    "healthcare": "Health & Fitness",
    "utilities": "Bills & Utilities",
}
# A budget category's icon (a Material icon name the app maps: api_service.dart's iconMap) and
# colour (#RRGGBB); a child category shows its parent's.
STYLES: dict[Category, tuple[str, str]] = {
    "food": ("restaurant", "#4CAF50"),
    "transportation": ("directions_car", "#2196F3"),
    "entertainment": ("movie", "#9C27B0"),
    "shopping": ("shopping_bag", "#FF9800"),
    "healthcare": ("local_hospital", "#F44336"),
    "utilities": ("power", "#607D8B"),
    "travel": ("category", "#009688"),
    "education": ("category", "#3F51B5"),
    "other": ("category", "#9E9E9E"),
    "rent": ("attach_money", "#795548"),
    "mortgage": ("attach_money", "#8D6E63"),
    "insurance": ("attach_money", "#00BCD4"),
    "subscriptions": ("attach_money", "#E91E63"),
    "childcare": ("attach_money", "#FFC107"),
}


def label_of(category: str) -> str:
    return LABELS.get(category, category.replace("_", " ").title())


def style_of(category: str) -> tuple[str, str]:
    """(icon, colour) of a category."""
    return STYLES[budget_category(category)]


def money(cents: int) -> str:
    """Cents as the app writes money: `$1,234.50`, `-$3.00`."""
    sign = "-" if cents < 0 else ""
    return f"{sign}${engine.from_cents(abs(cents)):,.2f}"


@dataclass(frozen=True)
class Target:
    category: str  # the app's name for it
    key: Category
    limit: Decimal
    spent: Decimal
    icon: str
    color: str


@dataclass(frozen=True)
class WeekDay:
    day: str
    date: date
    status: engine.StatusWord
    spent: Decimal
    budget: Decimal


@dataclass(frozen=True)
class Recent:
    id: uuid.UUID
    amount: Decimal
    category: str
    action: str
    date: datetime  # in the user's time zone
    icon: str
    color: str


@dataclass(frozen=True)
class Insight:
    title: str
    text: str


@dataclass(frozen=True)
class Dashboard:
    today: date
    balance: Decimal
    spent: Decimal
    daily_targets: list[Target]
    week: list[WeekDay]
    transactions: list[Recent]
    insights_preview: Insight
    user_income: Decimal
    monthly_budget: Decimal
    monthly_spent: Decimal


NOT_ONBOARDED = Insight(
    "Getting started",
    "Finish setting up your budget: MITA spreads what is left after your bills and savings "
    "over the days of the month.",
)


def _recent(user: User, rows: Iterable[Row[Any]]) -> list[Recent]:
    local = zone(user.timezone)
    recent = []
    for row in rows:
        icon, color = style_of(row.category)
        action = row.description.strip() or (row.merchant or "").strip()
        recent.append(
            Recent(
                id=row.id,
                amount=row.amount,
                category=row.category,
                action=action or label_of(row.category),
                date=row.spent_at.astimezone(local),
                icon=icon,
                color=color,
            )
        )
    return recent


def _insight(today: budget.DayBudget, month_left: int) -> Insight:
    over = {
        category: spent - limit
        for category, (limit, spent) in today.categories.items()
        if spent > limit
    }
    if over:
        worst = max(over, key=lambda category: over[category])
        return Insight(
            "Over budget today",
            f"Over by {money(over[worst])} in {label_of(worst)} today, more than the rest of "
            "the month can cover.",
        )
    if month_left < 0:
        return Insight(
            "Over budget this month",
            f"You have spent {money(-month_left)} more than this month's budget.",
        )
    left = today.limit - today.spent
    if left > 0:
        return Insight(
            "On track",
            f"You have {money(left)} left today and {money(month_left)} left this month.",
        )
    return Insight(
        "Today's budget is spent",
        f"Nothing is left of today's {money(today.limit)}; {money(month_left)} is left for the "
        "rest of the month.",
    )


def dashboard(user: User) -> Dashboard:
    today = budget.today_of(user)
    income = user.income + user.additional_income
    if not user.has_onboarded:
        zero = Decimal("0.00")
        return Dashboard(
            today=today,
            balance=zero,
            spent=zero,
            daily_targets=[],
            week=[],
            transactions=[],
            insights_preview=NOT_ONBOARDED,
            user_income=income,
            monthly_budget=zero,
            monthly_spent=zero,
        )
    monday = today - timedelta(days=today.weekday())
    budgets, latest = budget.month_budgets(user, monday, monday + timedelta(days=6), newest=RECENT)
    months = {(mb.first.year, mb.first.month): mb for mb in budgets}

    def month_of(day: date) -> budget.MonthBudget:
        return months[day.year, day.month]

    this_month = month_of(today)
    now = this_month.day(today)
    week = []
    for offset, name in enumerate(WEEKDAYS):
        day = month_of(monday + timedelta(days=offset)).day(monday + timedelta(days=offset))
        week.append(
            WeekDay(
                name,
                day.date,
                engine.STATUS_WORDS[day.status],
                engine.from_cents(day.spent),
                engine.from_cents(day.limit),
            )
        )
    targets = []
    for category, (limit, spent) in now.categories.items():
        icon, color = STYLES[category]
        targets.append(
            Target(
                label_of(category),
                category,
                engine.from_cents(limit),
                engine.from_cents(spent),
                icon,
                color,
            )
        )
    total, spent = this_month.total_budget, this_month.spent_through()
    return Dashboard(
        today=today,
        balance=engine.from_cents(total - spent),
        spent=engine.from_cents(now.spent),
        daily_targets=targets,
        week=week,
        transactions=_recent(user, latest),
        insights_preview=_insight(now, total - spent),
        user_income=income,
        monthly_budget=engine.from_cents(total),
        monthly_spent=engine.from_cents(spent),
    )
