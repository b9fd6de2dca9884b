"""Crash reports from the mobile app: each stored once, however often the app resends it.

The app resends a report until it gets a 2xx (a timeout, a 5xx or a 429 queue it for another try
2 minutes later), so one report can arrive many times, even at the same moment from two retries.
It is identified by the app's id (the device's clock in ms: unique per device only), the
device's local time and the error text; the database's unique `dedup_key` settles the races.

What is stored is what the device said, cut to the columns' sizes and made storable (PostgreSQL
refuses NUL, even inside JSON; psycopg2 cannot encode lone surrogates).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .audit.events import clean_text
from .auth.guard import optional_principal
from .database import insert_or_skip
from .errors import DependencyUnavailable
from .extensions import db
from .models import CrashReport, utcnow

log = logging.getLogger(__name__)

MAX_ERROR = 10_000
MAX_STACK_TRACE = 64_000
MAX_DEVICE_TEXT = 1_000
MAX_JSON_STRING = 64_000
MAX_JSON_KEY = 256
MAX_JSON_DEPTH = 16
TOO_DEEP = "[nested too deep]"
LOGGED_SEVERITIES = frozenset({"high", "critical"})
DEDUP = CrashReport.dedup_key


@dataclass(frozen=True, slots=True)
class Report:
    """A report as the app sent it (validated, not yet cut to size)."""

    client_id: str
    reported_at: str | None
    error: str
    stack_trace: str | None
    severity: str
    category: str
    context: dict[str, Any]
    app_version: str | None
    platform: str | None
    device_info: str | dict[str, Any] | None
    is_connected: bool | None
    claimed_user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    id: uuid.UUID
    created: bool  # False: a resend of a report stored before


def dedup_key(client_id: str, reported_at: str | None, error: str) -> str:
    """What identifies one report across resends (64 hex digits)."""
    identity = json.dumps([client_id, reported_at, error], ensure_ascii=True)
    return hashlib.sha256(identity.encode("ascii")).hexdigest()


def reporting_user() -> uuid.UUID | None:
    """The user the request's access token names, if it names one that is signed in.

    Anything else (no token, `Bearer null`, expired, revoked, or an auth server that cannot
    answer) is an anonymous report: a report about a broken sign-in must still get through.
    """
    try:
        principal = optional_principal()
    except DependencyUnavailable:
        return None
    return principal.user_id if principal is not None else None


def _storable(value: Any, depth: int = 0) -> Any:
    """A JSON value with every string storable, cut where absurd, and bounded in depth."""
    if isinstance(value, str):
        return clean_text(value, MAX_JSON_STRING)
    if isinstance(value, dict | list) and depth >= MAX_JSON_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {
            clean_text(str(key), MAX_JSON_KEY): _storable(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_storable(item, depth + 1) for item in value]
    return value  # None, bool, int, float (never NaN: the body parser refuses it)


def _text(value: str | None, limit: int) -> str | None:
    return None if value is None else clean_text(value, limit)


def _row(report: Report, user_id: uuid.UUID | None, ip: str | None) -> dict[str, Any]:
    context = _storable(report.context)
    if report.claimed_user_id is not None:
        # Never trusted for linking (the token is), but worth seeing next to it.
        context["claimed_user_id"] = clean_text(report.claimed_user_id, 64)
    device_info = report.device_info
    return {
        "id": uuid.uuid4(),
        "dedup_key": dedup_key(report.client_id, report.reported_at, report.error),
        "client_report_id": clean_text(report.client_id, 64),
        "received_at": utcnow(),
        "reported_at": _text(report.reported_at, 40),
        "user_id": user_id,
        "severity": report.severity,
        "category": report.category,
        "error": clean_text(report.error, MAX_ERROR),
        "stack_trace": _text(report.stack_trace, MAX_STACK_TRACE),
        "context": context,
        "app_version": _text(report.app_version, 64),
        "platform": _text(report.platform, 32),
        "device_info": clean_text(device_info, MAX_DEVICE_TEXT)
        if isinstance(device_info, str)
        else _storable(device_info),
        "is_connected": report.is_connected,
        "ip": ip,
    }


def _insert_once(values: dict[str, Any]) -> Stored:
    """Insert the row unless its report is already stored; either way, the stored row's id.

    INSERT ... ON CONFLICT DO NOTHING: a concurrent resend waits for the first insert to commit
    and then skips, so neither gets a unique violation (a 500 the app would retry forever)."""
    statement = insert_or_skip(CrashReport, values, [DEDUP]).returning(CrashReport.id)
    new_id = db.session.execute(statement).scalar_one_or_none()
    if new_id is not None:
        return Stored(new_id, created=True)
    existing = db.session.scalar(
        select(CrashReport.id).where(CrashReport.dedup_key == values["dedup_key"])
    )
    if existing is None:  # unreachable: the conflicting row is committed before we skip
        raise RuntimeError("crash report conflict without a stored report")
    return Stored(existing, created=False)


def store(report: Report, *, user_id: uuid.UUID | None, ip: str | None) -> Stored:
    """Store `report` (once) and commit; a resend answers with the first one's id."""
    values = _row(report, user_id, ip)
    try:
        stored = _insert_once(values)
    except IntegrityError:
        if user_id is None:
            raise
        # The token's check was cached, and the account has been deleted since: a report
        # outlives its user's account anyway, so it is stored anonymously.
        db.session.rollback()
        stored = _insert_once({**values, "user_id": None})
    db.session.commit()
    if stored.created and report.severity in LOGGED_SEVERITIES:
        log.warning(
            "crash report %s: %s %s (app's id %s)",
            stored.id,
            report.severity,
            report.category,
            values["client_report_id"],
        )
    return stored
