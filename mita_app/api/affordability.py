"""/api/transactions/check-affordability: before the app records an expense, where it would
leave that day's budget (safe, caution, warning, danger or blocked) and what to do instead.

Nothing is recorded. Every number is a JSON number: the app's warning dialog casts them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from flask import Blueprint, Response
from pydantic import AfterValidator, BaseModel, Field

from .. import affordability as service
from ..auth import current_user, login_required
from ..domain import budget as engine
from ..domain.categories import CATEGORIES, Category
from ..fields import Money, MoneyOut, When
from ..validation import SafeStr, Schema, body, ok, returns

bp = Blueprint("affordability", __name__, url_prefix="/api/transactions")


def _category(value: str) -> str:
    if value not in CATEGORIES:
        raise ValueError(f"unknown category {value[:40]!r}: must be one of {', '.join(CATEGORIES)}")
    return value


class AffordabilityIn(Schema):
    category: Annotated[SafeStr, AfterValidator(_category)]
    amount: Annotated[Money, Field(gt=0)]
    date: When | None = Field(
        None,
        description="The day of the purchase: a local time (no offset), an instant with Z or "
        "an offset (taken to the caller's day), or YYYY-MM-DD; today when absent",
    )


class AlternativeOut(BaseModel):
    category: str = Field(description="The app's name for the category (Food & Dining...)")
    key: str = Field(description="The budget category (food...)")
    available: MoneyOut = Field(description="Its money left that day")


class AffordabilityOut(BaseModel):
    warning_level: engine.Level = Field(
        description="safe below 70 % of the day's category budget, caution below 80 %, warning "
        "below 90 %, danger up to 100 % or when rebalancing covers the overage, else blocked"
    )
    can_afford: bool = Field(description="Not blocked")
    allow_override: bool
    date: dt.date = Field(description="The caller's local day checked")
    category: str = Field(description="As sent")
    budget_category: Category = Field(description="The budget it counts against (dining: food)")
    amount: MoneyOut
    daily_budget: MoneyOut = Field(description="The category's money that day, rebalanced")
    current_spent: MoneyOut = Field(description="Already spent in it that day")
    remaining_budget: MoneyOut = Field(description="Left of it after this purchase")
    overage: MoneyOut = Field(description="How far this purchase goes past it")
    percentage_used: MoneyOut = Field(description="Percent of it used after this purchase")
    rebalance_available: MoneyOut = Field(description="How much of the overage later days cover")
    fully_covered: bool
    impact_message: str
    alternative_categories: list[AlternativeOut] = Field(
        description="Up to 3 other flexible categories with at least the amount left that day"
    )
    suggestions: list[str]


@bp.post("/check-affordability")
@returns(AffordabilityOut, errors={422: "Unknown category, amount not above 0, or a bad date"})
@login_required
@body(AffordabilityIn)
def check_affordability(payload: AffordabilityIn) -> Response:
    """How a purchase would sit in that day's budget; nothing is recorded."""
    result = service.check(
        current_user, payload.category, engine.to_cents(payload.amount), payload.date
    )
    return ok(AffordabilityOut.model_validate(result, from_attributes=True))
