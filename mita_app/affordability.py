"""Can the user afford a purchase? `domain.budget.affordability` on the day's budget after
rebalancing, with the sentences and alternatives the app's warning dialog shows.

The day is the user's local day: a naive time is already local (the app sends one), an instant
with `Z` or an offset is converted to the user's time zone, `YYYY-MM-DD` is that day, none is
today. A user without a budget for that month (not onboarded yet) may always spend: "safe",
with a daily budget of 0 and a sentence saying there is no budget yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from . import budget
from .dashboard import label_of, money
from .domain import budget as engine
from .domain.categories import FLEXIBLE, ORDER, Category, budget_category
from .domain.days import instant, local_date
from .errors import ValidationFailed
from .models import User

MAX_ALTERNATIVES = 3
MAX_SUGGESTIONS = 3
NO_BUDGET = "You have no budget yet: finish setting it up to see what you can afford."


def day_of(user: User, when: date | datetime | None) -> date:
    """The user's local day a request's `date` names (None: today)."""
    if when is None:
        return budget.today_of(user)
    try:
        return local_date(user.timezone, instant(user.timezone, when))
    except OverflowError:
        raise ValidationFailed(fields={"date": "is out of range"}) from None


@dataclass(frozen=True)
class Alternative:
    category: str  # the app's name for it (its add-expense screen's)
    key: Category
    available: Decimal


@dataclass(frozen=True)
class Check:
    warning_level: engine.Level
    date: date
    category: str
    budget_category: Category
    amount: Decimal
    daily_budget: Decimal
    current_spent: Decimal
    remaining_budget: Decimal  # what is left of the day's budget after the purchase
    overage: Decimal
    percentage_used: Decimal
    rebalance_available: Decimal
    fully_covered: bool
    impact_message: str
    alternative_categories: list[Alternative]
    suggestions: list[str]

    @property
    def can_afford(self) -> bool:
        return self.warning_level != "blocked"

    @property
    def allow_override(self) -> bool:
        return True  # the user has the last word


def _when(day: date, today: date) -> str:
    return "today" if day == today else f"on {day.isoformat()}"


def _no_budget(user: User, day: date, category: str, amount: int, message: str) -> Check:
    parent = budget_category(category)
    spent = budget.spending(user, day, day).get(day, {}).get(parent, 0)
    zero = Decimal("0.00")
    return Check(
        warning_level="safe",
        date=day,
        category=category,
        budget_category=parent,
        amount=engine.from_cents(amount),
        daily_budget=zero,
        current_spent=engine.from_cents(spent),
        remaining_budget=zero,
        overage=zero,
        percentage_used=Decimal("0.0"),
        rebalance_available=zero,
        fully_covered=True,
        impact_message=message,
        alternative_categories=[],
        suggestions=[],
    )


def _alternatives(
    month: budget.MonthBudget, day: date, parent: Category, amount: int
) -> list[Alternative]:
    i = month.index(day)
    limits, spent = month.balanced.limit[i], month.balanced.spent[i]
    free = {
        category: limits.get(category, 0) - spent.get(category, 0)
        for category in FLEXIBLE
        if category != parent
    }
    fitting = [category for category, cents in free.items() if cents >= amount]
    fitting.sort(key=lambda category: (-free[category], ORDER[category]))
    return [
        Alternative(label_of(category), category, engine.from_cents(free[category]))
        for category in fitting[:MAX_ALTERNATIVES]
    ]


def _message(result: engine.Affordability, label: str, when: str) -> str:
    left = money(max(0, result.limit - result.spent - result.amount))
    used = f"{result.percentage:.0f}%"
    budget_name = f"{when}'s {label} budget" if when == "today" else f"the {label} budget {when}"
    if result.level == "safe":
        return f"Safe to spend: {left} of {budget_name} will be left."
    if result.level == "caution":
        return f"This uses {used} of {budget_name}; {left} will be left."
    if result.level == "warning":
        return f"Careful: this uses {used} of {budget_name}; only {left} will be left."
    if not result.overage:
        if result.limit == result.spent + result.amount:
            return f"This uses all of {budget_name}."
        return f"Almost all gone: this uses {used} of {budget_name}; only {left} will be left."
    over = money(result.overage)
    if result.fully_covered:
        return (
            f"This goes {over} over {budget_name}; MITA covers it from the rest of the "
            "month's budget."
        )
    if result.covered:
        return (
            f"This goes {over} over {budget_name}, and only {money(result.covered)} of it can "
            "be covered from the rest of the month."
        )
    return f"This goes {over} over {budget_name}, and nothing is left this month to cover it."


def _suggestions(
    result: engine.Affordability, label: str, when: str, alternatives: list[Alternative]
) -> list[str]:
    if result.level == "safe":
        return []
    if not result.overage:
        left = result.limit - result.spent - result.amount
        if not left:
            return [f"Anything more in {label} {when} goes over its budget."]
        return [f"After this, keep {label} spending {when} under {money(left)}."]
    suggestions = []
    if alternatives:
        best = alternatives[0]
        suggestions.append(
            f"Record it under {best.category} instead: {money(engine.to_cents(best.available))}"
            f" is free there {when}."
        )
    if result.remaining:
        suggestions.append(
            f"Spend at most {money(result.remaining)} to stay within the {label} budget {when}."
        )
    if result.fully_covered:
        suggestions.append(f"Go ahead: {money(result.overage)} moves from later days this month.")
    else:
        later = "tomorrow" if when == "today" else "the next day"
        suggestions.append(f"Wait until {later}, when a new day's budget starts.")
    return suggestions[:MAX_SUGGESTIONS]


def check(user: User, category: str, amount: int, when: date | datetime | None) -> Check:
    """Where a purchase of `amount` cents in `category` on the day `when` names would leave
    the user's budget (nothing is recorded)."""
    day = day_of(user, when)
    if not user.has_onboarded:
        return _no_budget(user, day, category, amount, NO_BUDGET)
    month = budget.month_budget(user, day.year, day.month)
    if month.plan is None:
        message = f"There is no budget for {day:%B %Y}: nothing to check against."
        return _no_budget(user, day, category, amount, message)
    result = month.affordability(day, category, amount)
    parent = budget_category(category)
    label = label_of(parent)
    phrase = _when(day, budget.today_of(user))
    alternatives = _alternatives(month, day, parent, amount)
    return Check(
        warning_level=result.level,
        date=day,
        category=category,
        budget_category=parent,
        amount=engine.from_cents(amount),
        daily_budget=engine.from_cents(result.limit),
        current_spent=engine.from_cents(result.spent),
        remaining_budget=engine.from_cents(max(0, result.limit - result.spent - amount)),
        overage=engine.from_cents(result.overage),
        percentage_used=result.percentage,
        rebalance_available=engine.from_cents(result.covered),
        fully_covered=result.fully_covered,
        impact_message=_message(result, label, phrase),
        alternative_categories=alternatives,
        suggestions=_suggestions(result, label, phrase, alternatives),
    )
