"""Money: the ledger of what a user spent, and the plan of each month.

Nothing here counts spending: what was spent on a day is always a query over `transactions`
(by `spent_on`, the local day), so it cannot drift from the ledger.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..domain.categories import CATEGORIES
from ..extensions import Model, db
from .base import UTCDateTime, utcnow

_CATEGORY_KNOWN = "category IN ({})".format(", ".join(f"'{c}'" for c in CATEGORIES))


class Transaction(Model):
    """One expense. `spent_at` is the instant; `spent_on` the local day it fell on in the user's
    time zone when it was recorded (an expense stays on its day if the user later moves)."""

    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(_CATEGORY_KNOWN, name="category_known"),
        # A month's spending per day, and the list newest first: both one user's rows only.
        Index("ix_transactions_user_id_spent_on", "user_id", "spent_on"),
        Index("ix_transactions_user_id_spent_at", "user_id", "spent_at"),
        # Repeats: an Idempotency-Key is unique per user; an identical body is looked up.
        UniqueConstraint("user_id", "idempotency_key"),
        Index("ix_transactions_user_id_fingerprint", "user_id", "fingerprint"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(500), default="", server_default="")
    notes: Mapped[str] = mapped_column(String(2000), default="", server_default="")
    merchant: Mapped[str | None] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(String(200))
    is_recurring: Mapped[bool] = mapped_column(default=False, server_default=db.false())
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    spent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    spent_on: Mapped[date] = mapped_column(Date)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of the create request's body: the app's retry of a create is byte-identical.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Transaction {self.id} {self.amount} {self.category} {self.spent_on}>"


class BudgetPlan(Model):
    """A user's plan for one month, made when first needed from the onboarding answers of the
    time and kept as it was: a later change of income makes the next month's plan differ, not
    this one's (resubmitting onboarding rebuilds the current month's)."""

    __tablename__ = "budget_plans"
    __table_args__ = (
        UniqueConstraint("user_id", "month"),
        CheckConstraint(
            "income >= 0 AND fixed >= 0 AND savings >= 0 AND discretionary >= 0",
            name="amounts_non_negative",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    month: Mapped[date] = mapped_column(Date)  # its first day
    income: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    fixed: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    savings: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    discretionary: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    # [{category, kind, cents, due_day, source}]: domain.budget.PlanLine, in whole cents.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
