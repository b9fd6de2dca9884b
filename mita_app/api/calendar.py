"""/api/calendar: the month's days as the app's calendar draws them, and the preview it draws
before onboarding is submitted.

A day's `limit` is what it may spend after rebalancing (`mita_app.domain.budget`): its fixed
costs due that day plus its share of each flexible budget, plus what other days gave to cover an
overspend, less what it gave. The days of a month sum exactly to the plan's total (fixed costs
plus discretionary money), in cents. Days are local days in the caller's time zone.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from flask import Blueprint, Response
from pydantic import BaseModel, BeforeValidator, Field

from .. import budget
from .. import onboarding as service
from ..auth import caller, login_required
from ..domain import budget as engine
from ..domain.budget import Status
from ..errors import NotFound
from ..fields import CENT, MoneyOut
from ..validation import SafeStr, Schema, body, fields_serializer, ok, returns
from .schemas.budget import YEAR_MAX, YEAR_MIN, MonthNumber, Year, money

bp = Blueprint("calendar", __name__, url_prefix="/api/calendar")

NO_SUCH_MONTH = f"The path is not a month: a year {YEAR_MIN}-{YEAR_MAX} and a month 1-12"
NAME_MAX = 64
KEYS_MAX = 50
LARGEST = Decimal(10) ** 12


def _preview_money(value: Any) -> Any:
    """A non-negative amount rounded half-up to the cent: the app computes the preview's
    amounts as fractions of the income (income * 0.3), so a third decimal is rounded, not
    refused as elsewhere."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("must be a number")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not amount.is_finite() or abs(amount) >= LARGEST:
        raise ValueError(f"must be a finite number below {LARGEST:,}")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


PreviewMoney = Annotated[Decimal, BeforeValidator(_preview_money), Field(ge=0)]
Weight = Annotated[Decimal, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
Name = Annotated[SafeStr, Field(max_length=NAME_MAX)]


class ShellIn(Schema):
    """The preview's answers, as api_service.dart sends them (amounts rounded to the cent)."""

    income: Annotated[PreviewMoney, Field(gt=0)] = Field(description="Monthly income")
    savings_target: PreviewMoney = Field(Decimal(0), description="Monthly savings goal")
    location: Annotated[SafeStr, Field(max_length=200)] | None = Field(None, description="Unused")
    fixed: Annotated[dict[Name, PreviewMoney], Field(max_length=KEYS_MAX)] = Field(
        default_factory=dict,
        description="Monthly fixed costs by onboarding name (rent, utilities, ...) or category; "
        "any other name is counted under `other`, due on the 1st",
    )
    weights: Annotated[dict[Name, Weight], Field(max_length=KEYS_MAX)] | None = Field(
        None,
        description="Shares of the discretionary money by flexible budget category (food, "
        "transportation, ...), normalised; other keys are ignored. Absent, or no flexible "
        "category among them: the default shares",
    )
    year: Year | None = Field(None, description="Default: the caller's current local month's")
    month: MonthNumber | None = None


class CategoryDayOut(BaseModel):
    planned: MoneyOut = Field(description="The category's limit for the day, after rebalancing")
    spent: MoneyOut
    status: Status


class ShellDayOut(BaseModel):
    date: dt.date
    day: int = Field(description="Day of the month")
    limit: MoneyOut = Field(description="What the day may spend, all categories")
    spent: MoneyOut
    status: Status = Field(description="green: within the limit; yellow: a little over; red")
    planned_budget: dict[str, CategoryDayOut] = Field(
        description="Per budget category with money or spending that day"
    )


class CalendarDayOut(ShellDayOut):
    # The preview leaves `total` out: the app's preview reader takes it for the amount spent.
    total: MoneyOut = Field(description="The limit again (MITA's name for it)")


class CalendarOut(BaseModel):
    calendar: list[CalendarDayOut] = Field(description="Every day of the month; [] without a plan")


class ShellOut(BaseModel):
    calendar: list[ShellDayOut] = Field(description="Every day of the month, nothing spent")


# A month is some 30 days of up to 20 categories: serialised from dicts, not models.
CALENDAR = fields_serializer(CalendarOut)
SHELL = fields_serializer(ShellOut)


def _day_fields(day: budget.DayBudget) -> dict[str, Any]:
    """A day as `ShellDayOut`'s fields, in their order."""
    return {
        "date": day.date,
        "day": day.date.day,
        "limit": money(day.limit),
        "spent": money(day.spent),
        "status": day.status,
        "planned_budget": {
            category: {
                "planned": money(limit),
                "spent": money(spent),
                "status": engine.status(limit, spent),
            }
            for category, (limit, spent) in day.categories.items()
        },
    }


def _month_of(year: str, month: str) -> tuple[int, int]:
    if not (re.fullmatch(r"[0-9]{4}", year) and re.fullmatch(r"[0-9]{1,2}", month)):
        raise NotFound(NO_SUCH_MONTH, code="month_not_found")
    number = (int(year), int(month))
    if not (YEAR_MIN <= number[0] <= YEAR_MAX and 1 <= number[1] <= 12):
        raise NotFound(NO_SUCH_MONTH, code="month_not_found")
    return number


@bp.get("/saved/<year>/<month>")
@returns(CalendarOut, errors={404: NO_SUCH_MONTH})
@login_required
def saved(year: str, month: str) -> Response:
    """The caller's month, day by day: limits after rebalancing and what was spent. A month
    before onboarding (or without it) is `[]`; a month to come is previewed from the answers."""
    number = _month_of(year, month)
    result = budget.month_budget(caller(), *number)
    days = [] if result.plan is None else [result.day(day) for day in result.days]
    calendar = [{**_day_fields(day), "total": money(day.limit)} for day in days]
    return ok(CALENDAR.dump_python({"calendar": calendar}, mode="json"))


@bp.post("/shell")
@returns(ShellOut, errors={422: "A bad amount, weight or month"})
@login_required
@body(ShellIn)
def shell(payload: ShellIn) -> Response:
    """A preview of a month's days from answers not yet submitted; nothing is stored."""
    today = budget.today_of(caller())
    result = service.preview(
        payload.income,
        payload.fixed,
        payload.savings_target,
        payload.weights,
        payload.year or today.year,
        payload.month or today.month,
    )
    calendar = [_day_fields(result.day(day)) for day in result.days]
    return ok(SHELL.dump_python({"calendar": calendar}, mode="json"))
