"""Habits and the local days on which they were done."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import UTCDateTime, utcnow

FREQUENCIES = ("daily", "weekly", "monthly")


class Habit(Model):
    __tablename__ = "habits"
    __table_args__ = (
        CheckConstraint(
            "target_frequency IN ('daily', 'weekly', 'monthly')", name="target_frequency_known"
        ),
        Index("ix_habits_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    target_frequency: Mapped[str] = mapped_column(
        String(16), default="daily", server_default="daily"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class HabitCompletion(Model):
    """One local day (in the user's time zone) on which a habit was done: at most one a day."""

    __tablename__ = "habit_completions"

    habit_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("habits.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
