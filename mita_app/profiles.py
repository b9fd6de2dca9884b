"""The account holder's profile and app settings: what `/api/users/me` reads and changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from . import budget
from .auth.accounts import find_by_email
from .errors import Conflict
from .extensions import db
from .models import User

# What each month's budget plan is made of, of what the profile can change.
_PLAN_FIELDS = frozenset({"income", "savings_goal"})
# What the profile is made of, for `profile_completion`: each counts the same.
_COMPLETION_FIELDS = ("name", "email", "income", "savings_goal", "country", "region", "timezone")
EMAIL_TAKEN = "An account with this email already exists."


def profile_completion(user: User) -> int:
    """How much of the profile is filled in, as a whole percent (0-100)."""
    filled = sum(1 for name in _COMPLETION_FIELDS if getattr(user, name))
    return round(100 * filled / len(_COMPLETION_FIELDS))


def update_profile(user: User, changes: dict[str, Any]) -> User:
    """Apply validated `changes` (model attribute names) and commit; a taken email is 409. A
    new income or savings goal rebuilds the current month's budget plan (past months keep
    theirs), the savings giving way if the fixed costs no longer leave room for them."""
    email = changes.pop("email", None)
    if email is not None and email != user.email:
        if find_by_email(email) is not None:
            raise Conflict(EMAIL_TAKEN, code="email_taken")
        user.email = email
        user.email_verified = False  # the new address has not been shown to be theirs
    replan = user.has_onboarded and any(
        getattr(user, name) != changes[name] for name in _PLAN_FIELDS & changes.keys()
    )
    for name, value in changes.items():
        setattr(user, name, value)
    if replan:
        budget.lock_user(user)
        this_month = budget.first_of(budget.today_of(user))
        budget.replace_plan(user, this_month, budget.plan_from_answers(user, strict=False))
    try:
        db.session.commit()
    except IntegrityError:
        # Another account took the email between the check and the commit.
        db.session.rollback()
        raise Conflict(EMAIL_TAKEN, code="email_taken") from None
    return user
