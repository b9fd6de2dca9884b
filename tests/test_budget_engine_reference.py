"""The budget engine against its first implementation, kept below verbatim as the reference:
`rebalance` (and `apportion`, `month_grid`, `tolerance`, which it or the answers use) must give
exactly what the reference gives, on random months with hypothesis: every limit, every amount
received, the spending it holds, in the same order of days and categories.

The reference walks every later day and flexible category for each overspend and multiplies
Fractions for each of them; `mita_app.domain.budget` keeps each cell's room and drops the cells
with none. The months here are small and dense with overspends, bills, flexible money and cells
holding both, so that every tier gives, partly and wholly, and `apportion` splits with remainders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mita_app.domain import budget as engine
from mita_app.domain.budget import (
    DONOR_SHARE,
    YELLOW_MAX,
    YELLOW_MIN,
    YELLOW_PERCENT,
    Balanced,
    Cell,
    Grid,
    PlanLine,
    days_of,
)
from mita_app.domain.categories import BUDGET_CATEGORIES, FLEXIBLE, ORDER, Category

MANY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The reference takes ~40 ms over a busy planned month: fewer of those.
BUSY = settings(MANY, max_examples=30)


# The reference: verbatim but for its names (reference_*) ----------------------------------------


def reference_apportion(total: int, weights: Sequence[int | Fraction]) -> list[int]:
    """Split `total` cents in proportion to `weights` by largest remainder: the parts sum to
    `total` exactly and each is its exact share rounded down or up. Ties go to the earlier."""
    if total < 0 or any(weight < 0 for weight in weights):
        raise ValueError("cannot apportion negative amounts or weights")
    whole = sum(weights, Fraction(0))
    if whole == 0:
        if total:
            raise ValueError("cannot apportion a non-zero total over zero weights")
        return [0] * len(weights)
    shares = [Fraction(total) * weight / whole for weight in weights]
    parts = [int(share) for share in shares]  # floor: every share is >= 0
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - parts[i]), i))
    for index in by_remainder[: total - sum(parts)]:
        parts[index] += 1
    return parts


def reference_month_grid(lines: Sequence[PlanLine], year: int, month: int) -> Grid:
    """Each day's money per budget category: fixed lines on their due day, flexible lines spread
    evenly (largest remainder) so the days sum exactly to the plan."""
    days = days_of(year, month)
    grid: Grid = [{} for _ in range(days)]
    for line in lines:
        if line.kind == "fixed":
            day = min(max(line.due_day or 1, 1), days) - 1
            cell = grid[day].get(line.category, Cell())
            grid[day][line.category] = replace(cell, fixed=cell.fixed + line.cents)
        else:
            for day, cents in enumerate(reference_apportion(line.cents, [1] * days)):
                cell = grid[day].get(line.category, Cell())
                grid[day][line.category] = replace(cell, flexible=cell.flexible + cents)
    return grid


def reference_rebalance(base: Grid, spent: Sequence[Mapping[Category, int]]) -> Balanced:
    """Cover each overspend from other cells' money (see the module's rules); pure."""
    if len(spent) != len(base):
        raise ValueError("spending and plan cover different numbers of days")
    result = Balanced(
        base=base,
        spent=[dict(day) for day in spent],
        limit=[{category: cell.total for category, cell in day.items()} for day in base],
        received=[{} for _ in base],
    )
    gave_fixed: dict[tuple[int, Category], int] = {}
    gave_flexible: dict[tuple[int, Category], int] = {}

    def unspent(day: int, category: Category) -> int:
        return result.limit[day].get(category, 0) - result.spent[day].get(category, 0)

    def fixed_room(day: int, category: Category) -> int:
        # A day's spending in the category pays its bill first: only an unpaid bill's money
        # can follow the bill to the day it was paid.
        cell = base[day].get(category, Cell())
        spent = result.spent[day].get(category, 0)
        room = cell.fixed - gave_fixed.get((day, category), 0) - spent
        return max(0, min(room, unspent(day, category)))

    def flexible_room(day: int, category: Category) -> int:
        cell = base[day].get(category, Cell())
        room = int(cell.flexible * DONOR_SHARE) - gave_flexible.get((day, category), 0)
        return max(0, min(room, unspent(day, category)))

    days = len(base)
    for day in range(days):
        for category in sorted(result.spent[day], key=ORDER.__getitem__):
            over = -unspent(day, category)
            if over <= 0:
                continue
            same_fixed = [(d, category) for d in range(days) if d != day]
            same_later = [(d, category) for d in range(day + 1, days)]
            others_later = [
                (d, other) for d in range(day + 1, days) for other in FLEXIBLE if other != category
            ]
            for donors, room, gave in (
                (same_fixed, fixed_room, gave_fixed),
                (same_later, flexible_room, gave_flexible),
                (others_later, flexible_room, gave_flexible),
            ):
                rooms = [room(d, c) for d, c in donors]
                available = sum(rooms)
                if not available:
                    continue
                take = min(over, available)
                for (d, c), cents in zip(donors, reference_apportion(take, rooms), strict=True):
                    if cents:
                        gave[d, c] = gave.get((d, c), 0) + cents
                        result.limit[d][c] -= cents
                limits = result.limit[day]
                limits[category] = limits.get(category, 0) + take
                result.received[day][category] = result.received[day].get(category, 0) + take
                over -= take
                if not over:
                    break
    return result


def reference_tolerance(limit: int) -> int:
    """How far over its limit a day may go and still be yellow, in cents."""
    return min(max(int(limit * YELLOW_PERCENT), YELLOW_MIN), YELLOW_MAX)


# Comparing --------------------------------------------------------------------------------------


def in_order(days: Sequence[Mapping[Any, Any]]) -> list[list[tuple[Any, Any]]]:
    """Days of dicts with the order of their keys: equal only if built alike."""
    return [list(day.items()) for day in days]


def outcome(function: Any, *args: Any) -> Any:
    """What a call gives: its `Balanced` in full, or the type of what it raised."""
    try:
        result = function(*args)
    except (KeyError, ValueError) as error:
        return type(error)
    assert result.base is args[0]
    return (
        in_order(result.limit),
        in_order(result.received),
        in_order(result.spent),
        result.total,
    )


def assert_same_rebalance(base: Grid, spent: list[dict[Category, int]]) -> None:
    assert outcome(engine.rebalance, base, spent) == outcome(reference_rebalance, base, spent)


# Months -----------------------------------------------------------------------------------------

days_in_month = st.integers(28, 31)
categories = st.lists(st.sampled_from(BUDGET_CATEGORIES), min_size=1, max_size=6, unique=True)


@st.composite
def grids(draw: st.DrawFn) -> Grid:
    """A month of cells: per category, flexible money on some or all days (even, uneven or none)
    and bills on a few days, so that a cell may hold both; a fixed category may hold flexible
    money too, and a cell may be present with nothing in it."""
    days = draw(days_in_month)
    grid: Grid = [{} for _ in range(days)]
    for category in draw(categories):
        daily = draw(st.sampled_from([0, 1, 3, 700, 3_297, 10_000]))
        uneven = draw(st.lists(st.integers(0, 4_000), min_size=days, max_size=days))
        flexible = draw(st.sampled_from(["none", "even", "uneven", "some days"]))
        bills = draw(st.dictionaries(st.integers(0, days - 1), st.integers(1, 200_000), max_size=3))
        empty_cells = draw(st.booleans())
        for day in range(days):
            money = {
                "none": 0,
                "even": daily,
                "uneven": uneven[day],
                "some days": uneven[day] if day % 3 else 0,
            }[flexible]
            if money or bills.get(day) or empty_cells:
                grid[day][category] = Cell(fixed=bills.get(day, 0), flexible=money)
    return grid


@st.composite
def months_with_spending(
    draw: st.DrawFn, *, negative: bool = False
) -> tuple[Grid, list[dict[Category, int]]]:
    """A month and its spending per day and budget category, often far over the limits (in
    categories with money or without), with some days spending exactly a limit or nothing."""
    grid = draw(grids())
    amounts = st.one_of(
        st.integers(1, 3_000),
        st.integers(3_000, 60_000),
        st.sampled_from([0, 1, 3_297, 10_000, 200_000]),
        *([st.integers(-5_000, -1)] if negative else []),
    )
    entries = draw(
        st.lists(
            st.tuples(st.integers(0, len(grid) - 1), st.sampled_from(BUDGET_CATEGORIES), amounts),
            max_size=90,
        )
    )
    spent: list[dict[Category, int]] = [{} for _ in grid]
    for day, category, cents in entries:
        spent[day][category] = spent[day].get(category, 0) + cents
    # Some cells spend exactly their money.
    for day, cells in enumerate(grid):
        for category, cell in cells.items():
            if (day + ORDER[category]) % 5 == 0 and category not in spent[day]:
                spent[day][category] = cell.total
    return grid, spent


@st.composite
def planned_months(draw: st.DrawFn) -> tuple[Grid, list[dict[Category, int]]]:
    """A month as the app plans it (`month_grid`), spent like a busy ledger: most days over in
    a few categories, as the benchmark's year of history is."""
    year, month = draw(st.sampled_from([(2026, 2), (2028, 2), (2026, 11), (2026, 12)]))
    flexible = draw(st.dictionaries(st.sampled_from(FLEXIBLE), st.integers(0, 400_000), min_size=1))
    lines = [PlanLine(category, "flexible", cents) for category, cents in flexible.items()]
    for name in draw(st.lists(st.sampled_from(list(engine.FIXED_EXPENSES)), unique=True)):
        category, due = engine.FIXED_EXPENSES[name]
        due = draw(st.sampled_from([due, 3, 31]))
        lines.append(PlanLine(category, "fixed", draw(st.integers(1, 250_000)), due, name))
    grid = engine.month_grid(lines, year, month)
    assert in_order(grid) == in_order(reference_month_grid(lines, year, month))
    spent: list[dict[Category, int]] = [{} for _ in grid]
    for day in range(len(grid)):
        for category in draw(st.lists(st.sampled_from(BUDGET_CATEGORIES), max_size=4)):
            spent[day][category] = draw(st.integers(1, 25_000))
    return grid, spent


# Tests ------------------------------------------------------------------------------------------


@MANY
@given(case=months_with_spending())
def test_rebalance_gives_what_the_reference_gives(case):
    assert_same_rebalance(*case)


@BUSY
@given(case=planned_months())
def test_rebalance_gives_what_the_reference_gives_on_planned_busy_months(case):
    assert_same_rebalance(*case)


@settings(MANY, max_examples=50)
@given(case=months_with_spending(negative=True))
def test_negative_spending_no_ledger_has_gives_what_the_reference_gives_or_raises_alike(case):
    assert_same_rebalance(*case)


def test_every_tier_gives_in_part_and_in_whole_against_the_reference():
    """A hand-made month: a car payment beside transportation's flexible money, rent paid late,
    and overspends that each tier covers partly, then wholly."""
    days = 30
    grid: Grid = [
        {"food": Cell(0, 1_001), "transportation": Cell(0, 333), "other": Cell(0, 77)}
        for _ in range(days)
    ]
    grid[0]["rent"] = Cell(200_000, 0)
    grid[0]["transportation"] = Cell(35_000, 333)
    spent: list[dict[Category, int]] = [{} for _ in range(days)]
    spent[2] = {"rent": 200_000, "transportation": 36_000, "food": 1_500}
    spent[4] = {"food": 9_000, "other": 80}
    spent[9] = {"food": 30_000, "shopping": 1_234}
    spent[17] = {"transportation": 333, "food": 1_002}
    spent[28] = {"food": 50_000}
    assert_same_rebalance(grid, spent)
    assert_same_rebalance(grid, spent[1:])  # a day short: both refuse it
    balanced = engine.rebalance(grid, spent)
    # The 3rd: the rent and the car payment follow their bills from the 1st (35 000 of the
    # 35 667 over; the rest from transportation's later days), food from its later days.
    assert balanced.received[2] == {"food": 499, "transportation": 35_667, "rent": 200_000}
    assert balanced.limit[0]["transportation"] == 333  # its flexible money stays
    # The 29th: the 30th's money went to earlier overspends, so only its own covers it.
    assert balanced.uncovered(28, "food") == 50_000 - 1_001
    assert balanced.limit[29] == {"food": 501, "transportation": 167, "other": 39}


@given(
    total=st.integers(0, 10**7),
    weights=st.lists(
        st.one_of(
            st.integers(0, 10**6),
            st.fractions(min_value=0, max_value=50, max_denominator=64),
        ),
        max_size=40,
    ),
)
@example(total=5, weights=[])
@example(total=0, weights=[0, 0])
@example(total=1, weights=[0, 0])
@example(total=3, weights=[1, 1, 1, 1])
def test_apportion_gives_what_the_reference_gives(total, weights):
    try:
        expected = reference_apportion(total, weights)
    except ValueError:
        with pytest.raises(ValueError, match="cannot apportion"):
            engine.apportion(total, weights)
    else:
        assert engine.apportion(total, weights) == expected
        if all(isinstance(weight, int) for weight in weights):
            assert engine.apportion_whole(total, weights) == expected


@given(total=st.integers(-3, 10**9), days=days_in_month)
def test_a_spread_is_an_apportion_over_equal_days(total, days):
    if total < 0:
        with pytest.raises(ValueError, match="cannot apportion"):
            engine.spread(total, days)
    else:
        assert engine.spread(total, days) == reference_apportion(total, [1] * days)


@given(limit=st.one_of(st.integers(-(10**6), 10**7), st.sampled_from([0, 19, 20, 39_999, 40_000])))
def test_tolerance_gives_what_the_reference_gives(limit):
    assert engine.tolerance(limit) == reference_tolerance(limit)
