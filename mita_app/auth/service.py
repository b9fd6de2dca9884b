"""The account flows behind /api/auth: register (and its retry), login with lockout, Google
sign-in, password change."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

from flask import current_app
from sqlalchemy import case, text, update

from .. import audit
from ..errors import Conflict, Forbidden, InvalidCredentials, InvalidToken
from ..extensions import db
from ..fields import normalize_email
from ..models import User, utcnow
from .accounts import create_user, find_by_email, google_account, set_password
from .google import GoogleIdTokens
from .guard import Principal
from .passwords import burn_password_check, verify_password
from .sessions import TokenPair, open_session, revoke_user_sessions

log = logging.getLogger(__name__)

# How long after its creation a register of a taken email may be the app's retry of it.
REGISTER_RETRY_WINDOW = timedelta(minutes=10)


def register(
    email: str,
    password: str,
    *,
    country: str | None = None,
    income: Decimal = Decimal(0),
    timezone: str | None = None,
) -> TokenPair:
    """A new account and its first session; a taken email may be a retry (`_register_again`)."""
    existing = find_by_email(email)
    if existing is None:
        try:
            user = create_user(email, password, country=country, income=income, timezone=timezone)
        except Conflict:
            # A concurrent request registered it: the same client's retry, perhaps.
            existing = find_by_email(email)
            if existing is None:
                raise
        else:
            pair = open_session(user)
            db.session.commit()
            audit.record(
                "auth.register", user_id=user.id, session_id=pair.session_id, email=user.email
            )
            return pair
    return _register_again(existing, email, password)


def _register_again(user: User, email: str, password: str) -> TokenPair:
    """The app retries a register whose answer it lost (a timeout, a 5xx). Within
    REGISTER_RETRY_WINDOW of the account's creation the same password signs in, exactly as a
    login would (lockout counting included); anything else is 409 email_taken. A duplicate
    costs one password check, as a new account costs one hash."""
    now = utcnow()
    if now - user.created_at > REGISTER_RETRY_WINDOW:
        burn_password_check(password)
        audit.record("auth.register.failed", user_id=user.id, reason="email_taken")
        raise _email_taken()
    try:
        return _sign_in(user, email, password, now, via="register_retry")
    except InvalidCredentials:
        raise _email_taken() from None


def _email_taken() -> Conflict:
    return Conflict("An account with this email already exists.", code="email_taken")


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
    return _sign_in(find_by_email(email), email, password, utcnow())


def _sign_in(
    user: User | None, email: str, password: str, now: datetime, *, via: str | None = None
) -> TokenPair:
    """Unknown, wrong, locked and disabled all fail alike and cost the same: one password hash,
    one failure count (matching no row where there is no account to count against)."""
    how = {"via": via} if via else {}
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
            "auth.login.succeeded",
            user_id=user.id,
            session_id=pair.session_id,
            email=user.email,
            **how,
        )
        return pair
    locked = _record_failure(counted, now)
    audit.record(
        "auth.login.failed",
        user_id=user.id if user else None,
        email=normalize_email(email),
        reason=reason,
        locked_now=locked,
        **how,
    )
    raise InvalidCredentials()


def change_password(principal: Principal, user: User, current: str, new: str) -> None:
    """Set a new password after checking the current one; every other session ends."""
    if user.password_hash is None:
        # Signed up with Google: there is no current password to check. A 409 says so, where
        # a 403 "incorrect" would send the user hunting for a password that never existed.
        audit.record("auth.password_change.failed", reason="no_password")
        raise Conflict(
            "This account has no password yet (it signs in with Google); "
            "use forgot-password to set one.",
            code="password_not_set",
        )
    now = utcnow()
    if _locked(user, now):
        burn_password_check(current)
        audit.record("auth.password_change.failed", reason="account_locked")
        raise Forbidden("The current password is incorrect.", code="invalid_current_password")
    if not verify_password(user.password_hash, current):
        locked = _record_failure(user.id, now)
        audit.record("auth.password_change.failed", reason="wrong_password", locked_now=locked)
        raise Forbidden("The current password is incorrect.", code="invalid_current_password")
    # A local session id is ours, a UUID (this route is local-accounts only).
    set_password(user, new, keep_session=cast(uuid.UUID, principal.session_id))
    audit.record("auth.password_changed")


def sign_in_with_google(verifier: GoogleIdTokens, id_token: str) -> TokenPair:
    """Sign in with a Google ID token: to the account linked to it, else to the local account
    with its (verified) email, linked now, else to a new account without a password."""
    try:
        identity = verifier.verify(id_token)
    except InvalidToken as error:
        audit.record(
            "auth.login.failed", via="google", reason="invalid_token", detail=error.message
        )
        raise
    user, how = google_account(identity)
    if not user.is_active:
        db.session.rollback()
        audit.record("auth.login.failed", via="google", user_id=user.id, reason="account_disabled")
        raise InvalidCredentials()
    if how == "linked_unverified":
        revoke_user_sessions(user.id, "google_linked")  # commits the link with it
    pair = open_session(user)
    db.session.commit()
    if how == "created":
        audit.record("auth.register", user_id=user.id, session_id=pair.session_id, via="google")
    elif how.startswith("linked"):
        audit.record(
            "auth.google.linked",
            user_id=user.id,
            email=user.email,
            old_sign_ins_ended=how == "linked_unverified",
        )
    audit.record(
        "auth.login.succeeded",
        user_id=user.id,
        session_id=pair.session_id,
        email=user.email,
        via="google",
    )
    return pair
