"""The budget engine (`mita_app.domain.budget`, `domain.categories`, `domain.days`) as plain
functions: properties checked by the hundred with hypothesis, then worked examples with exact
cents. No Flask, no database, no clock."""

from __future__ import annotations

import copy
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from math import ceil, floor
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mita_app.domain.budget import (
    FIXED_EXPENSES,
    HABITS,
    Cell,
    OverCommitted,
    PlanLine,
    affordability,
    apportion,
    build_plan,
    days_of,
    flexible_weights,
    month_grid,
    rebalance,
    status,
    tolerance,
)
from mita_app.domain.categories import (
    BUDGET_CATEGORIES,
    CATEGORIES,
    FIXED,
    FLEXIBLE,
    budget_category,
    members,
)
from mita_app.domain.days import local_date
from tests.budget_helpers import ONBOARDING

# Every month length: 28 (Feb 2026), 29 (Feb 2028), 30 (Nov 2026), 31 (Dec 2026).
MONTHS = [(2026, 2), (2028, 2), (2026, 11), (2026, 12)]
NOVEMBER = (2026, 11)  # 30 days
HEAVY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

months = st.sampled_from(MONTHS)
odd_amounts = st.sampled_from([1, 29, 100_000_001])
amounts = st.one_of(odd_amounts, st.integers(0, 10**9))
fixed_names_pure = [name for name, (category, _) in FIXED_EXPENSES.items() if category in FIXED]


def dollars(amount: float) -> int:
    return round(amount * 100)


def empty_spending(year_month: tuple[int, int]) -> list[dict]:
    return [{} for _ in range(days_of(*year_month))]


def base_limit(grid, day, category) -> int:
    return grid[day].get(category, Cell()).total


def onboarding_plan(**habit_changes: int):
    body = ONBOARDING
    return build_plan(
        income=dollars(body["income"]["monthly_income"]),
        fixed={name: dollars(amount) for name, amount in body["fixed_expenses"].items()},
        savings=dollars(body["goals"]["savings_goal_amount_per_month"]),
        habits={**body["spending_habits"], **habit_changes},
    )


def line_of(plan, category):
    [line] = [line for line in plan.lines if line.category == category]
    return line


# --- apportion ----------------------------------------------------------------------------------


@given(
    total=amounts,
    weights=st.lists(st.integers(0, 1000), min_size=1, max_size=40).filter(any),
)
def test_apportion_parts_sum_to_the_total_and_are_each_the_floor_or_ceil_of_their_share(
    total, weights
):
    parts = apportion(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    for part, weight in zip(parts, weights, strict=True):
        share = Fraction(total * weight, sum(weights))
        assert part in (floor(share), ceil(share))
        if weight == 0:
            assert part == 0
    # Equal weights, equal shares: an odd cent goes to the earlier.
    for i, j in zip(range(len(weights)), range(1, len(weights)), strict=False):
        if weights[i] == weights[j]:
            assert parts[i] in (parts[j], parts[j] + 1)


@given(
    total=st.integers(0, 10**6),
    weights=st.lists(
        st.fractions(min_value=0, max_value=50, max_denominator=64), min_size=1, max_size=12
    ).filter(any),
)
def test_apportion_takes_fractional_weights_and_is_deterministic(total, weights):
    parts = apportion(total, weights)
    assert sum(parts) == total
    assert parts == apportion(total, list(weights))
    # Scaling every weight changes nothing.
    assert apportion(total, [weight * 7 for weight in weights]) == parts


def test_apportion_examples():
    assert apportion(100, [1, 1, 1]) == [34, 33, 33]
    assert apportion(1, [1, 1, 1]) == [1, 0, 0]  # ties go to the earlier
    assert apportion(2, [1, 1, 1]) == [1, 1, 0]
    assert apportion(5, [1, 1]) == [3, 2]
    assert apportion(1, [1, 2]) == [0, 1]  # the largest remainder first, wherever it is
    assert apportion(10, [0, 1, 0]) == [0, 10, 0]
    assert apportion(7, [Fraction(1, 3), Fraction(2, 3)]) == [2, 5]
    assert apportion(0, [0, 0]) == [0, 0]
    assert apportion(0, [3, 1]) == [0, 0]


@pytest.mark.parametrize(
    ("total", "weights"),
    [(-1, [1]), (1, [1, -1]), (0, [Fraction(-1, 2)]), (1, [0, 0]), (5, [])],
)
def test_apportion_refuses_negatives_and_money_with_nowhere_to_go(total, weights):
    with pytest.raises(ValueError, match="cannot apportion"):
        apportion(total, weights)


# --- month_grid ---------------------------------------------------------------------------------


@st.composite
def plan_lines(draw, *, mixed: bool = True, fixed: bool = True, cents=amounts):
    """Flexible lines for some flexible categories (one each) and fixed bills on any due day;
    `mixed` lets a bill be spent under a flexible category (a car payment: transportation)."""
    flexible = draw(st.dictionaries(st.sampled_from(FLEXIBLE), cents, min_size=1))
    names = list(FIXED_EXPENSES) if mixed else fixed_names_pure
    bills = draw(st.dictionaries(st.sampled_from(names), st.integers(1, 300_000))) if fixed else {}
    lines = [PlanLine(category, "flexible", amount) for category, amount in flexible.items()]
    for name, amount in bills.items():
        due = draw(st.integers(1, 31))
        lines.append(PlanLine(FIXED_EXPENSES[name][0], "fixed", amount, due_day=due, source=name))
    return lines


@given(year_month=months, lines=plan_lines(mixed=False))
def test_a_months_days_sum_exactly_to_the_plan_for_every_month_length(year_month, lines):
    grid = month_grid(lines, *year_month)
    days = days_of(*year_month)
    assert len(grid) == days
    assert sum(cell.total for day in grid for cell in day.values()) == sum(
        line.cents for line in lines
    )
    for line in lines:
        column = [grid[day].get(line.category, Cell()) for day in range(days)]
        if line.kind == "flexible":
            # Evenly, by largest remainder: the first `extra` days carry one cent more.
            share, extra = divmod(line.cents, days)
            assert [cell.flexible for cell in column] == [share + 1] * extra + [share] * (
                days - extra
            )
            assert max(c.flexible for c in column) - min(c.flexible for c in column) <= 1
            assert all(cell.fixed == 0 for cell in column)
    by_day: defaultdict[tuple[int, str], int] = defaultdict(int)
    for line in lines:
        if line.kind == "fixed":
            by_day[min(line.due_day, days) - 1, line.category] += line.cents
    for day in range(days):
        for category in FIXED:
            cell = grid[day].get(category, Cell())
            assert cell.fixed == by_day[day, category]
            assert cell.flexible == 0


@pytest.mark.parametrize(
    ("year_month", "due_day", "lands_on"),
    [
        ((2026, 11), 31, 30),
        ((2026, 11), 30, 30),
        ((2026, 12), 31, 31),
        ((2026, 2), 29, 28),
        ((2026, 2), 30, 28),
        ((2026, 2), 31, 28),
        ((2028, 2), 29, 29),
        ((2028, 2), 31, 29),
        ((2026, 2), 28, 28),
        ((2026, 2), 1, 1),
        ((2026, 12), 15, 15),
    ],
)
def test_a_bill_lands_whole_on_its_due_day_or_the_months_last(year_month, due_day, lands_on):
    lines = [
        PlanLine("rent", "fixed", 200_001, due_day=due_day, source="rent"),
        PlanLine("food", "flexible", 29),
    ]
    grid = month_grid(lines, *year_month)
    rent = [grid[day].get("rent", Cell()).fixed for day in range(len(grid))]
    assert rent[lands_on - 1] == 200_001
    assert sum(rent) == 200_001
    food = [grid[day]["food"].flexible for day in range(len(grid))]
    # 29 cents: one a day for 29 days; February's 28 days give the 1st the odd cent.
    expected = {28: [2] + [1] * 27, 29: [1] * 29, 30: [1] * 29 + [0], 31: [1] * 29 + [0, 0]}
    assert food == expected[len(grid)]


def test_a_car_payment_lands_on_its_day_beside_transportations_flexible_money():
    lines = [
        PlanLine("transportation", "fixed", 45_000, due_day=1, source="car_payment"),
        PlanLine("transportation", "flexible", 100_000_001),
    ]
    grid = month_grid(lines, 2026, 12)
    assert grid[0]["transportation"] == Cell(fixed=45_000, flexible=3_225_807)
    assert grid[1]["transportation"] == Cell(fixed=0, flexible=3_225_807)
    assert grid[30]["transportation"] == Cell(fixed=0, flexible=3_225_806)
    assert sum(day["transportation"].total for day in grid) == 100_045_001


def test_odd_amounts_spread_over_february():
    assert [
        day["food"].flexible for day in month_grid([PlanLine("food", "flexible", 1)], 2026, 2)
    ] == [1] + [0] * 27
    grid = month_grid([PlanLine("food", "flexible", 100_000_001)], 2028, 2)
    assert [day["food"].flexible for day in grid] == [3_448_276] * 26 + [3_448_275] * 3


# --- build_plan ---------------------------------------------------------------------------------


def test_the_contracts_onboarding_example():
    plan = onboarding_plan()
    assert (plan.income, plan.fixed, plan.savings) == (600_000, 215_000, 50_000)
    assert plan.discretionary == 335_000
    assert plan.total == 550_000  # income - savings: what the month's days hold
    fixed = [
        (line.category, line.cents, line.due_day) for line in plan.lines if line.kind == "fixed"
    ]
    assert fixed == [("rent", 200_000, 1), ("utilities", 15_000, 5)]
    flexible = {line.category: line.cents for line in plan.lines if line.kind == "flexible"}
    # Weights food 30 x (3/5 + 2/5 x 1.03125) = 30.375 (9 dinners a month, typical coffee),
    # entertainment 10 x 1.25 (6 a month), the rest at their base share: 102.875 in all.
    assert flexible == {
        "food": 98_912,
        "transportation": 48_846,
        "shopping": 32_564,
        "entertainment": 40_705,
        "healthcare": 26_051,
        "travel": 22_794,
        "education": 16_282,
        "other": 48_846,
    }
    assert sum(flexible.values()) == 335_000


def test_more_eating_out_gives_food_a_bigger_share_up_to_three_times_typical():
    weights = {
        dining: flexible_weights({**ONBOARDING["spending_habits"], "dining_out_per_month": dining})
        for dining in (0, 8, 16, 24, 40)
    }
    # Only the 40 % of food that is not groceries scales, by the average of dining and coffee.
    assert [weights[dining]["food"] for dining in (0, 8, 16, 24, 40)] == [27, 30, 33, 36, 36]
    assert all(weights[dining]["entertainment"] == Fraction(25, 2) for dining in weights)
    food = [line_of(onboarding_plan(dining_out_per_month=d), "food").cents for d in weights]
    assert food == [90_905, 98_049, 104_787, 111_152, 111_152]


@given(low=st.integers(0, 60), high=st.integers(0, 60), coffee=st.integers(0, 40))
def test_food_share_never_falls_as_eating_out_rises(low, high, coffee):
    low, high = sorted((low, high))

    def share(dining):
        weights = flexible_weights({"dining_out_per_month": dining, "coffee_per_week": coffee})
        return weights["food"] / sum(weights.values())

    assert share(low) <= share(high)


def test_no_travel_budget_for_no_travel():
    plan = onboarding_plan(travel_per_year=0)
    assert "travel" not in {line.category for line in plan.lines}
    assert sum(line.cents for line in plan.lines if line.kind == "flexible") == 335_000
    assert line_of(onboarding_plan(), "travel").cents == 22_794


def test_fixed_costs_and_savings_above_the_income_are_over_committed():
    with pytest.raises(OverCommitted) as raised:
        build_plan(100_000, {"rent": 80_000}, 30_000)
    assert (raised.value.income, raised.value.fixed, raised.value.savings) == (
        100_000,
        80_000,
        30_000,
    )
    # Exactly the income is not over-committed: nothing is left to spend.
    exact = build_plan(100_000, {"rent": 70_000}, 30_000)
    assert (exact.discretionary, exact.total, len(exact.lines)) == (0, 70_000, 1)


def test_a_later_month_lets_the_savings_give_way_first():
    plan = build_plan(100_000, {"rent": 80_000}, 30_000, strict=False)
    assert (plan.fixed, plan.savings, plan.discretionary) == (80_000, 20_000, 0)
    assert [line.kind for line in plan.lines] == ["fixed"]
    broke = build_plan(100_000, {"rent": 120_000}, 30_000, strict=False)
    assert (broke.fixed, broke.savings, broke.discretionary) == (120_000, 0, 0)


habit_answers = st.dictionaries(st.sampled_from(list(HABITS)), st.integers(0, 200))


@given(
    fixed=st.dictionaries(st.sampled_from(list(FIXED_EXPENSES)), st.integers(0, 10**7)),
    savings=st.integers(0, 10**7),
    left=st.one_of(st.integers(0, 10**8), odd_amounts),
    habits=habit_answers,
)
def test_any_affordable_plan_holds_income_less_savings_in_non_negative_lines(
    fixed, savings, left, habits
):
    income = sum(fixed.values()) + savings + left
    plan = build_plan(income, fixed, savings, habits)
    assert plan.total == income - savings
    assert plan.discretionary == left
    assert plan.fixed == sum(fixed.values())
    assert all(line.cents > 0 for line in plan.lines)
    assert sum(line.cents for line in plan.lines) == plan.total
    assert sum(line.cents for line in plan.lines if line.kind == "flexible") == left
    for line in plan.lines:
        assert line.category in BUDGET_CATEGORIES
        assert (line.kind == "flexible") == (line.category in FLEXIBLE and line.due_day is None)
    assert len({line.category for line in plan.lines if line.kind == "flexible"}) == sum(
        line.kind == "flexible" for line in plan.lines
    )


def test_every_spending_category_counts_against_a_budget_category():
    assert len(CATEGORIES) == 22
    for category in CATEGORIES:
        parent = budget_category(category)
        assert parent in BUDGET_CATEGORIES
        assert category in members(parent)
    assert {child for parent in BUDGET_CATEGORIES for child in members(parent)} == set(CATEGORIES)
    assert budget_category("groceries") == budget_category("dining") == "food"
    assert budget_category("gas") == budget_category("public_transport") == "transportation"
    assert budget_category("clothing") == "shopping"
    assert {budget_category(c) for c in ("pets", "gifts", "charity")} == {"other"}
    for fixed in FIXED:
        assert budget_category(fixed) == fixed
    with pytest.raises(ValueError, match="unknown category"):
        budget_category("dining out")  # MITA's plan category: not a spending category


def test_groceries_and_dining_spend_the_food_budget_without_any_rebalance():
    plan = onboarding_plan()
    grid = month_grid(plan.lines, *NOVEMBER)
    assert grid[0]["food"].flexible == 3_298  # 98 912 cents over 30 days
    ledger = [(0, "groceries", 2_000), (0, "dining", 1_200), (0, "food", 98)]
    spent = empty_spending(NOVEMBER)
    for day, category, cents in ledger:
        spent[day][budget_category(category)] = spent[day].get(budget_category(category), 0) + cents
    assert spent[0] == {"food": 3_298}
    balanced = rebalance(grid, spent)
    assert all(not received for received in balanced.received)
    assert balanced.limit == [{c: cell.total for c, cell in day.items()} for day in grid]
    assert balanced.uncovered(0, "food") == 0
    assert status(balanced.limit[0]["food"], balanced.spent[0]["food"]) == "green"


# --- rebalance ----------------------------------------------------------------------------------


@st.composite
def months_with_spending(draw, *, mixed: bool = True, fixed: bool = True):
    """A month, a plan of it, and a ledger already summed per day and budget category, with
    overspends common (a day of a flexible budget holds at most 10 000 cents here)."""
    year_month = draw(months)
    lines = draw(plan_lines(mixed=mixed, fixed=fixed, cents=st.integers(0, 300_000)))
    grid = month_grid(lines, *year_month)
    entries = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(grid) - 1),
                st.sampled_from(BUDGET_CATEGORIES),
                st.one_of(st.integers(1, 30_000), st.sampled_from([ln.cents for ln in lines])),
            ),
            max_size=60,
        )
    )
    spent: list[dict] = [{} for _ in grid]
    for day, category, cents in entries:
        spent[day][category] = spent[day].get(category, 0) + max(cents, 1)
    return grid, spent


def given_away(balanced, day, category) -> int:
    """What a cell gave to others: limit = base - given + received."""
    base = base_limit(balanced.base, day, category)
    return base + balanced.received[day].get(category, 0) - balanced.limit[day].get(category, 0)


@HEAVY
@given(case=months_with_spending())
def test_rebalancing_moves_money_within_its_bounds(case):
    grid, spent = case
    grid_before, spent_before = copy.deepcopy(grid), copy.deepcopy(spent)
    balanced = rebalance(grid, spent)
    assert (grid, spent) == (grid_before, spent_before)  # pure
    days = range(len(grid))
    # The month's total never changes, and no limit goes below zero.
    assert balanced.total == sum(cell.total for day in grid for cell in day.values())
    assert all(cents >= 0 for day in balanced.limit for cents in day.values())
    for day in days:
        for category in set(grid[day]) | set(balanced.limit[day]) | set(spent[day]):
            cell = grid[day].get(category, Cell())
            gave = given_away(balanced, day, category)
            # A donor gives at most half of its flexible money (and its own bill's money).
            assert 0 <= gave <= cell.fixed + cell.flexible // 2
            if gave:  # only money not spent that day: giving never turns a donor red
                assert balanced.limit[day][category] >= spent[day].get(category, 0)
            received = balanced.received[day].get(category, 0)
            if received:  # a cell receives no more than its overspend
                assert balanced.limit[day][category] <= spent[day][category]
    # Fixed money never goes to another category: a category loses at most half of its
    # flexible money to others, a bill's category (rent...) nothing at all.
    for category in BUDGET_CATEGORIES:
        planned = sum(base_limit(grid, day, category) for day in days)
        now = sum(balanced.limit[day].get(category, 0) for day in days)
        half_flexible = sum(grid[day].get(category, Cell()).flexible // 2 for day in days)
        assert planned - now <= half_flexible
        if category in FIXED:
            assert now >= planned
    # Deterministic.
    again = rebalance(copy.deepcopy(grid), copy.deepcopy(spent))
    assert (again.limit, again.received) == (balanced.limit, balanced.received)


@HEAVY
@given(case=months_with_spending(), data=st.data())
def test_spending_within_every_limit_moves_nothing(case, data):
    grid, _ = case
    spent = [{c: data.draw(st.integers(0, cell.total)) for c, cell in day.items()} for day in grid]
    balanced = rebalance(grid, spent)
    assert balanced.limit == [{c: cell.total for c, cell in day.items()} for day in grid]
    assert all(not received for received in balanced.received)


@HEAVY
@given(case=months_with_spending(fixed=False))
def test_flexible_money_only_ever_moves_to_an_earlier_day(case):
    grid, spent = case
    balanced = rebalance(grid, spent)
    changes = [
        balanced.day_limit(day) - sum(cell.total for cell in grid[day].values())
        for day in range(len(grid))
    ]
    # Whatever the first k days gained came from later days; they never gave any to them.
    running = 0
    for change in changes:
        running += change
        assert running >= 0
    assert running == 0
    receivers = [day for day, got in enumerate(balanced.received) if any(got.values())]
    for day in range(len(grid)):
        for category in grid[day]:
            if given_away(balanced, day, category):
                assert receivers
                assert receivers[0] < day


@HEAVY
@given(case=months_with_spending(mixed=False))
def test_a_flexible_cell_gives_only_to_earlier_days_even_beside_bills(case):
    grid, spent = case
    balanced = rebalance(grid, spent)
    receivers = [day for day, got in enumerate(balanced.received) if any(got.values())]
    for day in range(len(grid)):
        for category, cell in grid[day].items():
            if cell.fixed == 0 and given_away(balanced, day, category):
                assert receivers[0] < day


@HEAVY
@given(case=months_with_spending(mixed=False))
def test_an_overspend_left_uncovered_had_no_donor_left(case):
    grid, spent = case
    balanced = rebalance(grid, spent)
    days = range(len(grid))
    for day in days:
        for category in balanced.categories(day):
            if not balanced.uncovered(day, category):
                continue
            # Its bill's money on other days, and every flexible cell of a later day, gave all
            # the rules let them: all of a bill, half of a flexible cell, or what was unspent.
            for other in days:
                for donor, cell in grid[other].items():
                    could = cell.fixed if donor == category and other != day else 0
                    if other > day and cell.flexible:
                        could = cell.flexible // 2
                    left = balanced.limit[other][donor] - spent[other].get(donor, 0)
                    assert min(could - given_away(balanced, other, donor), left) <= 0


def food_and_fun(year_month=NOVEMBER, *extra: PlanLine):
    """100.00 a day of food and of entertainment in a 30-day month, and any bills."""
    days = days_of(*year_month)
    lines = [
        PlanLine("food", "flexible", 10_000 * days),
        PlanLine("entertainment", "flexible", 10_000 * days),
        *extra,
    ]
    return month_grid(lines, *year_month)


def test_an_overspend_is_covered_from_the_same_categorys_later_days_first():
    grid = food_and_fun()
    spent = empty_spending(NOVEMBER)
    spent[0] = {"food": 15_000}
    balanced = rebalance(grid, spent)
    assert balanced.received[0] == {"food": 5_000}
    assert balanced.limit[0] == {"food": 15_000, "entertainment": 10_000}
    # 5 000 cents from the 29 later food days, by largest remainder: 173 or 172 cents each.
    food = [balanced.limit[day]["food"] for day in range(1, 30)]
    assert food == [10_000 - 173] * 12 + [10_000 - 172] * 17
    assert all(balanced.limit[day]["entertainment"] == 10_000 for day in range(30))
    assert balanced.uncovered(0, "food") == 0


def test_then_from_other_flexible_categories_at_most_half_of_any_donor():
    grid = food_and_fun()
    spent = empty_spending(NOVEMBER)
    spent[28] = {"food": 20_000}  # the 29th: only the 30th is later
    balanced = rebalance(grid, spent)
    assert balanced.limit[28] == {"food": 20_000, "entertainment": 10_000}
    assert balanced.limit[29] == {"food": 5_000, "entertainment": 5_000}
    assert balanced.limit[:28] == [{"food": 10_000, "entertainment": 10_000}] * 28

    spent[28] = {"food": 30_000}  # more than half of what is left can give
    balanced = rebalance(grid, spent)
    assert balanced.limit[29] == {"food": 5_000, "entertainment": 5_000}
    assert balanced.received[28] == {"food": 10_000}
    assert balanced.uncovered(28, "food") == 10_000


def test_the_last_days_overspend_takes_nothing_from_earlier_days():
    grid = food_and_fun()
    spent = empty_spending(NOVEMBER)
    spent[29] = {"food": 15_000, "entertainment": 99_000}
    balanced = rebalance(grid, spent)
    assert balanced.limit == [{"food": 10_000, "entertainment": 10_000}] * 30
    assert balanced.uncovered(29, "food") == 5_000
    assert balanced.uncovered(29, "entertainment") == 89_000


def test_a_bill_paid_on_the_3rd_instead_of_the_1st_takes_the_1sts_money():
    rent = PlanLine("rent", "fixed", 200_000, due_day=1, source="rent")
    grid = food_and_fun(NOVEMBER, rent)
    spent = empty_spending(NOVEMBER)
    spent[2] = {"rent": 200_000}
    balanced = rebalance(grid, spent)
    assert balanced.limit[0] == {"rent": 0, "food": 10_000, "entertainment": 10_000}
    assert balanced.limit[2] == {"rent": 200_000, "food": 10_000, "entertainment": 10_000}
    assert balanced.received[2] == {"rent": 200_000}
    assert balanced.limit[3:] == [{"food": 10_000, "entertainment": 10_000}] * 27
    assert [status(balanced.day_limit(d), balanced.day_spent(d)) for d in (0, 2)] == ["green"] * 2


def test_fixed_money_never_covers_another_category():
    rent = PlanLine("rent", "fixed", 200_000, due_day=10, source="rent")
    grid = month_grid([rent], *NOVEMBER)  # no flexible money at all
    spent = empty_spending(NOVEMBER)
    spent[1] = {"food": 5_000}
    balanced = rebalance(grid, spent)
    assert balanced.limit[9] == {"rent": 200_000}
    assert balanced.received[1] == {}
    assert balanced.uncovered(1, "food") == 5_000
    assert status(balanced.day_limit(1), balanced.day_spent(1)) == "red"


def test_a_paid_bills_day_keeps_its_leftover_flexible_money():
    car = PlanLine("transportation", "fixed", 1_000, due_day=1, source="car_payment")
    grid = month_grid([car, PlanLine("transportation", "flexible", 3_000)], *NOVEMBER)
    spent = empty_spending(NOVEMBER)
    spent[0] = {"transportation": 1_000}  # the car payment, paid on its day
    spent[9] = {"transportation": 150}  # 50 over the 10th's 100
    balanced = rebalance(grid, spent)
    # The 1st's 100 cents left are flexible money of a past day: the 50 must come from later.
    assert balanced.limit[0]["transportation"] == 1_100


# --- day status ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit_dollars", "tolerance_cents"),
    [(0, 200), (10, 200), (40, 200), (100, 500), (500, 2_500), (1_000, 2_500)],
)
def test_yellow_is_min_of_max_of_5_percent_and_2_dollars_and_25_dollars(
    limit_dollars, tolerance_cents
):
    limit = limit_dollars * 100
    assert tolerance(limit) == tolerance_cents
    assert status(limit, 0) == "green"
    assert status(limit, limit) == "green"
    assert status(limit, limit + 1) == "yellow"
    assert status(limit, limit + tolerance_cents) == "yellow"
    assert status(limit, limit + tolerance_cents + 1) == "red"


@given(limit=st.integers(0, 10**8), spent=st.integers(0, 10**8))
def test_status_is_green_then_yellow_then_red(limit, spent):
    over = spent - limit
    expected = "green" if over <= 0 else "yellow" if over <= tolerance(limit) else "red"
    assert status(limit, spent) == expected
    assert 200 <= tolerance(limit) <= 2_500


# --- affordability ------------------------------------------------------------------------------


def food_only():
    """100.00 a day of food in a 30-day month, nothing else."""
    return month_grid([PlanLine("food", "flexible", 300_000)], *NOVEMBER)


@pytest.mark.parametrize(
    ("spent", "amount", "level", "percentage"),
    [
        (0, 6_999, "safe", "70.0"),  # 69.99 %
        (0, 7_000, "caution", "70.0"),
        (5_000, 2_000, "caution", "70.0"),  # already spent counts
        (0, 7_999, "caution", "80.0"),
        (0, 8_000, "warning", "80.0"),
        (0, 8_999, "warning", "90.0"),
        (0, 9_000, "danger", "90.0"),
        (0, 10_000, "danger", "100.0"),  # exactly the day's money
        (0, 10_001, "danger", "100.0"),  # 1 cent over, covered by later days
        (9_999, 2, "danger", "100.0"),
    ],
)
def test_affordability_levels_at_their_boundaries(spent, amount, level, percentage):
    spending = empty_spending(NOVEMBER)
    if spent:
        spending[0] = {"food": spent}
    answer = affordability(rebalance(food_only(), spending), 0, "food", amount)
    assert answer.level == level
    assert answer.percentage == Decimal(percentage)
    assert (answer.limit, answer.spent, answer.amount) == (10_000, spent, amount)
    assert answer.remaining == 10_000 - spent
    assert answer.overage == max(0, spent + amount - 10_000)
    assert answer.covered == answer.overage
    assert answer.fully_covered


def test_an_overage_no_later_day_can_cover_is_blocked():
    last = affordability(rebalance(food_only(), empty_spending(NOVEMBER)), 29, "food", 10_001)
    assert (last.level, last.overage, last.covered, last.fully_covered) == ("blocked", 1, 0, False)
    # The 29th: the 30th gives at most half its 100.00, so 60.00 over is covered 50.00 only.
    partly = affordability(rebalance(food_only(), empty_spending(NOVEMBER)), 28, "food", 16_000)
    assert (partly.level, partly.overage, partly.covered) == ("blocked", 6_000, 5_000)
    assert partly.percentage == Decimal("160.0")


def test_a_purchase_in_a_category_with_no_money_today():
    # Travel has no budget, but food's later days can cover it: danger, at 1000 %.
    travel = affordability(rebalance(food_only(), empty_spending(NOVEMBER)), 0, "travel", 100)
    assert (travel.level, travel.limit, travel.overage, travel.covered) == ("danger", 0, 100, 100)
    assert travel.percentage == Decimal("1000.0")
    # No plan at all: nothing can cover it.
    empty = month_grid([], *NOVEMBER)
    blocked = affordability(rebalance(empty, empty_spending(NOVEMBER)), 0, "food", 100)
    assert (blocked.level, blocked.limit, blocked.covered) == ("blocked", 0, 0)
    assert blocked.percentage == Decimal("1000.0")


def test_affordability_sees_the_day_after_rebalancing():
    # The 1st overspent by 50.00 took it from the later days: the 2nd has 98.27 now.
    spending = empty_spending(NOVEMBER)
    spending[0] = {"food": 15_000}
    safe = affordability(rebalance(food_and_fun(), spending), 1, "food", 6_878)  # 69.99 % of 98.27
    assert (safe.limit, safe.level) == (9_827, "safe")
    assert affordability(rebalance(food_and_fun(), spending), 1, "food", 6_879).level == "caution"


# --- local days ---------------------------------------------------------------------------------


def grid_index(timezone: str, instant: datetime, year_month: tuple[int, int]) -> int | None:
    """The index of the day an instant falls on in a month's grid (None: another month)."""
    day = local_date(timezone, instant)
    return day.day - 1 if (day.year, day.month) == year_month else None


def test_an_expense_at_2330_on_new_years_eve_in_los_angeles_belongs_to_december_31():
    instant = datetime(2027, 1, 1, 7, 30, tzinfo=UTC)  # 23:30 PST on 31 December
    assert local_date("America/Los_Angeles", instant) == date(2026, 12, 31)
    assert grid_index("America/Los_Angeles", instant, (2026, 12)) == 30
    assert local_date(None, instant) == date(2027, 1, 1)  # what UTC would have said
    # A month's last minute, a month's first: 23:59:59 PST on 30 November, 00:00 on 1 December.
    assert local_date("America/Los_Angeles", datetime(2026, 12, 1, 7, 59, 59, tzinfo=UTC)) == date(
        2026, 11, 30
    )
    assert local_date("America/Los_Angeles", datetime(2026, 12, 1, 8, tzinfo=UTC)) == date(
        2026, 12, 1
    )


def test_auckland_is_a_day_ahead_of_utc_into_the_next_month():
    instant = datetime(2026, 2, 28, 11, 30, tzinfo=UTC)  # 00:30 NZDT on 1 March
    assert local_date("Pacific/Auckland", instant) == date(2026, 3, 1)
    assert grid_index("Pacific/Auckland", instant, (2026, 3)) == 0
    assert grid_index("Pacific/Auckland", instant, (2026, 2)) is None
    assert local_date("Pacific/Auckland", datetime(2026, 2, 28, 10, 59, tzinfo=UTC)) == date(
        2026, 2, 28
    )


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 3, 9), 24)],
)
def test_dst_change_days_are_one_day_each_in_the_grid(day, hours):
    zone = "America/New_York"
    # Every minute from an hour before the local day to an hour after it, in UTC.
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    minutes = [start + timedelta(minutes=m) for m in range(-60, 36 * 60)]
    on_the_day = [instant for instant in minutes if local_date(zone, instant) == day]
    assert len(on_the_day) == hours * 60
    assert on_the_day[-1] - on_the_day[0] == timedelta(hours=hours, minutes=-1)
    # The grid has one cell for it, holding the same money as any other day.
    grid = month_grid([PlanLine("food", "flexible", 310_000)], 2026, day.month)
    assert len(grid) == days_of(2026, day.month)
    assert {grid_index(zone, instant, (2026, day.month)) for instant in on_the_day} == {day.day - 1}
    assert grid[day.day - 1]["food"].flexible in (
        310_000 // len(grid),
        310_000 // len(grid) + 1,
    )


def test_0130_happens_twice_on_november_1_in_new_york_and_both_belong_to_it():
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST, an hour later
    for instant in (first, second):
        local = instant.astimezone(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) == (1, 30)
        assert local_date("America/New_York", instant) == date(2026, 11, 1)
    spent = [0] * 30
    for instant, cents in ((first, 1_250), (second, 900)):
        spent[grid_index("America/New_York", instant, (2026, 11))] += cents
    assert spent[0] == 2_150
    assert sum(spent) == 2_150


def test_an_instant_without_an_offset_has_no_local_day():
    with pytest.raises(ValueError, match="naive"):
        local_date("America/New_York", datetime(2026, 11, 1, 1, 30))


def test_an_unknown_zone_is_utc():
    assert local_date("Mars/Olympus_Mons", datetime(2027, 1, 1, 7, 30, tzinfo=UTC)) == date(
        2027, 1, 1
    )
