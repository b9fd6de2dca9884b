"""/api/onboarding: the answers of the app's onboarding screens, and the month's plan made from
them (`mita_app.domain.budget` has the rules).

The body is the one onboarding_finish_screen.dart builds (`_meta` and other unknown keys are
ignored). Submitting again, as the app does when it lost the answer, is 200 and changes nothing
but what the new answers change: the current month's plan is rebuilt from them.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from flask import Blueprint, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from .. import onboarding as service
from ..auth import caller, login_required
from ..domain import budget as engine
from ..fields import CENT, Money, MoneyOut, TimeZoneName
from ..models import Region
from ..validation import SafeStr, Schema, body, ok, returns
from .schemas.budget import money

bp = Blueprint("onboarding", __name__, url_prefix="/api/onboarding")

NAME_MAX = 64
GOALS_MAX = 20
FIXED_MAX = len(engine.FIXED_EXPENSES)
HABIT_MAX = 10_000


def _goal_id(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters")
    return value


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")  # True is 1 to Python, never a count to us
    return value


GoalId = Annotated[SafeStr, AfterValidator(_goal_id)]
Name = Annotated[SafeStr, Field(max_length=NAME_MAX)]
HabitCount = Annotated[int, BeforeValidator(_not_a_bool), Field(ge=0, le=HABIT_MAX)]
DueDay = Annotated[int, BeforeValidator(_not_a_bool), Field(ge=1, le=31)]


class IncomeIn(Schema):
    monthly_income: Annotated[Money, Field(gt=0)]
    additional_income: Money = Decimal(0)


class HabitsIn(Schema):
    """How often the user does each (`domain.budget.HABITS`); other keys are ignored."""

    dining_out_per_month: HabitCount | None = None
    coffee_per_week: HabitCount | None = None
    entertainment_per_month: HabitCount | None = None
    clothing_per_month: HabitCount | None = None
    transport_per_month: HabitCount | None = None
    travel_per_year: HabitCount | None = None

    def counts(self) -> dict[str, int]:
        return {name: count for name, count in self.model_dump().items() if count is not None}


assert set(HabitsIn.model_fields) == set(engine.HABITS), "one field per habit the engine knows"


class GoalsIn(Schema):
    savings_goal_amount_per_month: Money = Decimal(0)
    savings_goal_type: GoalId | None = Field(None, description="The main goal, e.g. save_more")
    has_emergency_fund: bool | None = None
    all_goals: Annotated[list[GoalId], Field(max_length=GOALS_MAX)] = Field(
        default_factory=list, description="Goal ids: save_more, pay_off_debt, budgeting, investing"
    )

    def ids(self) -> list[str]:
        """The main goal first, then the others, each once."""
        first = [self.savings_goal_type] if self.savings_goal_type else []
        return list(dict.fromkeys([*first, *self.all_goals]))


class OnboardingIn(Schema):
    region: Region | None = Field(None, description="Absent: the account's stays")
    timezone: TimeZoneName | None = Field(None, description="IANA; absent: the account's stays")
    income: IncomeIn
    fixed_expenses: Annotated[dict[Name, Money], Field(max_length=FIXED_MAX)] = Field(
        default_factory=dict,
        description="Monthly amount per fixed cost: " + ", ".join(engine.FIXED_EXPENSES),
    )
    fixed_due_days: Annotated[dict[Name, DueDay], Field(max_length=FIXED_MAX)] | None = Field(
        None,
        description="The day of the month a fixed cost is paid, where the user set one (rent, "
        "loans and childcare default to the 1st, bills to the 5th; the month's last day when "
        "shorter). The app does not send it; absent: the account's stay",
    )
    spending_habits: HabitsIn = Field(default_factory=HabitsIn)
    goals: GoalsIn = Field(default_factory=GoalsIn)

    def answers(self) -> service.Answers:
        return service.Answers(
            income=self.income.monthly_income,
            additional_income=self.income.additional_income,
            fixed_expenses=dict(self.fixed_expenses),
            savings_goal=self.goals.savings_goal_amount_per_month,
            spending_habits=self.spending_habits.counts(),
            goals=self.goals.ids(),
            has_emergency_fund=self.goals.has_emergency_fund,
            timezone=self.timezone,
            region=self.region,
            fixed_due_days=None if self.fixed_due_days is None else dict(self.fixed_due_days),
        )


class BudgetPlanOut(BaseModel):
    month: dt.date = Field(description="The month's first day")
    income: MoneyOut = Field(description="Monthly income")
    additional_income: MoneyOut
    fixed_total: MoneyOut
    savings_goal: MoneyOut
    discretionary: MoneyOut = Field(description="Income - fixed costs - savings goal")
    total_budget: MoneyOut = Field(description="What the month's days hold: fixed + discretionary")
    daily_budget: MoneyOut = Field(description="Discretionary money per day, on average")
    fixed_expenses: dict[str, MoneyOut]
    discretionary_breakdown: dict[str, MoneyOut] = Field(description="Per budget category")

    @classmethod
    def of(cls, result: service.Onboarded) -> BudgetPlanOut:
        plan, answers = result.plan, result.answers
        per_day = money(plan.discretionary) / result.days
        return cls(
            month=result.month,
            income=answers.income,
            additional_income=answers.additional_income,
            fixed_total=money(plan.fixed),
            savings_goal=money(plan.savings),
            discretionary=money(plan.discretionary),
            total_budget=money(plan.total),
            daily_budget=per_day.quantize(CENT, rounding=ROUND_HALF_UP),
            fixed_expenses=answers.fixed_expenses,
            discretionary_breakdown={
                line.category: money(line.cents) for line in plan.lines if line.kind == "flexible"
            },
        )


class OnboardingOut(BaseModel):
    status: Literal["onboarded"] = "onboarded"
    budget_plan: BudgetPlanOut
    calendar_days: int = Field(description="Days in the month the plan covers")
    message: str


@bp.post("/submit")
@returns(
    OnboardingOut,
    errors={422: "A bad answer, or fixed costs and the savings goal above the income"},
)
@login_required
@body(OnboardingIn)
def submit(payload: OnboardingIn) -> Response:
    """Store the onboarding answers and build the current month's budget plan from them."""
    result = service.submit(caller(), payload.answers())
    month = result.month.strftime("%B %Y")
    return ok(
        OnboardingOut(
            budget_plan=BudgetPlanOut.of(result),
            calendar_days=result.days,
            message=f"Your budget for {month} is ready.",
        )
    )
