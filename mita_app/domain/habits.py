"""Habit streaks and completion rates, over the local days on which a habit was done.

A habit is done at most once a day; its `target_frequency` says which periods count: days
(`daily`), ISO weeks from Monday to Sunday (`weekly`) or calendar months (`monthly`). A period is
done when at least one of its days is.

- **Longest streak**: the most consecutive done periods ever.
- **Current streak**: the consecutive done periods up to this one, or up to the previous one
  while this one is not done yet, so a daily streak does not break at 00:01.
- **Completion rate**: the percent of the periods of the last 30 days (today included) that are
  done, counted from the habit's start when it started less than 30 days ago.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from .days import ONE_DAY, days_in, month_index, week_index

Frequency = Literal["daily", "weekly", "monthly"]
FREQUENCIES: tuple[Frequency, ...] = ("daily", "weekly", "monthly")
RATE_WINDOW_DAYS = 30  # also how far back the habit object lists its completed days
EARLIEST_DAY = date(1970, 1, 1)
PERCENT = Decimal("0.1")
FRACTION = Decimal("0.0001")


@dataclass(frozen=True)
class HabitStats:
    current_streak: int
    longest_streak: int
    completion_rate: Decimal  # percent, 0-100, one decimal


def period_index(day: date, frequency: Frequency) -> int:
    """The day, ISO week or month holding `day`, numbered so that consecutive periods are
    consecutive integers."""
    if frequency == "daily":
        return day.toordinal()
    if frequency == "weekly":
        return week_index(day)
    if frequency == "monthly":
        return month_index(day)
    raise ValueError(f"unknown frequency {frequency!r}")


def done_periods(days: Iterable[date], frequency: Frequency) -> set[int]:
    return {period_index(day, frequency) for day in days}


def longest_streak(days: Iterable[date], frequency: Frequency = "daily") -> int:
    """The most consecutive done periods ever (0 for a habit never done)."""
    best = run = 0
    previous: int | None = None
    for period in sorted(done_periods(days, frequency)):
        run = run + 1 if previous is not None and period == previous + 1 else 1
        best = max(best, run)
        previous = period
    return best


def current_streak(days: Iterable[date], frequency: Frequency, today: date) -> int:
    """The run of consecutive done periods holding this period, or the previous one while this
    one is not done yet; 0 when neither is done."""
    done = done_periods(days, frequency)
    now = period_index(today, frequency)
    anchor = now if now in done else now - 1
    if anchor not in done:
        return 0
    first = last = anchor
    while first - 1 in done:
        first -= 1
    # A day logged for tomorrow (a phone's calendar ahead of the account's zone) extends it.
    while last + 1 in done:
        last += 1
    return last - first + 1


def started_on(days: Collection[date], created_on: date) -> date:
    """When a habit started: the day it was created, or the first day logged if earlier
    (people log days they did before they added the habit)."""
    return min([created_on, *days])


def completion_rate(
    days: Collection[date], frequency: Frequency, today: date, created_on: date
) -> Decimal:
    """The percent (0-100, one decimal, rounded half up) of the periods touched by the last 30
    days, today included, that have a completion: for `daily` the days done among those 30, for
    `weekly` the ISO weeks, for `monthly` the months. A habit started less than 30 days ago
    counts from the day it started, so a new habit done every day so far is at 100.0."""
    first = max(today - timedelta(days=RATE_WINDOW_DAYS - 1), started_on(days, created_on))
    first = min(first, today)  # a habit created "after today" (clock skew) counts today only
    low, high = period_index(first, frequency), period_index(today, frequency)
    done = sum(1 for period in done_periods(days, frequency) if low <= period <= high)
    return (Decimal(100 * done) / Decimal(high - low + 1)).quantize(PERCENT, ROUND_HALF_UP)


def habit_stats(
    days: Collection[date], frequency: Frequency, today: date, created_on: date
) -> HabitStats:
    return HabitStats(
        current_streak=current_streak(days, frequency, today),
        longest_streak=longest_streak(days, frequency),
        completion_rate=completion_rate(days, frequency, today, created_on),
    )


def recent_days(days: Iterable[date], today: date) -> list[date]:
    """The days done among the last 30 (and tomorrow, when logged), oldest first."""
    first = today - timedelta(days=RATE_WINDOW_DAYS - 1)
    return sorted(day for day in set(days) if first <= day <= latest_loggable_day(today))


def days_done_between(days: Iterable[date], first: date, last: date) -> list[date]:
    """The days done from `first` to `last`, both included, oldest first."""
    return sorted(day for day in set(days) if first <= day <= last)


def share_of_days_done(days: Iterable[date], first: date, last: date) -> Decimal:
    """The fraction (0-1, four decimals, half up) of the days from `first` to `last` done."""
    total = days_in(first, last)
    if total == 0:
        return Decimal(0).quantize(FRACTION)
    done = len(days_done_between(days, first, last))
    return (Decimal(done) / Decimal(total)).quantize(FRACTION, ROUND_HALF_UP)


def latest_loggable_day(today: date) -> date:
    """The last day a completion may be logged for: tomorrow, since the phone sends its own
    calendar's date, which may be ahead of the zone on the account near midnight."""
    return today + ONE_DAY
