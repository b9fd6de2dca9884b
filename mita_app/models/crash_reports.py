"""Crash and error reports sent by the mobile app."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import UTCDateTime, utcnow

Severity = Literal["low", "medium", "high", "critical"]
Category = Literal["network", "authentication", "validation", "ui", "storage", "system", "unknown"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
CATEGORIES: tuple[Category, ...] = get_args(Category)


class CrashReport(Model):
    """One report, stored once however often the app resends it (`dedup_key`)."""

    __tablename__ = "crash_reports"
    __table_args__ = (
        CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name="severity_known"),
        Index("ix_crash_reports_received_at", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # The app's own id (its clock in ms) is unique only per device; with the report's time and
    # text it identifies one report.
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)
    client_report_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reported_at: Mapped[str | None] = mapped_column(String(40))  # the device's local time
    # A report outlives its user's account, anonymised.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    severity: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text)
    stack_trace: Mapped[str | None] = mapped_column(Text)
    context: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    app_version: Mapped[str | None] = mapped_column(String(64))
    platform: Mapped[str | None] = mapped_column(String(32))
    device_info: Mapped[Any] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    is_connected: Mapped[bool | None]
    ip: Mapped[str | None] = mapped_column(String(45))
