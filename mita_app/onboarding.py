"""Onboarding: store the answers the app collects, and build the current month's plan from them
(`domain.budget` has the rules); and the preview calendar the app draws before it submits them.

`budget.utcnow` is the clock (`onboarded_at`, the current local month).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from . import budget
from .domain import budget as engine
from .domain.categories import CATEGORIES, FLEXIBLE, Category, budget_category
from .errors import ValidationFailed
from .extensions import db
from .fields import CENT
from .models import User

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answers:
    """What the onboarding screens collected, validated (amounts to the cent)."""

    income: Decimal
    additional_income: Decimal
    fixed_expenses: dict[str, Decimal]  # onboarding's names (domain.budget.FIXED_EXPENSES)
    savings_goal: Decimal
    spending_habits: dict[str, int]
    goals: list[str]
    has_emergency_fund: bool | None
    timezone: str | None  # None: keep the user's
    region: str | None  # None: keep the user's
    fixed_due_days: dict[str, int] | None  # None: keep the user's


@dataclass(frozen=True)
class Onboarded:
    month: date  # its first day, in the user's time zone
    plan: engine.Plan
    answers: Answers

    @property
    def days(self) -> int:
        return engine.days_of(self.month.year, self.month.month)


def _amount(value: Decimal) -> str:
    return format(value.quantize(CENT), "f")


def check(answers: Answers) -> None:
    """The rules a schema cannot state: known fixed-expense names, and fixed costs plus savings
    within the income (ValidationFailed naming the field)."""
    unknown = {
        f"{field}.{name}": f"not a fixed expense: use one of {', '.join(engine.FIXED_EXPENSES)}"
        for field, names in (
            ("fixed_expenses", answers.fixed_expenses),
            ("fixed_due_days", answers.fixed_due_days or {}),
        )
        for name in names
        if name not in engine.FIXED_EXPENSES
    }
    if unknown:
        raise ValidationFailed(fields=unknown)
    income = answers.income + answers.additional_income
    fixed = sum(answers.fixed_expenses.values(), Decimal(0))
    if fixed > income:
        raise ValidationFailed(
            f"The fixed expenses ({_amount(fixed)}) exceed the monthly income ({_amount(income)}).",
            fields={
                "fixed_expenses": f"total {_amount(fixed)} exceeds the income {_amount(income)}"
            },
        )
    if fixed + answers.savings_goal > income:
        message = (
            f"The fixed expenses ({_amount(fixed)}) plus the savings goal "
            f"({_amount(answers.savings_goal)}) exceed the monthly income ({_amount(income)})."
        )
        raise ValidationFailed(
            message,
            fields={
                "goals.savings_goal_amount_per_month": (
                    f"at most {_amount(income - fixed)}: the income less the fixed expenses"
                )
            },
        )


def submit(user: User, answers: Answers) -> Onboarded:
    """Store the answers on the user and make the plan of the current local month from them, in
    place of any it had (a resubmission rebuilds it; past months keep theirs). One commit."""
    check(answers)
    budget.lock_user(user)
    db.session.refresh(user)  # as a submission that held the lock before us left it
    user.income = answers.income
    user.additional_income = answers.additional_income
    user.fixed_expenses = {name: _amount(value) for name, value in answers.fixed_expenses.items()}
    user.savings_goal = answers.savings_goal
    user.spending_habits = dict(answers.spending_habits)
    user.goals = list(answers.goals)
    user.has_emergency_fund = answers.has_emergency_fund
    if answers.fixed_due_days is not None:
        user.fixed_due_days = dict(answers.fixed_due_days)
    if answers.timezone is not None:
        user.timezone = answers.timezone
    if answers.region is not None:
        user.region = answers.region
    user.has_onboarded = True
    if user.onboarded_at is None:
        user.onboarded_at = budget.utcnow()
    month = budget.first_of(budget.today_of(user))
    plan = budget.plan_from_answers(user, strict=True)  # check() ruled OverCommitted out
    budget.replace_plan(user, month, plan)
    db.session.commit()
    return Onboarded(month, plan, answers)


# The preview calendar ---------------------------------------------------------------------------


def _preview_fixed_line(name: str, cents: int) -> engine.PlanLine:
    """A fixed cost of the preview: an onboarding name as at onboarding; a category of the
    vocabulary under its budget category on the 1st; anything else under `other` on the 1st
    (the money is still set aside: the user declared the cost)."""
    if name in engine.FIXED_EXPENSES:
        category, due_day = engine.FIXED_EXPENSES[name]
    elif name in CATEGORIES:
        category, due_day = budget_category(name), 1
    else:
        log.info("calendar preview: unknown fixed cost %r counted under other", name[:64])
        category, due_day = "other", 1
    return engine.PlanLine(category, "fixed", cents, due_day=due_day, source=name)


def preview(
    income: Decimal,
    fixed: Mapping[str, Decimal],
    savings: Decimal,
    weights: Mapping[str, Decimal] | None,
    year: int,
    month: int,
) -> budget.MonthBudget:
    """The month a plan of these answers would give, nothing spent, nothing stored. `weights`
    are the flexible budget categories' shares of the discretionary money (other keys are not
    budgets and are ignored; normalised); without any, the default shares. Fixed costs and
    savings above the income: the savings give way, then the discretionary money is 0."""
    lines = [
        _preview_fixed_line(name, cents)
        for name, cents in ((name, engine.to_cents(value)) for name, value in fixed.items())
        if cents > 0
    ]
    shares: dict[Category, Fraction] = {
        category: Fraction(weight)
        for category, weight in (weights or {}).items()
        if category in FLEXIBLE and weight > 0
    }
    previewed = engine.plan(
        engine.to_cents(income),
        lines,
        engine.to_cents(savings),
        shares or engine.flexible_weights({}),
        strict=False,
    )
    grid = engine.month_grid(previewed.lines, year, month)
    balanced = engine.rebalance(grid, [{} for _ in grid])
    return budget.MonthBudget(date(year, month, 1), None, grid, balanced)
