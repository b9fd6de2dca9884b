"""Field types shared by request schemas: each validates and normalises one kind of value."""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

from .domain.days import parse_iso_day
from .validation import SafeStr

# ISO 3166-1 alpha-2, officially assigned codes.
COUNTRY_CODES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
    ZW
    """.split()
)
# Deliberately simple: one @, no whitespace or control characters, a dot in the domain.
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+")


def normalize_email(value: str) -> str:
    return value.strip().lower()


def _email(value: str) -> str:
    value = normalize_email(value)
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError("must be a valid email address")
    return value


def _country(value: str) -> str:
    value = value.strip().upper()
    if value not in COUNTRY_CODES:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code")
    return value


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _timezone(value: str) -> str:
    if value not in _timezones():
        raise ValueError("must be an IANA time zone name, such as Europe/Paris")
    return value


def trimmed(max_length: int, *, required: bool = False) -> AfterValidator:
    """Text without its surrounding whitespace, at most `max_length` characters after it;
    `required`: not empty either."""

    def check(value: str) -> str:
        value = value.strip()
        if required and not value:
            raise ValueError("must not be empty")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        return value

    return AfterValidator(check)


Email = Annotated[SafeStr, AfterValidator(_email)]
Password = Annotated[SafeStr, Field(min_length=8, max_length=128)]
CountryCode = Annotated[SafeStr, AfterValidator(_country)]
TimeZoneName = Annotated[SafeStr, AfterValidator(_timezone)]
CENT = Decimal("0.01")
# A double that is a cent amount give or take its own rounding error (0.1 + 0.2) is that amount.
_FLOAT_SLACK = Decimal("1e-9")


def _money(value: Any) -> Any:
    """A JSON number (or numeric string) as a Decimal of at most two places."""
    if isinstance(value, bool):
        raise ValueError("must be a number")  # bool is an int to Python, never money to us
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        exact = Decimal(repr(value))
        cents = exact.quantize(CENT, rounding=ROUND_HALF_UP)
        return cents if abs(exact - cents) <= _FLOAT_SLACK * max(Decimal(1), abs(cents)) else exact
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("must be a number") from None
    return value


def money_out(value: Decimal) -> float:
    """Money leaves as a JSON number: a double prints the cents it was made from exactly."""
    return float(value)


# Money: in, a number (or numeric string) with at most two decimals; out, a JSON number.
Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(ge=0, max_digits=14, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(money_out, return_type=float, when_used="json"),
]
MoneyOut = Annotated[Decimal, PlainSerializer(money_out, return_type=float, when_used="json")]


def _currency(value: str) -> str:
    value = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError("must be an ISO 4217 currency code, such as USD")
    return value


CurrencyCode = Annotated[SafeStr, AfterValidator(_currency)]


# An ISO 8601 time: seconds and a fraction of up to 6 digits optional, `Z` or an offset optional.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?")
_OFFSET = re.compile(r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?")
WHEN_FORMAT = (
    "must be an ISO 8601 time with Z or an offset (2026-11-28T21:47:03.123Z), a local time "
    "without one, or a day as YYYY-MM-DD"
)


def _when(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_iso_day(value)
        except ValueError:
            pass
        time = _TIME.match(value)
        if time and _OFFSET.fullmatch(value, time.end()):
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError:
                pass
    raise ValueError(WHEN_FORMAT)


# A moment as the app sends one: an instant (aware), a local time (naive) or a local day
# (`domain.days.instant` turns each into an instant in the user's zone).
When = Annotated[dt.datetime | dt.date, BeforeValidator(_when)]
