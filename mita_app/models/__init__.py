"""Database models, one module per part of the product. Commits happen in the service layer,
never here."""

from .accounts import (
    BUDGET_METHODS,
    LOCAL_PROVIDER,
    REGIONS,
    ROLES,
    AuthSession,
    BudgetMethod,
    LinkedIdentity,
    PasswordResetToken,
    Region,
    User,
)
from .audit import AuditEvent, AuditWriterState
from .base import UTCDateTime, utcnow
from .budget import BudgetPlan, Transaction
from .crash_reports import CATEGORIES, SEVERITIES, Category, CrashReport, Severity
from .habits import FREQUENCIES, Habit, HabitCompletion

__all__ = [
    "BUDGET_METHODS",
    "CATEGORIES",
    "FREQUENCIES",
    "LOCAL_PROVIDER",
    "REGIONS",
    "ROLES",
    "SEVERITIES",
    "AuditEvent",
    "AuditWriterState",
    "AuthSession",
    "BudgetMethod",
    "BudgetPlan",
    "Category",
    "CrashReport",
    "Habit",
    "HabitCompletion",
    "LinkedIdentity",
    "PasswordResetToken",
    "Region",
    "Severity",
    "Transaction",
    "UTCDateTime",
    "User",
    "utcnow",
]
