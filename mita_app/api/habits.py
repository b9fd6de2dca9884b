"""/api/habits: the caller's habits, the days they were done, and their streaks.

Days are local dates (`YYYY-MM-DD`) in the caller's time zone (`timezone` on the account, UTC
when unset); streaks and rates follow `mita_app.domain.habits`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from flask import Blueprint, Response
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    RootModel,
    ValidationInfo,
    field_validator,
)

from .. import habits as service
from ..auth import current_user, login_required
from ..domain.days import parse_iso_day
from ..domain.habits import EARLIEST_DAY, Frequency
from ..fields import trimmed
from ..validation import SafeStr, Schema, body, ok, query, returns

bp = Blueprint("habits", __name__, url_prefix="/api/habits")

NOT_FOUND = "No such habit of the caller's (or a malformed id)"
TITLE_MAX = 200
DESCRIPTION_MAX = 2000


def _local_day(value: Any) -> dt.date:
    if not isinstance(value, str):
        raise ValueError("must be a date as YYYY-MM-DD")
    try:
        day = parse_iso_day(value)
    except ValueError:
        raise ValueError("must be a date as YYYY-MM-DD") from None
    if day < EARLIEST_DAY:
        raise ValueError(f"must not be before {EARLIEST_DAY.isoformat()}")
    return day


Title = Annotated[SafeStr, trimmed(TITLE_MAX, required=True)]
Description = Annotated[SafeStr, trimmed(DESCRIPTION_MAX)]
LocalDay = Annotated[dt.date, BeforeValidator(_local_day)]
# Rates are Decimals rounded by the rules, sent as JSON numbers (the app casts them to double).
Rate = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class HabitIn(Schema):
    title: Title
    description: Description = ""
    target_frequency: Frequency = "daily"

    @field_validator("description", "target_frequency", mode="before")
    @classmethod
    def _null_is_absent(cls, value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[info.field_name or ""].default if value is None else value


class HabitUpdate(Schema):
    """Any of the fields; absent ones are left alone. A null description clears it."""

    title: Title | None = None
    description: Description | None = None
    target_frequency: Frequency | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _only_description_can_be_cleared(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name == "description":
            return ""
        if value is None:
            raise ValueError("must not be null")
        return value

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class CompletionIn(Schema):
    date: LocalDay | None = Field(None, description="The local day; the caller's today if absent")


class ProgressQuery(Schema):
    start_date: LocalDay | None = None
    end_date: LocalDay | None = None


class HabitOut(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    target_frequency: Frequency
    created_at: dt.datetime
    current_streak: int = Field(description="Consecutive periods done up to now")
    longest_streak: int = Field(description="Most consecutive periods ever done")
    completion_rate: Rate = Field(description="Percent (0-100) of recent periods done")
    completed_dates: list[dt.date] = Field(description="Days done in the last 30, ascending")

    @classmethod
    def of(cls, habit: service.HabitSummary) -> HabitOut:
        return cls(
            id=habit.id,
            title=habit.title,
            description=habit.description,
            target_frequency=habit.target_frequency,
            created_at=habit.created_at,
            current_streak=habit.stats.current_streak,
            longest_streak=habit.stats.longest_streak,
            completion_rate=habit.stats.completion_rate,
            completed_dates=habit.completed_dates,
        )


class HabitList(RootModel[list[HabitOut]]):
    pass


class CompletionOut(BaseModel):
    status: Literal["completed", "already_completed", "uncompleted", "not_completed"]
    date: dt.date
    habit: HabitOut

    @classmethod
    def of(cls, result: service.CompletionResult) -> CompletionOut:
        return cls(status=result.status, date=result.date, habit=HabitOut.of(result.habit))


class ProgressOut(BaseModel):
    habit_id: uuid.UUID
    start_date: dt.date
    end_date: dt.date
    total_completions: int
    completion_rate: Rate = Field(description="Fraction (0-1) of the range's days done")
    current_streak: int
    longest_streak: int
    completion_dates: list[dt.date]


class DeletedOut(BaseModel):
    deleted: Literal[True] = True


@bp.get("/")
@returns(HabitList)
@login_required
def list_habits() -> Response:
    """The caller's habits, oldest first."""
    return ok(HabitList([HabitOut.of(habit) for habit in service.list_habits(current_user)]))


@bp.post("/")
@returns(HabitOut, 201)
@login_required
@body(HabitIn)
def create_habit(payload: HabitIn) -> Response:
    habit = service.create_habit(
        current_user, payload.title, payload.description, payload.target_frequency
    )
    return ok(HabitOut.of(habit), 201)


@bp.patch("/<habit_id>")
@returns(HabitOut, errors={404: NOT_FOUND})
@login_required
@body(HabitUpdate)
def update_habit(habit_id: str, payload: HabitUpdate) -> Response:
    return ok(HabitOut.of(service.update_habit(current_user, habit_id, payload.changes())))


@bp.delete("/<habit_id>")
@returns(DeletedOut, errors={404: NOT_FOUND})
@login_required
def delete_habit(habit_id: str) -> Response:
    """Delete a habit and every day it was done."""
    service.delete_habit(current_user, habit_id)
    return ok(DeletedOut())


@bp.post("/<habit_id>/complete")
@returns(CompletionOut, errors={404: NOT_FOUND})
@login_required
@body(CompletionIn, optional=True)
def complete_habit(habit_id: str, payload: CompletionIn) -> Response:
    """Mark a day done (default today); marking it twice is one completion."""
    return ok(CompletionOut.of(service.complete(current_user, habit_id, payload.date)))


@bp.delete("/<habit_id>/complete")
@returns(CompletionOut, errors={404: NOT_FOUND})
@login_required
@body(CompletionIn, optional=True)
def uncomplete_habit(habit_id: str, payload: CompletionIn) -> Response:
    """Mark a day not done (default today), whether or not it was."""
    return ok(CompletionOut.of(service.uncomplete(current_user, habit_id, payload.date)))


@bp.get("/<habit_id>/progress")
@returns(ProgressOut, errors={404: NOT_FOUND, 422: "Bad start_date or end_date"})
@login_required
@query(ProgressQuery)
def habit_progress(habit_id: str, params: ProgressQuery) -> Response:
    """Days done in a range (default: the 30 days ending today) and the streaks."""
    result = service.progress(current_user, habit_id, params.start_date, params.end_date)
    return ok(ProgressOut.model_validate(result, from_attributes=True))
