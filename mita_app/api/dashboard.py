"""/api/dashboard: the main screen in one request: the month's balance, today's budget by
category, this week's days, the latest expenses and one sentence about them.

Money is a JSON number, days `YYYY-MM-DD` and instants ISO 8601 with the offset of the caller's
time zone. A caller who has not onboarded gets zeros and empty lists.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from flask import Blueprint, Response
from pydantic import BaseModel, Field

from .. import dashboard as service
from ..auth import current_user, login_required
from ..domain import budget as engine
from ..fields import MoneyOut
from ..validation import ok, returns

bp = Blueprint("dashboard", __name__, url_prefix="/api/dashboard")


class TargetOut(BaseModel):
    category: str = Field(description="The budget category's name as the app shows it")
    key: str = Field(description="The budget category (food, transportation, rent...)")
    limit: MoneyOut = Field(description="Its money today, after rebalancing")
    spent: MoneyOut
    icon: str = Field(description="A Material icon name")
    color: str = Field(description="#RRGGBB")


class WeekDayOut(BaseModel):
    day: Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    date: dt.date
    status: engine.StatusWord
    spent: MoneyOut
    budget: MoneyOut


class RecentOut(BaseModel):
    id: uuid.UUID
    amount: MoneyOut
    category: str
    action: str = Field(description="Its description, else its merchant, else its category")
    date: dt.datetime = Field(description="When it was spent, in the caller's time zone")
    icon: str
    color: str


class InsightOut(BaseModel):
    title: str
    text: str


class DashboardOut(BaseModel):
    today: dt.date = Field(description="The caller's local day")
    balance: MoneyOut = Field(description="This month's budget minus this month's spending")
    spent: MoneyOut = Field(description="Spent today")
    daily_targets: list[TargetOut] = Field(description="Today's budget categories")
    week: list[WeekDayOut] = Field(description="This week, Monday to Sunday")
    transactions: list[RecentOut] = Field(description="The 10 latest expenses, newest first")
    insights_preview: InsightOut
    user_income: MoneyOut = Field(description="Monthly income, additional income included")
    monthly_budget: MoneyOut
    monthly_spent: MoneyOut


@bp.get("/")
@returns(DashboardOut)
@login_required
def dashboard() -> Response:
    """Everything the main screen shows, for the caller's today."""
    board = service.dashboard(current_user)
    return ok(DashboardOut.model_validate(board, from_attributes=True))
