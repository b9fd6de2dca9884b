"""The security audit log, and what each of its writers last reported."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import UTCDateTime


class AuditEvent(Model):
    """One security event. Rows are written only by the audit writer, in batches.

    No foreign keys: the record of what happened outlives the accounts and sessions it names.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_user_id_created_at", "user_id", "created_at"),
        Index("ix_audit_events_event_type_created_at", "event_type", "created_at"),
        # BRIN: rows arrive in time order, so a tiny block-range index serves `prune` and
        # `--since`, and costs next to nothing per insert.
        Index("ix_audit_events_created_at", "created_at", postgresql_using="brin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[uuid.UUID | None]
    session_id: Mapped[uuid.UUID | None]
    request_id: Mapped[str | None] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    method: Mapped[str | None] = mapped_column(String(16))
    path: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[int | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))


class AuditWriterState(Model):
    """What one audit writer (one per worker process) last reported about itself."""

    __tablename__ = "audit_writers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    queue_depth: Mapped[int]
    written: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(BigInteger)
    write_failures: Mapped[int] = mapped_column(BigInteger)
    spilled: Mapped[int] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(200))
