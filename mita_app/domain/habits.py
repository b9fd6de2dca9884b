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

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Sequence
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


# Each frequency's period of a day: consecutive periods are consecutive integers.
_PERIOD_OF: dict[Frequency, Callable[[date], int]] = {
    "daily": date.toordinal,
    "weekly": week_index,
    "monthly": month_index,
}


def period_index(day: date, frequency: Frequency) -> int:
    """The day, ISO week or month holding `day`, numbered so that consecutive periods are
    consecutive integers."""
    return _period_of(frequency)(day)


def _period_of(frequency: Frequency) -> Callable[[date], int]:
    try:
        return _PERIOD_OF[frequency]
    except KeyError:
        raise ValueError(f"unknown frequency {frequency!r}") from None


def done_periods(days: Iterable[date], frequency: Frequency) -> list[int]:
    """The periods with at least one day done, each once, in order."""
    return sorted(set(map(_period_of(frequency), days)))


def runs_of(done: Sequence[int]) -> list[tuple[int, int]]:
    """The runs of consecutive periods in `done` (distinct, in order), oldest first, as
    (first, last) of each."""
    runs: list[tuple[int, int]] = []
    if not done:
        return runs
    first = previous = done[0]
    for period in done:
        if period > previous + 1:
            runs.append((first, previous))
            first = period
        previous = period
    runs.append((first, previous))
    return runs


def longest_run(runs: Sequence[tuple[int, int]]) -> int:
    return max((last - first + 1 for first, last in runs), default=0)


def current_run(runs: Sequence[tuple[int, int]], now: int) -> int:
    """The length of the run holding period `now`, or `now - 1` while `now` is not done; 0 when
    neither is done. Two runs are at least a period apart, so at most one holds either."""
    for first, last in reversed(runs):
        if last < now - 1:
            return 0
        if first <= now:
            return last - first + 1
    return 0


def longest_streak(days: Iterable[date], frequency: Frequency = "daily") -> int:
    """The most consecutive done periods ever (0 for a habit never done)."""
    return longest_run(runs_of(done_periods(days, frequency)))


def current_streak(days: Iterable[date], frequency: Frequency, today: date) -> int:
    """The run of consecutive done periods holding this period, or the previous one while this
    one is not done yet; 0 when neither is done. A day logged for tomorrow (a phone's calendar
    ahead of the account's zone) extends it."""
    runs = runs_of(done_periods(days, frequency))
    return current_run(runs, period_index(today, frequency))


def started_on(days: Collection[date], created_on: date) -> date:
    """When a habit started: the day it was created, or the first day logged if earlier
    (people log days they did before they added the habit)."""
    return min(created_on, min(days, default=created_on))


def rate_periods(started: date, frequency: Frequency, today: date) -> tuple[int, int]:
    """The first and last period the completion rate counts (see `completion_rate`), for a habit
    that started on `started`."""
    first = max(today - timedelta(days=RATE_WINDOW_DAYS - 1), started)
    first = min(first, today)  # a habit created "after today" (clock skew) counts today only
    return period_index(first, frequency), period_index(today, frequency)


def percent_done(done: Sequence[int], low: int, high: int) -> Decimal:
    """The percent (0-100, one decimal, rounded half up) of the periods `low` to `high` that are
    in `done` (the done periods in order)."""
    count = bisect_right(done, high) - bisect_left(done, low)
    return (Decimal(100 * count) / Decimal(high - low + 1)).quantize(PERCENT, ROUND_HALF_UP)


def completion_rate(
    days: Collection[date], frequency: Frequency, today: date, created_on: date
) -> Decimal:
    """The percent (0-100, one decimal, rounded half up) of the periods touched by the last 30
    days, today included, that have a completion: for `daily` the days done among those 30, for
    `weekly` the ISO weeks, for `monthly` the months. A habit started less than 30 days ago
    counts from the day it started, so a new habit done every day so far is at 100.0."""
    low, high = rate_periods(started_on(days, created_on), frequency, today)
    return percent_done(done_periods(days, frequency), low, high)


def habit_stats(
    days: Collection[date], frequency: Frequency, today: date, created_on: date
) -> HabitStats:
    """The three stats, with the done periods found once."""
    done = done_periods(days, frequency)
    runs = runs_of(done)
    low, high = rate_periods(started_on(days, created_on), frequency, today)
    return HabitStats(
        current_streak=current_run(runs, period_index(today, frequency)),
        longest_streak=longest_run(runs),
        completion_rate=percent_done(done, low, high),
    )


def recent_days(days: Iterable[date], today: date) -> list[date]:
    """The days done among the last 30 (and tomorrow, when logged), oldest first."""
    first = today - timedelta(days=RATE_WINDOW_DAYS - 1)
    return days_done_between(days, first, latest_loggable_day(today))


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
