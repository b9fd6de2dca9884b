"""Accounts: users, their sessions, and the identities and tokens that vouch for them."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal, get_args

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model, db
from .base import UTCDateTime, utcnow

ROLES = ("user", "admin")
LOCAL_PROVIDER = "local"
# The app's own choices (its profile screen's dropdowns): any other value breaks them.
Region = Literal["US", "Canada", "UK", "Europe", "Australia", "Asia"]
BudgetMethod = Literal["50/30/20 Rule", "60/20/20", "Percentage", "Zero-Based", "Envelope"]
REGIONS: tuple[Region, ...] = get_args(Region)
BUDGET_METHODS: tuple[BudgetMethod, ...] = get_args(BudgetMethod)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IS NULL OR {column} IN ({listed})"


class User(Model):
    """An account. Local accounts sign in with a password; in AUTH_MODE=better-auth an account
    is made on its first request, keyed by (auth_provider, external_subject), without one."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'admin')", name="role_valid"),
        CheckConstraint("income >= 0", name="income_non_negative"),
        CheckConstraint("savings_goal >= 0", name="savings_goal_non_negative"),
        CheckConstraint("additional_income >= 0", name="additional_income_non_negative"),
        CheckConstraint(
            "budget_alert_threshold >= 0 AND budget_alert_threshold <= 100",
            name="budget_alert_threshold_percent",
        ),
        CheckConstraint(_one_of("region", REGIONS), name="region_known"),
        CheckConstraint(_one_of("budget_method", BUDGET_METHODS), name="budget_method_known"),
        # Only local accounts have a password here (a local one may have none: signed up
        # with Google); an external auth server's users never do.
        CheckConstraint(
            "auth_provider = 'local' OR password_hash IS NULL", name="password_if_local"
        ),
        UniqueConstraint("auth_provider", "external_subject"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    auth_provider: Mapped[str] = mapped_column(
        String(32), default=LOCAL_PROVIDER, server_default=LOCAL_PROVIDER
    )
    external_subject: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    is_active: Mapped[bool] = mapped_column(default=True, server_default=db.true())
    name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    country: Mapped[str | None] = mapped_column(String(2))
    region: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3), default="USD", server_default="USD")
    income: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=0, server_default="0")
    savings_goal: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=0, server_default="0")
    # Onboarding's answers, from which each month's budget plan is made (domain.budget).
    additional_income: Mapped[Decimal] = mapped_column(
        Numeric(14, 2), default=0, server_default="0"
    )
    fixed_expenses: Mapped[dict[str, str]] = mapped_column(
        JSON, default=dict, server_default="{}"
    )  # name: "12.50"
    fixed_due_days: Mapped[dict[str, int]] = mapped_column(JSON, default=dict, server_default="{}")
    spending_habits: Mapped[dict[str, int]] = mapped_column(JSON, default=dict, server_default="{}")
    goals: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    has_emergency_fund: Mapped[bool | None]
    onboarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    budget_method: Mapped[str] = mapped_column(
        String(32), default=BUDGET_METHODS[0], server_default=BUDGET_METHODS[0]
    )
    has_onboarded: Mapped[bool] = mapped_column(default=False, server_default=db.false())
    email_verified: Mapped[bool] = mapped_column(default=False, server_default=db.false())
    # The app's settings screen.
    notifications_enabled: Mapped[bool] = mapped_column(default=True, server_default=db.true())
    dark_mode_enabled: Mapped[bool] = mapped_column(default=False, server_default=db.false())
    biometric_auth: Mapped[bool] = mapped_column(default=False, server_default=db.false())
    auto_sync: Mapped[bool] = mapped_column(default=True, server_default=db.true())
    offline_mode: Mapped[bool] = mapped_column(default=True, server_default=db.true())
    language: Mapped[str] = mapped_column(String(32), default="English", server_default="English")
    date_format: Mapped[str] = mapped_column(
        String(16), default="MM/dd/yyyy", server_default="MM/dd/yyyy"
    )
    budget_alert_threshold: Mapped[Decimal] = mapped_column(
        Numeric(5, 2), default=80, server_default="80"
    )
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    first_failed_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    sessions: Mapped[list[AuthSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"


class AuthSession(Model):
    """One login: a family of rotating refresh tokens, of which only the newest is valid (and,
    for REFRESH_REUSE_GRACE seconds after it was replaced, the one before it)."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    refresh_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the current refresh token replaced the one before it (None until the first
    # refresh), and how many times the family has rotated: how far back to look for reuse.
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rotations: Mapped[int] = mapped_column(default=0, server_default="0")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    ip: Mapped[str | None] = mapped_column(String(45))

    user: Mapped[User] = relationship(back_populates="sessions")

    def is_valid(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now

    def __repr__(self) -> str:
        return f"<AuthSession {self.id} user={self.user_id}>"


class PasswordResetToken(Model):
    """A single-use password reset token: only its SHA-256 is kept. Using it, or asking for a
    newer one, ends it."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LinkedIdentity(Model):
    """A sign-in identity of another provider (Google) linked to a local account."""

    __tablename__ = "linked_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
