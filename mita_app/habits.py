"""The signed-in user's habits: load and change them, and summarise them with the rules of
`domain.habits`, on the days of the user's own time zone. Each change commits once.

`utcnow` is this module's one clock: tests patch `mita_app.habits.utcnow`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, Row, String, bindparam, delete, func, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError

from .database import find_owned, insert_or_skip
from .domain import habits as rules
from .domain.days import days_in, local_date, local_today
from .errors import NotFound, ValidationFailed
from .extensions import db
from .models import Habit, HabitCompletion, User
from .models.base import utcnow

MAX_PROGRESS_DAYS = 366

# A user's habits, oldest first, with the days each was done: one statement, built once (its
# parameter: user_id), read as plain rows rather than mapped objects. A habit's days come as one
# text, "2026-11-24,2026-11-25" (in no set order), not as a row each: a year of history is
# thousands of days, and a row costs the driver and SQLAlchemy far more than parsing a date. A
# date cast to text is ISO on SQLite, and on PostgreSQL in the DateStyle psycopg2 reads dates in.
HABITS = Habit.__table__.c
COMPLETIONS = HabitCompletion.__table__.c
DAYS_DONE = (
    select(func.aggregate_strings(sql_cast(COMPLETIONS.day, String), ","))
    .where(COMPLETIONS.habit_id == HABITS.id)
    .scalar_subquery()
    .label("days_done")
)
USER_HABITS = (
    select(
        HABITS.id,
        HABITS.title,
        HABITS.description,
        HABITS.target_frequency,
        HABITS.created_at,
        DAYS_DONE,
    )
    .where(HABITS.user_id == bindparam("user_id"))
    .order_by(HABITS.created_at, HABITS.id)
)
HabitRow = Row[uuid.UUID, str, str, str, datetime, str | None]  # a row of USER_HABITS


@dataclass(frozen=True)
class HabitSummary:
    """A habit as the app shows it: its fields, its stats and its recently done days."""

    id: uuid.UUID
    title: str
    description: str
    target_frequency: rules.Frequency
    created_at: datetime
    stats: rules.HabitStats
    completed_dates: list[date]


@dataclass(frozen=True)
class CompletionResult:
    status: Literal["completed", "already_completed", "uncompleted", "not_completed"]
    date: date
    habit: HabitSummary


@dataclass(frozen=True)
class HabitProgress:
    habit_id: uuid.UUID
    start_date: date
    end_date: date
    total_completions: int
    completion_rate: Decimal  # a fraction, 0-1, four places
    current_streak: int
    longest_streak: int
    completion_dates: list[date]


def habit_not_found() -> NotFound:
    # One answer for another user's habit, a deleted one and a malformed id: nothing leaks.
    return NotFound("No such habit.", code="habit_not_found")


def today_of(user: User) -> date:
    return local_today(user.timezone, utcnow())


def _find(user: User, habit_id: str) -> Habit:
    return find_owned(Habit, user.id, habit_id, habit_not_found)


def _days_of(habit_id: uuid.UUID) -> list[date]:
    query = select(HabitCompletion.day).where(HabitCompletion.habit_id == habit_id)
    return list(db.session.scalars(query))


def _summary(
    timezone: str | None, habit: Habit | HabitRow, days: list[date], today: date
) -> HabitSummary:
    """The habit's summary, with `today` and its day of creation in the user's `timezone`."""
    frequency = cast(rules.Frequency, habit.target_frequency)
    created_on = local_date(timezone, habit.created_at)
    return HabitSummary(
        id=habit.id,
        title=habit.title,
        description=habit.description,
        target_frequency=frequency,
        created_at=habit.created_at,
        stats=rules.habit_stats(days, frequency, today, created_on),
        completed_dates=rules.recent_days(days, today),
    )


def list_habits(user: User) -> list[HabitSummary]:
    """The user's habits, oldest first (a new habit goes to the bottom of the list)."""
    rows = db.session.connection().execute(USER_HABITS, {"user_id": user.id}).all()
    timezone, today = user.timezone, today_of(user)
    return [_summary(timezone, habit, _days_from(habit.days_done), today) for habit in rows]


def _days_from(text: str | None) -> list[date]:
    """The days in a text of USER_HABITS (None: no day)."""
    return list(map(date.fromisoformat, text.split(","))) if text else []


def create_habit(user: User, title: str, description: str, frequency: str) -> HabitSummary:
    now = utcnow()
    habit = Habit(
        id=uuid.uuid4(),
        user_id=user.id,
        title=title,
        description=description,
        target_frequency=frequency,
        created_at=now,
        updated_at=now,
    )
    db.session.add(habit)
    summary = _summary(user.timezone, habit, [], today_of(user))
    db.session.commit()
    return summary


def update_habit(user: User, habit_id: str, changes: dict[str, Any]) -> HabitSummary:
    """Apply validated `changes` (title, description, target_frequency) and commit."""
    habit = _find(user, habit_id)
    for name, value in changes.items():
        setattr(habit, name, value)
    if changes:
        habit.updated_at = utcnow()
    summary = _summary(user.timezone, habit, _days_of(habit.id), today_of(user))
    db.session.commit()
    return summary


def delete_habit(user: User, habit_id: str) -> None:
    """Delete a habit; the database deletes its completions (ON DELETE CASCADE)."""
    db.session.delete(_find(user, habit_id))
    db.session.commit()


def _loggable_day(day: date | None, today: date) -> date:
    if day is None:
        return today
    if day > rules.latest_loggable_day(today):
        raise ValidationFailed(
            fields={"date": f"must not be after {rules.latest_loggable_day(today).isoformat()}"}
        )
    return day


def _insert_ignoring_duplicate(habit_id: uuid.UUID, day: date) -> bool:
    """Record the day; False when it already was. Never a unique violation, so two taps at
    once both succeed."""
    row = {"habit_id": habit_id, "day": day, "created_at": utcnow()}
    statement = insert_or_skip(HabitCompletion, row, ["habit_id", "day"])
    result = cast(CursorResult[Any], db.session.execute(statement))
    return result.rowcount == 1


def complete(user: User, habit_id: str, day: date | None) -> CompletionResult:
    """Mark `day` (default: the user's today) done; doing so twice is one completion."""
    habit = _find(user, habit_id)
    today = today_of(user)
    day = _loggable_day(day, today)
    try:
        inserted = _insert_ignoring_duplicate(habit.id, day)
    except IntegrityError:
        db.session.rollback()  # the habit was deleted since we found it
        raise habit_not_found() from None
    summary = _summary(user.timezone, habit, _days_of(habit.id), today)
    db.session.commit()
    return CompletionResult("completed" if inserted else "already_completed", day, summary)


def uncomplete(user: User, habit_id: str, day: date | None) -> CompletionResult:
    """Mark `day` (default: the user's today) not done; it may not have been."""
    habit = _find(user, habit_id)
    today = today_of(user)
    day = _loggable_day(day, today)
    statement = delete(HabitCompletion).where(
        HabitCompletion.habit_id == habit.id, HabitCompletion.day == day
    )
    result = cast(CursorResult[Any], db.session.execute(statement))
    summary = _summary(user.timezone, habit, _days_of(habit.id), today)
    db.session.commit()
    return CompletionResult("uncompleted" if result.rowcount else "not_completed", day, summary)


def progress(user: User, habit_id: str, start: date | None, end: date | None) -> HabitProgress:
    """Completions from `start` to `end` (default: the 30 days ending today), at most 366."""
    habit = _find(user, habit_id)
    today = today_of(user)
    if end is None:
        end = today
    if start is None:
        start = end - timedelta(days=rules.RATE_WINDOW_DAYS - 1)
    if start > end:
        raise ValidationFailed(fields={"start_date": "must not be after end_date"})
    if days_in(start, end) > MAX_PROGRESS_DAYS:
        raise ValidationFailed(
            fields={"start_date": f"the range must span at most {MAX_PROGRESS_DAYS} days"}
        )
    days = _days_of(habit.id)
    frequency = cast(rules.Frequency, habit.target_frequency)
    in_range = rules.days_done_between(days, start, end)
    return HabitProgress(
        habit_id=habit.id,
        start_date=start,
        end_date=end,
        total_completions=len(in_range),
        completion_rate=rules.share_of_days_done(days, start, end),
        current_streak=rules.current_streak(days, frequency, today),
        longest_streak=rules.longest_streak(days, frequency),
        completion_dates=in_range,
    )
