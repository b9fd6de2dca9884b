"""The budget engine, as plain functions over whole cents: no Flask, no database, no clock.

**The plan** (`build_plan`). Money for the month = income + additional income. Fixed costs are
paid from it, the savings goal is set aside, and the rest, the *discretionary* money, is shared
among the flexible budget categories of `domain.categories`:

- Base shares (percent of discretionary): food 30, transportation 15, other 15,
  entertainment 10, shopping 10, healthcare 8, travel 7, education 5. They start from MITA's
  middle-income tier weights, regrouped into the vocabulary's parents, with travel and education
  given their own budgets.
- Each spending habit from onboarding scales its category's share by
  `0.5 + 0.5 * min(frequency / typical, 3)`: half the share for a habit never indulged, the share
  itself at the typical frequency, at most double. Eating out (dining and coffee, averaged) moves
  only the 40 % of `food` that is not groceries. `travel_per_year = 0` means no travel budget.
- The scaled shares are normalised, so the whole discretionary amount is planned (never more,
  never less), and apportioned in cents by largest remainder.

**The month** (`month_grid`). A fixed cost lands whole on its due day (rent and loans on the
1st, bills on the 5th, unless the user set a day; the month's last day when it is shorter). A
flexible budget is spread evenly over every day of the month by largest remainder: the days of a
month sum exactly to the plan, with no rounding drift.

**Rebalancing** (`rebalance`). Days are walked in order. When a budget category's spending on a
day exceeds its limit, the overspend is covered, tier by tier, from:
1. the same category's fixed money on other days that those days have not spent (a bill paid
   on the 3rd instead of the 1st takes the 1st's money with it; a day's spending in the
   category pays its own bill first);
2. the same category's flexible money on later days;
3. other flexible categories' money on later days;
spread over each tier's donors in proportion to what they can give. A donor gives at most half
of its flexible money and never more than it has left unspent; fixed costs and savings never
give to another category. Money only moves, so the month's total never changes. Everything is a
function of the plan and the ledger: editing or deleting a transaction recomputes it all.

**Day status**: green while spent <= limit, yellow while over by at most
min(max(5 % of the limit, $2), $25), red beyond.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction
from math import lcm
from typing import Literal

from .categories import BUDGET_CATEGORIES, FLEXIBLE, ORDER, Category

Kind = Literal["fixed", "flexible"]
Status = Literal["green", "yellow", "red"]
# The words the app's budget screens know (daily_budget_screen.dart) for the same three.
StatusWord = Literal["good", "warning", "over"]
STATUS_WORDS: dict[Status, StatusWord] = {"green": "good", "yellow": "warning", "red": "over"}
Level = Literal["safe", "caution", "warning", "danger", "blocked"]

# Onboarding's fixed-expense names -> (the budget category they are spent under, default due day).
FIXED_EXPENSES: dict[str, tuple[Category, int]] = {
    "rent": ("rent", 1),
    "mortgage": ("mortgage", 1),
    "car_payment": ("transportation", 1),
    "loan_payment": ("other", 1),
    "childcare": ("childcare", 1),
    "utilities": ("utilities", 5),
    "internet": ("utilities", 5),
    "insurance": ("insurance", 5),
    "subscriptions": ("subscriptions", 5),
}
BASE_SHARES: dict[Category, int] = {
    "food": 30,
    "transportation": 15,
    "other": 15,
    "entertainment": 10,
    "shopping": 10,
    "healthcare": 8,
    "travel": 7,
    "education": 5,
}
# Onboarding's spending habits -> (the budget category they scale, a typical frequency).
HABITS: dict[str, tuple[Category, int]] = {
    "dining_out_per_month": ("food", 8),
    "coffee_per_week": ("food", 5),
    "transport_per_month": ("transportation", 8),
    "entertainment_per_month": ("entertainment", 4),
    "clothing_per_month": ("shopping", 2),
    "travel_per_year": ("travel", 2),
}
GROCERIES_SHARE_OF_FOOD = Fraction(3, 5)
MAX_HABIT_RATIO = Fraction(3)
DONOR_SHARE = Fraction(1, 2)
YELLOW_PERCENT = Fraction(5, 100)
YELLOW_MIN = 200
YELLOW_MAX = 2500
_YELLOW = YELLOW_PERCENT.as_integer_ratio()
LEVELS: tuple[tuple[Fraction, Level], ...] = (
    (Fraction(7, 10), "safe"),
    (Fraction(8, 10), "caution"),
    (Fraction(9, 10), "warning"),
)
CENTS_PER_UNIT = 100


def to_cents(amount: Decimal) -> int:
    """A money amount of at most two places as whole cents (ValueError for a third place)."""
    cents = amount * CENTS_PER_UNIT
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} has more than two decimal places")
    return int(cents)


def from_cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def apportion(total: int, weights: Sequence[int | Fraction]) -> list[int]:
    """Split `total` cents in proportion to `weights` by largest remainder: the parts sum to
    `total` exactly and each is its exact share rounded down or up. Ties go to the earlier."""
    if total < 0 or any(weight < 0 for weight in weights):
        raise ValueError("cannot apportion negative amounts or weights")
    # Over their common denominator the weights are whole numbers, in the same proportions.
    scale = lcm(*[weight.denominator for weight in weights])
    return apportion_whole(total, [int(weight * scale) for weight in weights])


def apportion_whole(total: int, weights: list[int]) -> list[int]:
    """`apportion` over whole weights (`total` and every weight >= 0, unchecked). Share i is
    total * weight_i / whole: its floor and the remainder that ranks it are integer division's,
    all over the same denominator."""
    whole = sum(weights)
    if whole == 0:
        if total:
            raise ValueError("cannot apportion a non-zero total over zero weights")
        return [0] * len(weights)
    parts = [total * weight // whole for weight in weights]
    if left := total - sum(parts):
        remainders = [total * weight % whole for weight in weights]
        # A stable sort, reversed, keeps the earlier of equal remainders first.
        for index in sorted(range(len(parts)), key=remainders.__getitem__, reverse=True)[:left]:
            parts[index] += 1
    return parts


# The plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanLine:
    category: Category  # a budget category (the top of the tree)
    kind: Kind
    cents: int
    due_day: int | None = None  # fixed lines: the day of the month it is paid
    source: str = ""  # what onboarding called it (`internet`), for the answer's breakdown


@dataclass(frozen=True)
class Plan:
    income: int
    fixed: int
    savings: int
    discretionary: int
    lines: tuple[PlanLine, ...]

    @property
    def total(self) -> int:
        """What the month's days hold between them: fixed costs plus discretionary money."""
        return self.fixed + self.discretionary


class OverCommitted(ValueError):
    """Fixed costs and the savings goal add up to more than the income."""

    def __init__(self, income: int, fixed: int, savings: int) -> None:
        super().__init__(f"fixed {fixed} + savings {savings} > income {income} (cents)")
        self.income, self.fixed, self.savings = income, fixed, savings


def habit_factor(frequency: int, typical: int) -> Fraction:
    return Fraction(1, 2) + Fraction(1, 2) * min(Fraction(frequency, typical), MAX_HABIT_RATIO)


def flexible_weights(habits: Mapping[str, int]) -> dict[Category, Fraction]:
    """Each flexible budget category's share of the discretionary money (not normalised)."""
    factors: dict[str, Fraction] = {}
    for name, (_, typical) in HABITS.items():
        if name in habits:
            factors[name] = habit_factor(max(0, habits[name]), typical)
    weights = {category: Fraction(share) for category, share in BASE_SHARES.items()}
    eating_out = [
        factors[name] for name in ("dining_out_per_month", "coffee_per_week") if name in factors
    ]
    if eating_out:
        out = sum(eating_out, Fraction(0)) / len(eating_out)
        weights["food"] *= GROCERIES_SHARE_OF_FOOD + (1 - GROCERIES_SHARE_OF_FOOD) * out
    for name in ("transport_per_month", "entertainment_per_month", "clothing_per_month"):
        if name in factors:
            weights[HABITS[name][0]] *= factors[name]
    if "travel_per_year" in habits:
        weights["travel"] *= factors["travel_per_year"] if habits["travel_per_year"] > 0 else 0
    return weights


def fixed_lines(
    fixed: Mapping[str, int], due_days: Mapping[str, int] | None = None
) -> list[PlanLine]:
    """Onboarding's fixed costs (names of `FIXED_EXPENSES`, cents) as plan lines on their due
    days (the user's, else the name's default)."""
    return [
        PlanLine(
            category=FIXED_EXPENSES[name][0],
            kind="fixed",
            cents=cents,
            due_day=(due_days or {}).get(name, FIXED_EXPENSES[name][1]),
            source=name,
        )
        for name, cents in fixed.items()
        if cents > 0
    ]


def plan(
    income: int,
    fixed: Sequence[PlanLine],
    savings: int,
    shares: Mapping[Category, Fraction],
    *,
    strict: bool = True,
) -> Plan:
    """A month's plan, in cents: the `fixed` lines, the savings set aside, and the rest shared
    among the flexible categories by `shares` (normalised; largest remainder). Fixed costs and
    savings above the income raise `OverCommitted`; with `strict=False` (a later month, after
    the income dropped) the savings give way first, then the discretionary money is 0."""
    fixed_total = sum(line.cents for line in fixed)
    if fixed_total + savings > income:
        if strict:
            raise OverCommitted(income, fixed_total, savings)
        savings = max(0, income - fixed_total)
    discretionary = max(0, income - fixed_total - savings)
    categories = [category for category in FLEXIBLE if shares.get(category, 0) > 0]
    parts = apportion(discretionary, [shares[category] for category in categories])
    flexible = [
        PlanLine(category=category, kind="flexible", cents=cents, source=category)
        for category, cents in zip(categories, parts, strict=True)
        if cents > 0
    ]
    return Plan(income, fixed_total, savings, discretionary, (*fixed, *flexible))


def build_plan(
    income: int,
    fixed: Mapping[str, int],
    savings: int,
    habits: Mapping[str, int] | None = None,
    due_days: Mapping[str, int] | None = None,
    *,
    strict: bool = True,
) -> Plan:
    """The month's plan from the onboarding answers, all amounts in cents (see `plan`)."""
    lines = fixed_lines(fixed, due_days)
    return plan(income, lines, savings, flexible_weights(habits or {}), strict=strict)


# The month's days -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One budget category's money on one day, by kind."""

    fixed: int = 0
    flexible: int = 0

    @property
    def total(self) -> int:
        return self.fixed + self.flexible


NO_MONEY = Cell()
Grid = list[dict[Category, Cell]]  # index 0 is the 1st of the month


def days_of(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def spread(total: int, days: int) -> list[int]:
    """`apportion(total, [1] * days)`: each day the same share, and the cents left over (equal
    remainders) one each to the first days."""
    if total < 0:
        raise ValueError("cannot apportion negative amounts or weights")
    each, odd = divmod(total, days)
    return [each + 1] * odd + [each] * (days - odd)


def month_grid(lines: Sequence[PlanLine], year: int, month: int) -> Grid:
    """Each day's money per budget category: fixed lines on their due day, flexible lines spread
    evenly (largest remainder) so the days sum exactly to the plan."""
    days = days_of(year, month)
    cents: list[dict[Category, list[int]]] = [{} for _ in range(days)]  # [fixed, flexible]
    for line in lines:
        if line.kind == "fixed":
            day = min(max(line.due_day or 1, 1), days) - 1
            cents[day].setdefault(line.category, [0, 0])[0] += line.cents
        else:
            for day, part in enumerate(spread(line.cents, days)):
                cents[day].setdefault(line.category, [0, 0])[1] += part
    return [
        {category: Cell(fixed, flexible) for category, (fixed, flexible) in day.items()}
        for day in cents
    ]


# Rebalancing ------------------------------------------------------------------------------------


@dataclass
class Balanced:
    """The month after rebalancing: per day and budget category, the limit (what it may spend
    now), what it spent, what it received from other cells and what is still uncovered."""

    base: Grid
    spent: list[dict[Category, int]]
    limit: list[dict[Category, int]] = field(default_factory=list)
    received: list[dict[Category, int]] = field(default_factory=list)

    def uncovered(self, day: int, category: Category) -> int:
        return max(0, self.spent[day].get(category, 0) - self.limit[day].get(category, 0))

    def categories(self, day: int) -> list[Category]:
        """The budget categories with money or spending on a day, in vocabulary order."""
        present = set(self.limit[day]) | {c for c, cents in self.spent[day].items() if cents}
        return sorted(present, key=ORDER.__getitem__)

    def day_limit(self, day: int) -> int:
        return sum(self.limit[day].values())

    def day_spent(self, day: int) -> int:
        return sum(self.spent[day].values())

    @property
    def total(self) -> int:
        return sum(self.day_limit(day) for day in range(len(self.limit)))


Rooms = dict[int, dict[Category, int]]  # day -> budget category -> cents, each > 0
FLEXIBLE_SET = frozenset(FLEXIBLE)


def rebalance(base: Grid, spent: Sequence[Mapping[Category, int]]) -> Balanced:
    """Cover each overspend from other cells' money (see the module's rules); pure.

    A cell's room in a tier is what it may still give there: the least of the tier's own bound
    (its bill's money that its day has not spent; half its flexible money) less what it gave in
    the tier, and what it has left unspent. It is worked out once, then falls by what the cell
    gives in the tier and nothing else. A cell with room is not overspent, so it receives
    nothing. A cell with room in both tiers has unspent its unpaid bill's money plus its
    flexible money not given, no less than either tier's bound, so giving in one tier leaves
    its room in the other as it was. So a cell is dropped for good when its room runs out, as is a
    day's flexible money once the walk reaches it (it only ever goes to earlier days), and an
    overspend looks only at the cells left, in the rules' order (day, then vocabulary): a cell
    without room would get no cent of `apportion`'s split, so the split is the same."""
    if len(spent) != len(base):
        raise ValueError("spending and plan cover different numbers of days")
    result = Balanced(
        base=base,
        spent=[dict(day) for day in spent],
        limit=[{c: cell.fixed + cell.flexible for c, cell in day.items()} for day in base],
        received=[{} for _ in base],
    )
    limit, spending = result.limit, result.spent
    fixed_room: Rooms = {}
    flexible_room: Rooms = {}
    # Rounding down, as `int` does for the positive amounts that can give.
    share, whole = DONOR_SHARE.numerator, DONOR_SHARE.denominator
    for day, (cells, spent_on_day) in enumerate(zip(base, spending, strict=True)):
        # What each cell has left unspent: its money less its day's spending in the category.
        unspent = {c: cents - spent_on_day.get(c, 0) for c, cents in limit[day].items()}
        unspent.update({c: -cents for c, cents in spent_on_day.items() if c not in unspent})
        # Its bill's money that its day has not spent: only a cell with a bill has some (or one
        # with negative spending, which no ledger has).
        billed = [c for c, cell in cells.items() if cell.fixed > 0]
        billed += [c for c, cents in spent_on_day.items() if cents < 0]
        bills = {
            c: min(cells.get(c, NO_MONEY).fixed - spent_on_day.get(c, 0), unspent[c])
            for c in billed
        }
        if bills := {c: cents for c, cents in bills.items() if cents > 0}:
            fixed_room[day] = bills
        # Its share of its flexible money, in vocabulary order (a category out of the vocabulary
        # never gives).
        shares = {
            c: min(cells[c].flexible * share // whole, unspent[c])
            for c in BUDGET_CATEGORIES
            if c in cells
        }
        if shares := {c: cents for c, cents in shares.items() if cents > 0}:
            flexible_room[day] = shares

    for day in range(len(base)):
        flexible_room.pop(day, None)  # a day's flexible money only ever goes to earlier days
        for category in sorted(spending[day], key=ORDER.__getitem__):
            over = spending[day][category] - limit[day].get(category, 0)
            if over <= 0:
                continue
            for table, others in (
                (fixed_room, False),  # 1. its bills' money on any other day
                (flexible_room, False),  # 2. its own flexible money on later days
                (flexible_room, True),  # 3. other flexible categories' on later days
            ):
                if not table:
                    continue
                if others:
                    donors = [
                        (d, on_day, c, room)
                        for d, on_day in table.items()
                        for c, room in on_day.items()
                        if c != category and c in FLEXIBLE_SET
                    ]
                else:
                    donors = [
                        (d, on_day, category, on_day[category])
                        for d, on_day in table.items()
                        if category in on_day and d != day
                    ]
                rooms = [room for *_, room in donors]
                available = sum(rooms)
                if not available:
                    continue
                take = min(over, available)
                parts = rooms if take == available else apportion_whole(take, rooms)
                for (d, on_day, c, room), cents in zip(donors, parts, strict=True):
                    if cents:
                        limit[d][c] -= cents
                        if cents < room:
                            on_day[c] = room - cents
                        else:  # no room left
                            del on_day[c]
                            if not on_day:
                                del table[d]
                limit[day][category] = limit[day].get(category, 0) + take
                received = result.received[day]
                received[category] = received.get(category, 0) + take
                over -= take
                if not over:
                    break
    return result


def tolerance(limit: int) -> int:
    """How far over its limit a day may go and still be yellow, in cents."""
    # `int(limit * YELLOW_PERCENT)` in whole numbers: floor division rounds down where `int`
    # rounds toward zero, which differs only below zero, where YELLOW_MIN is the answer anyway.
    return min(max(limit * _YELLOW[0] // _YELLOW[1], YELLOW_MIN), YELLOW_MAX)


def status(limit: int, spent: int) -> Status:
    if spent <= limit:
        return "green"
    return "yellow" if spent - limit <= tolerance(limit) else "red"


# Affordability ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Affordability:
    level: Level
    limit: int  # the category's money for the day
    spent: int  # already spent in the category that day
    amount: int
    overage: int  # how far the purchase goes past the day's limit
    covered: int  # how much of the overage rebalancing would cover from other days
    percent_used: Fraction  # (spent + amount) / limit, as a fraction (infinite when limit is 0)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.spent)

    @property
    def fully_covered(self) -> bool:
        return self.covered >= self.overage

    @property
    def percentage(self) -> Decimal:
        """`percent_used` as a percentage with one decimal, at most 1000 (a day with no money)."""
        capped = min(self.percent_used * 100, Fraction(1000))
        return (Decimal(capped.numerator) / Decimal(capped.denominator)).quantize(Decimal("0.1"))


def affordability(now: Balanced, day: int, category: Category, amount: int) -> Affordability:
    """How a purchase of `amount` cents in budget `category` on `day` (0-based) would sit in
    the month `now` (rebalanced as it stands): safe below 70 % of the day's limit, caution below
    80 %, warning below 90 %, danger up to the limit or when rebalancing would cover all of the
    overage, blocked otherwise."""
    limit = now.limit[day].get(category, 0)
    used = now.spent[day].get(category, 0)
    after = used + amount
    overage = max(0, after - limit)
    covered = 0
    if overage:
        with_it = [dict(d) for d in now.spent]
        with_it[day][category] = used + amount
        covered = max(0, overage - rebalance(now.base, with_it).uncovered(day, category))
    ratio = Fraction(after, limit) if limit else Fraction(10 if after else 0)
    level: Level = "blocked"
    for threshold, name in LEVELS:
        if ratio < threshold:
            level = name
            break
    else:
        if not overage or covered >= overage:
            level = "danger"
    return Affordability(level, limit, used, amount, overage, covered, ratio)


def month_days(year: int, month: int) -> list[date]:
    return [date(year, month, day) for day in range(1, days_of(year, month) + 1)]
