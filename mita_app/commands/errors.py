"""Operator commands: `flask errors tail|stats|prune`, over the mobile app's crash reports."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import ColumnElement, func, select

from ..audit import record
from ..auth.accounts import get_user
from ..extensions import db
from ..models import CATEGORIES, SEVERITIES, CrashReport
from . import DURATION, delete_in_batches, operator, prune_cutoff, prune_options, reported

errors_cli = AppGroup("errors", help="Read and prune the mobile app's crash reports.")
FIRST_LINE_LENGTH = 200
NONE = "(none)"


def _as_dict(report: CrashReport) -> dict[str, Any]:
    return {
        "received_at": report.received_at.isoformat(),
        "reported_at": report.reported_at,
        "severity": report.severity,
        "category": report.category,
        "error": report.error,
        "app_version": report.app_version,
        "platform": report.platform,
        "device_info": report.device_info,
        "is_connected": report.is_connected,
        "user_id": str(report.user_id) if report.user_id else None,
        "ip": report.ip,
        "context": report.context,
        "stack_trace": report.stack_trace,
        "client_report_id": report.client_report_id,
        "id": str(report.id),
    }


def _user_id(identifier: str) -> uuid.UUID:
    """A user id as given (the user may be gone; their reports are then anonymous), or the id
    of the user with this email."""
    try:
        return uuid.UUID(identifier)
    except ValueError:
        return get_user(identifier).id


@errors_cli.command("tail")
@click.option("--since", type=DURATION, default="1h", show_default=True, help="How far back.")
@click.option(
    "--severity", type=click.Choice(SEVERITIES), multiple=True, help="Only these (repeatable)."
)
@click.option(
    "--category", type=click.Choice(CATEGORIES), multiple=True, help="Only these (repeatable)."
)
@click.option("--app-version", help="Only reports from this app version.")
@click.option("--user", "user", help="Only reports of this user (email or id).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@reported
def tail(
    since: timedelta,
    severity: Sequence[str],
    category: Sequence[str],
    app_version: str | None,
    user: str | None,
    limit: int,
) -> None:
    """Print the latest reports, oldest first, one JSON object a line."""
    query = select(CrashReport).where(CrashReport.received_at >= datetime.now(UTC) - since)
    if severity:
        query = query.where(CrashReport.severity.in_(severity))
    if category:
        query = query.where(CrashReport.category.in_(category))
    if app_version is not None:
        query = query.where(CrashReport.app_version == app_version)
    if user is not None:
        query = query.where(CrashReport.user_id == _user_id(user))
    latest = db.session.scalars(
        query.order_by(CrashReport.received_at.desc(), CrashReport.id.desc()).limit(limit)
    ).all()
    for report in reversed(latest):
        click.echo(json.dumps(_as_dict(report), ensure_ascii=True))


def _first_line() -> ColumnElement[str]:
    """The error's first line (cut), in SQL: reports are counted where they are."""
    error = CrashReport.error
    if db.session.get_bind().dialect.name == "postgresql":
        line = func.split_part(error, "\n", 1)
    else:
        line = func.substr(error, 1, func.instr(error + "\n", "\n") - 1)
    return func.substr(func.rtrim(line, "\r"), 1, FIRST_LINE_LENGTH)


def _counts(column: Any, start: datetime, top: int | None = None) -> dict[str, int]:
    count = func.count().label("n")
    query = (
        select(column, count)
        .where(CrashReport.received_at >= start)
        .group_by(column)
        .order_by(count.desc(), column)
    )
    if top is not None:
        query = query.limit(top)
    return {NONE if key is None else str(key): n for key, n in db.session.execute(query)}


@errors_cli.command("stats")
@click.option("--since", type=DURATION, default="24h", show_default=True, help="Window.")
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
def stats(since: timedelta, top: int) -> None:
    """Count the window's reports by severity, category, app version, platform and error."""
    start = datetime.now(UTC) - since
    in_window = CrashReport.received_at >= start
    total, users, anonymous = db.session.execute(
        select(
            func.count(),
            func.count(CrashReport.user_id.distinct()),
            func.count().filter(CrashReport.user_id.is_(None)),
        ).where(in_window)
    ).one()
    line = _first_line().label("line")
    count = func.count().label("n")
    frequent = db.session.execute(
        select(line, count, func.max(CrashReport.received_at))
        .where(in_window)
        .group_by("line")
        .order_by(count.desc(), "line")
        .limit(top)
    ).all()
    report = {
        "window_start": start.isoformat(),
        "total": total,
        "users": users,
        "anonymous": anonymous,
        "by_severity": {s: 0 for s in SEVERITIES} | _counts(CrashReport.severity, start),
        "by_category": {c: 0 for c in CATEGORIES} | _counts(CrashReport.category, start),
        "by_app_version": _counts(CrashReport.app_version, start, top),
        "by_platform": _counts(CrashReport.platform, start, top),
        "top_errors": [
            {"error": text, "count": n, "last_received_at": last.isoformat()}
            for text, n, last in frequent
        ],
    }
    click.echo(json.dumps(report, indent=2))


@errors_cli.command("prune")
@prune_options("30d")
@reported
def prune(older_than: timedelta, force: bool, batch_size: int) -> None:
    """Delete reports received before the given age, in batches (short locks)."""
    cutoff = prune_cutoff(older_than, force, "reports")
    deleted = delete_in_batches(CrashReport.id, CrashReport.received_at, cutoff, batch_size)
    record("admin.errors.prune", operator=operator(), cutoff=cutoff, deleted=deleted)
    click.echo(f"deleted {deleted} crash reports older than {cutoff.isoformat()}")
