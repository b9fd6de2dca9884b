"""The account flows behind /api/auth: register, login with lockout, password change."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import case, text, update

from .. import audit
from ..errors import Forbidden, InvalidCredentials
from ..extensions import db
from ..fields import normalize_email
from ..models import User, utcnow
from .accounts import create_user, find_by_email, set_password
from .guard import Principal
from .passwords import burn_password_check, verify_password
from .sessions import TokenPair, open_session

log = logging.getLogger(__name__)


def register(
    email: str,
    password: str,
    *,
    country: str | None = None,
    income: Decimal = Decimal(0),
    timezone: str | None = None,
) -> TokenPair:
    user = create_user(email, password, country=country, income=income, timezone=timezone)
    pair = open_session(user)
    db.session.commit()
    audit.record("auth.register", user_id=user.id, session_id=pair.session_id, email=user.email)
    return pair


def _locked(user: User, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def _record_failure(user_id: uuid.UUID, now: datetime) -> bool:
    """Count a failed attempt atomically; enough of them within the window lock the account
    (and then the answer is True).

    A failure without an account to count against (unknown email, locked account) passes a
    fresh id: the same statement and commit, matching nothing, so every failure costs the same.
    """
    config = current_app.config
    if db.session.get_bind().dialect.name == "postgresql":
        # Both kinds of failure then commit without waiting for the WAL flush, which only a
        # real row change would need: their times stay alike. A crash may forget a count.
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    window_start = now - timedelta(seconds=config["LOGIN_LOCKOUT_WINDOW"])
    fresh_window = User.first_failed_login_at.is_(None) | (
        User.first_failed_login_at < window_start
    )
    failures = db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            failed_logins=case((fresh_window, 1), else_=User.failed_logins + 1),
            first_failed_login_at=case((fresh_window, now), else_=User.first_failed_login_at),
        )
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    locked = failures is not None and failures >= config["LOGIN_LOCKOUT_THRESHOLD"]
    if locked:
        db.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(
                locked_until=now + timedelta(seconds=config["LOGIN_LOCKOUT_DURATION"]),
                failed_logins=0,
                first_failed_login_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        log.warning("account %s locked after %d failed logins", user_id, failures)
    db.session.commit()
    return locked


def login(email: str, password: str) -> TokenPair:
    """Unknown, wrong, locked and disabled all fail alike and cost the same: one password hash,
    one failure count (matching no row where there is no account to count against)."""
    user = find_by_email(email)
    now = utcnow()
    if user is None or user.password_hash is None:  # none, or one the auth server signs in
        burn_password_check(password)
        counted, reason = uuid.uuid4(), "unknown_email" if user is None else "no_local_password"
    elif _locked(user, now):
        burn_password_check(password)
        counted, reason = uuid.uuid4(), "account_locked"
    elif not verify_password(user.password_hash, password):
        counted, reason = user.id, "wrong_password"
    elif not user.is_active:
        counted, reason = uuid.uuid4(), "account_disabled"
    else:
        if user.failed_logins or user.first_failed_login_at or user.locked_until:
            user.failed_logins = 0
            user.first_failed_login_at = None
            user.locked_until = None
        pair = open_session(user)
        db.session.commit()
        audit.record(
            "auth.login.succeeded", user_id=user.id, session_id=pair.session_id, email=user.email
        )
        return pair
    locked = _record_failure(counted, now)
    audit.record(
        "auth.login.failed",
        user_id=user.id if user else None,
        email=normalize_email(email),
        reason=reason,
        locked_now=locked,
    )
    raise InvalidCredentials()


def change_password(principal: Principal, user: User, current: str, new: str) -> None:
    """Set a new password after checking the current one; every other session ends."""
    now = utcnow()
    if _locked(user, now):
        burn_password_check(current)
        audit.record("auth.password_change.failed", reason="account_locked")
        raise Forbidden("The current password is incorrect.", code="invalid_current_password")
    if not verify_password(user.password_hash, current):
        locked = _record_failure(user.id, now)
        audit.record("auth.password_change.failed", reason="wrong_password", locked_now=locked)
        raise Forbidden("The current password is incorrect.", code="invalid_current_password")
    set_password(user, new, keep_session=principal.session_id)
    audit.record("auth.password_changed")
