"""Operator commands: `flask audit tail|stats|prune`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import delete, func, select

from ..audit import record
from ..auth.accounts import get_user
from ..extensions import db
from ..models import AuditEvent, AuditWriterState
from . import DURATION, delete_in_batches, operator, prune_cutoff, prune_options, reported

audit_cli = AppGroup("audit", help="Read and prune the security audit log.")


def _as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "created_at": event.created_at.isoformat(),
        "event_type": event.event_type,
        "user_id": str(event.user_id) if event.user_id else None,
        "session_id": str(event.session_id) if event.session_id else None,
        "request_id": event.request_id,
        "ip": event.ip,
        "method": event.method,
        "path": event.path,
        "status": event.status,
        "user_agent": event.user_agent,
        "details": event.details,
        "id": str(event.id),
    }


@audit_cli.command("tail")
@click.option("--user", "user", help="Only events of this user (email or id).")
@click.option("--type", "type_prefix", help="Only event types starting with this, e.g. auth.login")
@click.option("--since", type=DURATION, default="1h", show_default=True, help="How far back.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@reported
def tail(user: str | None, type_prefix: str | None, since: timedelta, limit: int) -> None:
    """Print the latest events, oldest first, one JSON object a line."""
    query = select(AuditEvent).where(AuditEvent.created_at >= datetime.now(UTC) - since)
    if user is not None:
        query = query.where(AuditEvent.user_id == get_user(user).id)
    if type_prefix:
        query = query.where(AuditEvent.event_type.startswith(type_prefix, autoescape=True))
    latest = db.session.scalars(query.order_by(AuditEvent.created_at.desc()).limit(limit)).all()
    for event in reversed(latest):
        click.echo(json.dumps(_as_dict(event), ensure_ascii=True))


@audit_cli.command("stats")
@click.option("--since", type=DURATION, default="1h", show_default=True, help="Window.")
def stats(since: timedelta) -> None:
    """Show what every audit writer last reported, and the events of the window by type."""
    start = datetime.now(UTC) - since
    writers = db.session.scalars(
        select(AuditWriterState)
        .where(AuditWriterState.updated_at >= start)
        .order_by(AuditWriterState.host, AuditWriterState.pid, AuditWriterState.started_at)
    ).all()
    by_type = db.session.execute(
        select(AuditEvent.event_type, func.count())
        .where(AuditEvent.created_at >= start)
        .group_by(AuditEvent.event_type)
        .order_by(AuditEvent.event_type)
    ).all()
    newest = db.session.scalar(select(func.max(AuditEvent.created_at)))
    report = {
        "window_start": start.isoformat(),
        "writers": [
            {
                "host": w.host,
                "pid": w.pid,
                "started_at": w.started_at.isoformat(),
                "updated_at": w.updated_at.isoformat(),
                "queue_depth": w.queue_depth,
                "written": w.written,
                "batches": w.batches,
                "write_failures": w.write_failures,
                "spilled": w.spilled,
                "last_error": w.last_error,
            }
            for w in writers
        ],
        "events_in_window": {event_type: count for event_type, count in by_type},
        "newest_event_at": newest.isoformat() if newest else None,
    }
    click.echo(json.dumps(report, indent=2))


@audit_cli.command("prune")
@prune_options("90d")
@reported
def prune(older_than: timedelta, force: bool, batch_size: int) -> None:
    """Delete events older than the given age, in batches (short locks)."""
    cutoff = prune_cutoff(older_than, force, "events")
    deleted = delete_in_batches(AuditEvent.id, AuditEvent.created_at, cutoff, batch_size)
    db.session.execute(
        delete(AuditWriterState)
        .where(AuditWriterState.updated_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    record("admin.audit.prune", operator=operator(), cutoff=cutoff, deleted=deleted)
    click.echo(f"deleted {deleted} events older than {cutoff.isoformat()}")
