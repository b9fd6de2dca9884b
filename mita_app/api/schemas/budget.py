"""What /api/calendar and /api/budget share: the months they answer for, and money in cents
going out as a JSON number."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from ...domain import budget as engine
from ...validation import Schema

YEAR_MIN, YEAR_MAX = 2000, 2100
Year = Annotated[int, Field(ge=YEAR_MIN, le=YEAR_MAX)]
MonthNumber = Annotated[int, Field(ge=1, le=12)]


def money(cents: int) -> Decimal:
    """Cents as the Decimal a `MoneyOut` field sends as a JSON number."""
    return engine.from_cents(cents)


class MonthQuery(Schema):
    """A month; each part defaults to the caller's current local one."""

    year: Year | None = Field(None, description="Default: this year, in the caller's time zone")
    month: MonthNumber | None = Field(
        None, description="1-12. Default: this month, in the caller's time zone"
    )

    def of(self, today: date) -> tuple[int, int]:
        return (self.year or today.year, self.month or today.month)
