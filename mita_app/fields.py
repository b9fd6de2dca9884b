"""Field types shared by request schemas: each validates and normalises one kind of value."""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
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

# An address is compared the way its owner reads it (RFC 8265's UsernameCaseMapped profile, in
# spirit): width variants folded, lower case, NFC. Beyond ASCII it may hold only letters, digits
# and combining marks (PRECIS IdentifierClass), none of them invisible, and each part (the local
# part, each domain label) letters of one script, or of one of the mixes a language writes with
# (UTS #39, highly restrictive): a Cyrillic a (U+0430) among Latin letters is a lookalike.
_LETTERS_DIGITS_MARKS = frozenset({"Ll", "Lu", "Lo", "Lm", "Nd", "Mn", "Mc"})
# Unicode's default-ignorable code points that are not format (Cf) characters: shown as nothing.
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)
_SCRIPT_OF_NAME = (
    ("CJK ", "HAN"),
    ("IDEOGRAPHIC ", "HAN"),
    ("KATAKANA-HIRAGANA ", "KATAKANA"),
    ("ARABIC-INDIC ", "ARABIC"),
    ("EXTENDED ARABIC-INDIC ", "ARABIC"),
)
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),  # Japanese
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),  # Chinese
    frozenset({"LATIN", "HAN", "HANGUL"}),  # Korean
)


def _narrow(char: str) -> str:
    """A fullwidth or halfwidth form as its usual one (RFC 8265's width mapping)."""
    if char.isascii() or not unicodedata.decomposition(char).startswith(("<wide>", "<narrow>")):
        return char
    return unicodedata.normalize("NFKC", char)


def normalize_email(value: str) -> str:
    """The address as it is stored and looked up: trimmed, width-folded, lower case, NFC."""
    value = "".join(map(_narrow, value.strip()))
    return unicodedata.normalize("NFC", value.lower())


def _refused_character(char: str) -> str | None:
    """Why `char` may not be in an address, or None."""
    if char.isascii():
        return None if char.isprintable() else "a control character"
    category = unicodedata.category(char)
    if category[0] in "CZ" or char in _INVISIBLE:
        return "an invisible, control or formatting character"
    if category not in _LETTERS_DIGITS_MARKS or unicodedata.normalize("NFKC", char) != char:
        return "beyond ASCII an address holds only letters, digits and marks"
    return None


def _script(char: str) -> str | None:
    """The script of a letter or digit (from its Unicode name); None for ASCII digits and
    punctuation, and marks, which go with any script."""
    if char.isascii():
        return "LATIN" if char.isalpha() else None
    if unicodedata.category(char)[0] not in "LN":
        return None
    name = unicodedata.name(char, "")
    for prefix, script in _SCRIPT_OF_NAME:
        if name.startswith(prefix):
            return script
    return name.split(" ", 1)[0]


def _check_spelling(value: str) -> str:
    """`value` normalised, or ValueError naming what makes it a lookalike."""
    value = normalize_email(value)
    for char in value:
        why = _refused_character(char)
        if why is not None:
            raise ValueError(f"must not contain U+{ord(char):04X} ({why})")
    local, _, domain = value.rpartition("@")
    for part in (local, *domain.split(".")):
        scripts = {script for script in map(_script, part) if script is not None}
        if len(scripts) > 1 and not any(scripts <= mix for mix in _SCRIPT_MIXES):
            named = " and ".join(sorted(script.title() for script in scripts))
            raise ValueError(f"must not mix letters of different scripts in one part ({named})")
    return value


def _email(value: str) -> str:
    value = _check_spelling(value)
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
# The address a sign-in names: checked for lookalikes like any other, but not for its format (an
# address that could never be registered fails as an unknown one does: 401).
LoginEmail = Annotated[
    SafeStr, Field(min_length=1, max_length=320), AfterValidator(_check_spelling)
]
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
