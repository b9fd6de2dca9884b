"""The habit rules (`mita_app.domain.habits`) and local days (`mita_app.domain.days`): properties
checked by the hundred with hypothesis, then worked examples that read like the product."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mita_app.domain.days import local_today, month_index, parse_iso_day, week_index
from mita_app.domain.habits import (
    FREQUENCIES,
    HabitStats,
    completion_rate,
    current_streak,
    habit_stats,
    longest_streak,
    period_index,
    recent_days,
    share_of_days_done,
)

DAY = timedelta(days=1)
todays = st.dates(min_value=date(1971, 1, 1), max_value=date(2200, 12, 31))
frequencies = st.sampled_from(FREQUENCIES)
# Completions as offsets from today: up to ~14 months back, and tomorrow (the latest loggable).
offsets = st.sets(st.integers(min_value=-420, max_value=1), max_size=120)


def days_from(today: date, offsets_: set[int]) -> set[date]:
    return {today + timedelta(days=offset) for offset in offsets_}


def run_ending(last: date, length: int) -> set[date]:
    return {last - timedelta(days=back) for back in range(length)}


# --- properties ---------------------------------------------------------------------------------


@given(today=todays, offsets_=offsets, frequency=frequencies)
def test_current_streak_never_exceeds_longest(today, offsets_, frequency):
    days = days_from(today, offsets_)
    assert 0 <= current_streak(days, frequency, today) <= longest_streak(days, frequency)


@given(today=todays, offsets_=offsets, frequency=frequencies)
def test_longest_streak_is_at_most_the_number_of_distinct_days_done(today, offsets_, frequency):
    days = days_from(today, offsets_)
    assert longest_streak(days, frequency) <= len(days)
    assert (longest_streak(days, frequency) == 0) == (not days)


@given(today=todays, offsets_=offsets, extra=st.integers(-420, 1), frequency=frequencies)
def test_adding_a_completion_never_lowers_the_longest_streak(today, offsets_, extra, frequency):
    days = days_from(today, offsets_)
    more = days | {today + timedelta(days=extra)}
    assert longest_streak(more, frequency) >= longest_streak(days, frequency)


@given(today=todays, length=st.integers(1, 400))
def test_a_daily_run_ending_today_is_the_current_streak(today, length):
    days = run_ending(today, length)
    assert current_streak(days, "daily", today) == length
    assert longest_streak(days, "daily") == length


@given(today=todays, length=st.integers(1, 400))
def test_a_daily_run_ending_yesterday_still_counts_while_today_is_not_done(today, length):
    assert current_streak(run_ending(today - DAY, length), "daily", today) == length


@given(today=todays, length=st.integers(1, 400))
def test_a_daily_run_ending_the_day_before_yesterday_is_broken(today, length):
    days = run_ending(today - 2 * DAY, length)
    assert current_streak(days, "daily", today) == 0
    assert longest_streak(days, "daily") == length


@given(today=todays, weeks=st.integers(1, 60), weekday=st.integers(0, 6), done_now=st.booleans())
def test_a_run_of_iso_weeks_is_the_weekly_streak_whatever_day_each_was_done(
    today, weeks, weekday, done_now
):
    monday = today - timedelta(days=today.weekday())
    newest = 0 if done_now else 1  # while this week is not done, the run may end last week
    days = {
        min(monday - timedelta(weeks=back) + timedelta(days=weekday), today)
        for back in range(newest, newest + weeks)
    }
    assert current_streak(days, "weekly", today) == longest_streak(days, "weekly") == weeks


@given(today=todays, offsets_=offsets, frequency=frequencies, created_back=st.integers(-2, 800))
def test_completion_rate_is_a_percent_with_one_decimal(today, offsets_, frequency, created_back):
    rate = completion_rate(
        days_from(today, offsets_), frequency, today, today - timedelta(days=created_back)
    )
    assert Decimal(0) <= rate <= Decimal(100)
    assert rate == rate.quantize(Decimal("0.1"))


@given(today=todays, frequency=frequencies, created_back=st.integers(0, 800))
def test_a_habit_done_every_day_since_it_started_is_at_100(today, frequency, created_back):
    created_on = today - timedelta(days=created_back)
    days = run_ending(today, min(created_back + 1, 30))
    assert completion_rate(days, frequency, today, created_on) == Decimal("100.0")


@given(today=todays, offsets_=offsets, frequency=frequencies)
def test_completions_older_than_the_window_do_not_change_the_rate(today, offsets_, frequency):
    days = days_from(today, offsets_)
    created_on = today - timedelta(days=1000)
    # Days before the first day of the oldest period the window touches cannot matter.
    horizon = today - timedelta(days=29 + 31)
    recent = {day for day in days if day >= horizon}
    assert completion_rate(days, frequency, today, created_on) == completion_rate(
        recent, frequency, today, created_on
    )


@given(today=todays, offsets_=offsets)
def test_recent_days_are_the_last_30_and_tomorrow_ascending(today, offsets_):
    days = days_from(today, offsets_)
    recent = recent_days(days, today)
    assert recent == sorted(recent)
    assert set(recent) == {day for day in days if today - 29 * DAY <= day <= today + DAY}


@given(today=todays, offsets_=offsets, span=st.integers(0, 400))
def test_share_of_days_done_is_a_fraction_with_four_decimals(today, offsets_, span):
    share = share_of_days_done(days_from(today, offsets_), today - timedelta(days=span), today)
    assert Decimal(0) <= share <= Decimal(1)
    assert share == share.quantize(Decimal("0.0001"))


@given(first=todays, second=todays)
def test_week_index_numbers_iso_weeks_consecutively(first, second):
    same_iso_week = first.isocalendar()[:2] == second.isocalendar()[:2]
    assert (week_index(first) == week_index(second)) == same_iso_week
    assert week_index(first + timedelta(weeks=1)) == week_index(first) + 1


@given(first=todays, second=todays)
def test_month_index_numbers_calendar_months_consecutively(first, second):
    same_month = (first.year, first.month) == (second.year, second.month)
    assert (month_index(first) == month_index(second)) == same_month
    next_month = (first.replace(day=1) + timedelta(days=32)).replace(day=1)
    assert month_index(next_month) == month_index(first) + 1


@given(
    instant=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(["Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata", "UTC"]),
)
def test_a_local_day_is_within_a_day_of_the_utc_day(instant, zone):
    assert abs((local_today(zone, instant) - instant.date()).days) <= 1
    assert local_today(None, instant) == instant.date()
    assert local_today("Not/AZone", instant) == instant.date()


# --- the rules against their plain definitions --------------------------------------------------
# The rules find a habit's done periods once, in order, and walk their runs; these read the same
# rules straight off the module's docstring, over a set of periods.


def plain_done(days, frequency):
    return {period_index(day, frequency) for day in days}


def plain_longest(days, frequency):
    done = plain_done(days, frequency)
    best = 0
    for first in (period for period in done if period - 1 not in done):
        last = first
        while last + 1 in done:
            last += 1
        best = max(best, last - first + 1)
    return best


def plain_current(days, frequency, today):
    done = plain_done(days, frequency)
    now = period_index(today, frequency)
    anchor = now if now in done else now - 1
    if anchor not in done:
        return 0
    first = last = anchor
    while first - 1 in done:
        first -= 1
    while last + 1 in done:
        last += 1
    return last - first + 1


def plain_rate(days, frequency, today, created_on):
    first = min(max(today - 29 * DAY, min([created_on, *days])), today)
    periods = range(period_index(first, frequency), period_index(today, frequency) + 1)
    done = len(plain_done(days, frequency).intersection(periods))
    return (Decimal(100 * done) / len(periods)).quantize(Decimal("0.1"), ROUND_HALF_UP)


# Any order, repeats, and days after tomorrow (logged before the account's zone moved west).
sparse = st.lists(st.integers(min_value=-420, max_value=40), max_size=150)
dense = st.lists(st.integers(min_value=-70, max_value=3), max_size=70)


@given(
    today=todays,
    offsets_=sparse | dense,
    frequency=frequencies,
    created_back=st.integers(-2, 800),
)
def test_the_rules_say_what_their_plain_definitions_say(today, offsets_, frequency, created_back):
    days = [today + timedelta(days=offset) for offset in offsets_]
    created_on = today - timedelta(days=created_back)
    expected = HabitStats(
        current_streak=plain_current(days, frequency, today),
        longest_streak=plain_longest(days, frequency),
        completion_rate=plain_rate(days, frequency, today, created_on),
    )
    assert habit_stats(days, frequency, today, created_on) == expected
    assert current_streak(days, frequency, today) == expected.current_streak
    assert longest_streak(days, frequency) == expected.longest_streak
    assert completion_rate(days, frequency, today, created_on) == expected.completion_rate


# --- worked examples ----------------------------------------------------------------------------

WEDNESDAY = date(2026, 11, 25)


def test_a_daily_streak_does_not_break_at_one_minute_past_midnight():
    done = {date(2026, 11, 22), date(2026, 11, 23), date(2026, 11, 24)}
    assert current_streak(done, "daily", WEDNESDAY) == 3  # today not done yet: from yesterday
    assert current_streak(done | {WEDNESDAY}, "daily", WEDNESDAY) == 4
    assert current_streak(done, "daily", WEDNESDAY + DAY) == 0  # a whole day missed


def test_a_gap_splits_daily_runs_and_the_longest_is_kept():
    done = {date(2026, 11, day) for day in (1, 2, 3, 4, 10, 11, 24, 25)}
    assert habit_stats(done, "daily", WEDNESDAY, date(2026, 11, 1)).current_streak == 2
    assert longest_streak(done, "daily") == 4


def test_weekly_streak_counts_iso_weeks_from_last_week_until_this_one_is_done():
    done = {date(2026, 11, 15), date(2026, 11, 16)}  # a Sunday, then the next Monday
    assert current_streak(done, "weekly", WEDNESDAY) == 2
    assert current_streak(done | {date(2026, 11, 23)}, "weekly", WEDNESDAY) == 3
    assert current_streak({date(2026, 11, 15)}, "weekly", WEDNESDAY) == 0


def test_weekly_streak_runs_across_the_new_year():
    # 2026 has an ISO week 53: Thursday 31 December is in it, Monday 4 January 2027 is week 1.
    assert date(2026, 12, 31).isocalendar()[:2] == (2026, 53)
    assert longest_streak({date(2026, 12, 31), date(2027, 1, 4)}, "weekly") == 2


def test_monthly_streak_counts_calendar_months():
    assert longest_streak({date(2026, 1, 31), date(2026, 2, 1)}, "monthly") == 2
    assert longest_streak({date(2026, 1, 15), date(2026, 3, 15)}, "monthly") == 1
    done = {date(2026, 1, 15), date(2026, 2, 28)}
    assert current_streak(done, "monthly", date(2026, 3, 1)) == 2
    assert current_streak(done, "monthly", date(2026, 4, 1)) == 0


@pytest.mark.parametrize(
    ("done_days", "expected"),
    [
        (30, "100.0"),
        (29, "96.7"),  # 96.666… rounds up
        (20, "66.7"),
        (15, "50.0"),
        (1, "3.3"),
        (0, "0.0"),
    ],
)
def test_daily_rate_is_the_share_of_the_last_30_days_done(done_days, expected):
    done = run_ending(WEDNESDAY, done_days)
    assert completion_rate(done, "daily", WEDNESDAY, date(2020, 1, 1)) == Decimal(expected)


def test_rate_rounds_half_up_not_to_even():
    created = WEDNESDAY - 15 * DAY  # 16 days so far, 1 done: 6.25 percent
    assert completion_rate({WEDNESDAY}, "daily", WEDNESDAY, created) == Decimal("6.3")


def test_weekly_rate_is_the_share_of_the_weeks_the_30_days_touch():
    # 27 Oct to 25 Nov touches five ISO weeks (from Mondays 26 Oct to 23 Nov); three done.
    done = {date(2026, 10, 27), date(2026, 11, 4), date(2026, 11, 25)}
    assert completion_rate(done, "weekly", WEDNESDAY, date(2025, 1, 1)) == Decimal("60.0")


def test_monthly_rate_is_the_share_of_the_months_the_30_days_touch():
    assert completion_rate({WEDNESDAY}, "monthly", WEDNESDAY, date(2025, 1, 1)) == Decimal("50.0")
    end_of_january = date(2026, 1, 31)  # the 30 days are all in January
    assert completion_rate(
        {end_of_january}, "monthly", end_of_january, date(2025, 1, 1)
    ) == Decimal("100.0")


def test_a_new_habit_counts_from_its_first_day_and_late_logged_days_count_too():
    assert completion_rate({WEDNESDAY}, "daily", WEDNESDAY, WEDNESDAY) == Decimal("100.0")
    assert completion_rate(set(), "daily", WEDNESDAY, WEDNESDAY) == Decimal("0.0")
    created = WEDNESDAY - 2 * DAY
    assert completion_rate({created, WEDNESDAY}, "daily", WEDNESDAY, created) == Decimal("66.7")
    logged_late = {WEDNESDAY - 9 * DAY, WEDNESDAY}  # the habit starts on the first day logged
    assert completion_rate(logged_late, "daily", WEDNESDAY, created) == Decimal("20.0")


def test_a_day_logged_for_tomorrow_is_listed_and_extends_the_streak():
    done = {WEDNESDAY, WEDNESDAY + DAY}
    assert recent_days(done, WEDNESDAY) == [WEDNESDAY, WEDNESDAY + DAY]
    assert current_streak(done, "daily", WEDNESDAY) == 2


def test_a_day_logged_ahead_of_tomorrow_does_not_hide_the_run_up_to_yesterday():
    # Logged in Kiritimati (UTC+14) before the account moved to Pago Pago (UTC-11).
    done = {WEDNESDAY - 2 * DAY, WEDNESDAY - DAY, WEDNESDAY + 2 * DAY}
    assert current_streak(done, "daily", WEDNESDAY) == 2
    assert habit_stats(done, "daily", WEDNESDAY, WEDNESDAY - 2 * DAY).current_streak == 2


def test_share_of_days_done_is_a_fraction_of_the_range():
    done = {date(2026, 11, 1), date(2026, 11, 2), date(2026, 12, 1)}
    assert share_of_days_done(done, date(2026, 11, 1), date(2026, 11, 30)) == Decimal("0.0667")
    assert share_of_days_done(done, date(2026, 11, 1), date(2026, 11, 1)) == Decimal("1.0000")


def test_local_today_near_midnight_in_los_angeles_and_kiritimati():
    instant = datetime(2026, 3, 11, 6, 30, tzinfo=UTC)  # 23:30 on 10 March in Los Angeles
    assert local_today("America/Los_Angeles", instant) == date(2026, 3, 10)
    assert local_today("America/Los_Angeles", instant + timedelta(hours=1)) == date(2026, 3, 11)
    assert local_today("Pacific/Kiritimati", instant) == date(2026, 3, 11)  # UTC+14
    assert local_today("Pacific/Kiritimati", datetime(2026, 3, 10, 10, 30, tzinfo=UTC)) == date(
        2026, 3, 11
    )
    assert local_today(None, instant) == date(2026, 3, 11)
    with pytest.raises(ValueError, match="naive"):
        local_today("UTC", datetime(2026, 3, 11, 6, 30))


@pytest.mark.parametrize(
    "text", ["2026-11-28", "1970-01-01", "2024-02-29"], ids=["plain", "epoch", "leap-day"]
)
def test_parse_iso_day_reads_plain_dates(text):
    assert parse_iso_day(text) == date.fromisoformat(text)


@pytest.mark.parametrize(
    "text",
    [
        "20261128",
        "2026-W48-6",
        "2026-02-30",
        "2026-11-28T00:00",
        "28/11/2026",
        "",
        "\u0662\u0660\u0662\u0666-11-28",
    ],
)
def test_parse_iso_day_refuses_anything_but_yyyy_mm_dd(text):
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError is the contract
        parse_iso_day(text)
