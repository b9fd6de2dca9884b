"""Local days: the one place that turns an instant into a day of the user's calendar.

A habit done at 23:30 in Los Angeles was done that day, not the next (which it already is in
UTC). The day, ISO week and month of every rule are computed here from the user's IANA time
zone; no name, or a name this server does not know, means UTC.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ONE_DAY = timedelta(days=1)
DAY_ONLY_AT = time(12)  # a moment given as a day alone is that local day's noon


@functools.lru_cache(maxsize=1024)
def zone(timezone_name: str | None) -> tzinfo:
    """The zone an IANA name names; UTC for None, "" or a name the zone database lacks."""
    if not timezone_name:
        return UTC
    try:
        return ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        # A stored zone that tzdata dropped (or a hand-edited row) must not fail the request.
        return UTC


def local_date(timezone_name: str | None, instant: datetime) -> date:
    """The calendar day `instant` (aware) falls on in the named zone."""
    if instant.tzinfo is None:
        raise ValueError("a naive datetime has no day in any zone: pass an aware one")
    return instant.astimezone(zone(timezone_name)).date()


def instant(timezone_name: str | None, when: date | datetime) -> datetime:
    """`when` as a UTC instant: an aware time as it is, a naive one as local time in the named
    zone, a day alone as its local noon. OverflowError at the ends of the calendar."""
    if not isinstance(when, datetime):
        when = datetime.combine(when, DAY_ONLY_AT)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone(timezone_name))
    return when.astimezone(UTC)


def local_today(timezone_name: str | None, now: datetime) -> date:
    """Today in the named zone (UTC when None or unknown), as of the aware instant `now`."""
    return local_date(timezone_name, now)


def parse_iso_day(text: str) -> date:
    """A `YYYY-MM-DD` day, exactly that form (no week dates, no times): ValueError otherwise."""
    if not _ISO_DAY.fullmatch(text):
        raise ValueError("must be a date as YYYY-MM-DD")
    return date.fromisoformat(text)


def days_in(first: date, last: date) -> int:
    """How many days `first` to `last` spans, both included (0 when last is before first)."""
    return max(0, (last - first).days + 1)


def week_index(day: date) -> int:
    """A number for the ISO week (Monday to Sunday) holding `day`: consecutive weeks get
    consecutive numbers, across year ends too (which ISO (year, week) pairs do not)."""
    # Ordinal 1 (0001-01-01) is a Monday, so ordinal - 1 counts days from a week's start.
    return (day.toordinal() - 1) // 7


def month_index(day: date) -> int:
    """A number for the calendar month holding `day`: consecutive months, consecutive numbers."""
    return day.year * 12 + day.month - 1
