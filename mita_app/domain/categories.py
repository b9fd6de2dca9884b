"""The one category vocabulary: the app's 22 spending categories, as a tree.

A transaction is recorded under any of the 22. A budget is planned for the top of the tree only:
spending in a child counts against its parent's budget (groceries and dining against `food`). A
category is either **fixed** (a bill of a known amount on a known day: rent, utilities...) or
**flexible** (spread over the days of the month); only flexible budgets ever give money to cover
an overspend elsewhere.

    food            ⊃ groceries, dining
    transportation  ⊃ gas, public_transport
    shopping        ⊃ clothing
    entertainment, healthcare, travel, education
    other           ⊃ pets, gifts, charity
    rent, mortgage, utilities, insurance, subscriptions, childcare      (fixed, on their own)
"""

from __future__ import annotations

from typing import Literal, get_args

Category = Literal[
    "food",
    "transportation",
    "entertainment",
    "healthcare",
    "shopping",
    "utilities",
    "education",
    "travel",
    "other",
    "dining",
    "groceries",
    "gas",
    "public_transport",
    "clothing",
    "insurance",
    "rent",
    "mortgage",
    "childcare",
    "pets",
    "subscriptions",
    "gifts",
    "charity",
]
CATEGORIES: tuple[Category, ...] = get_args(Category)

# Budget category -> the categories whose spending counts against it (itself aside).
TREE: dict[Category, tuple[Category, ...]] = {
    "food": ("groceries", "dining"),
    "transportation": ("gas", "public_transport"),
    "shopping": ("clothing",),
    "entertainment": (),
    "healthcare": (),
    "travel": (),
    "education": (),
    "other": ("pets", "gifts", "charity"),
    "rent": (),
    "mortgage": (),
    "utilities": (),
    "insurance": (),
    "subscriptions": (),
    "childcare": (),
}
FIXED: frozenset[Category] = frozenset(
    {"rent", "mortgage", "utilities", "insurance", "subscriptions", "childcare"}
)
BUDGET_CATEGORIES: tuple[Category, ...] = tuple(TREE)
FLEXIBLE: tuple[Category, ...] = tuple(c for c in BUDGET_CATEGORIES if c not in FIXED)

_PARENT: dict[str, Category] = {
    child: parent for parent, children in TREE.items() for child in (parent, *children)
}
# A stable order for everything that walks the budget categories (rebalancing, answers).
ORDER: dict[str, int] = {category: index for index, category in enumerate(BUDGET_CATEGORIES)}


def budget_category(category: str) -> Category:
    """The budget a category's spending counts against: its parent, or itself at the top."""
    try:
        return _PARENT[category]
    except KeyError:
        raise ValueError(f"unknown category {category!r}") from None


def members(parent: Category) -> tuple[Category, ...]:
    """The categories whose spending counts against the budget `parent`, itself first."""
    return (parent, *TREE[parent])


assert set(_PARENT) == set(CATEGORIES), "every category sits exactly once in the tree"
