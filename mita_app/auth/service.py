"""The account flows behind /api/auth: register (and its retry), login with lockout, Google
sign-in, password change."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple, cast

from flask import current_app
from sqlalchemy import case, select, text, update

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
        return _sign_in(_account(email), email, password, now, via="register_retry")
    except InvalidCredentials:
        raise _email_taken() from None


def _email_taken() -> Conflict:
    return Conflict("An account with this email already exists.", code="email_taken")


class _Account(NamedTuple):
    """What a sign-in reads of an account: these columns only, since loading a whole row (and
    then building a User of it) would make a known email slower than an unknown one."""

    id: uuid.UUID
    password_hash: str | None
    is_active: bool
    locked_until: datetime | None


def _account(email: str) -> _Account | None:
    row = db.session.execute(
        select(User.id, User.password_hash, User.is_active, User.locked_until).where(
            User.email == normalize_email(email)
        )
    ).one_or_none()
    return None if row is None else _Account(*row)


def _locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now


def _record_failure(user_id: uuid.UUID | None, now: datetime) -> bool:
    """Count a failed attempt against `user_id` atomically, in one statement; enough of them
    within the window lock the account (and then the answer is True).

    A failure with no account to count against (None: an unknown email, a locked or disabled
    account) writes all the same, a row version and a WAL record: a statement that changed no
    row would be faster by those, enough to tell an existing email from an unknown one.
    """
    config = current_app.config
    if db.session.get_bind().dialect.name == "postgresql":
        # Both kinds of failure then commit without waiting for the WAL flush. A crash may
        # forget a count.
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    window_start = now - timedelta(seconds=config["LOGIN_LOCKOUT_WINDOW"])
    fresh = User.first_failed_login_at.is_(None) | (User.first_failed_login_at < window_start)
    tally = case((fresh, 1), else_=User.failed_logins + 1)
    locks = tally >= config["LOGIN_LOCKOUT_THRESHOLD"]
    until = now + timedelta(seconds=config["LOGIN_LOCKOUT_DURATION"])
    # One statement for both, differing only in its parameters (so its parse, plan and run cost
    # the same): lock the first row from an id on, then rewrite it, counting only if it is the
    # account's. Without an account, that is the first row nobody else holds (never waited
    # for), rewritten with its own values.
    kept = User.id != (uuid.uuid4() if user_id is None else user_id)
    target = (
        select(User.id)
        .where(User.id >= (uuid.UUID(int=0) if user_id is None else user_id))
        .order_by(User.id)
        .limit(1)
        .with_for_update(key_share=True, skip_locked=user_id is None)
        .scalar_subquery()
    )
    values = {
        User.failed_logins: case((kept, User.failed_logins), (locks, 0), else_=tally),
        User.first_failed_login_at: case(
            (kept, User.first_failed_login_at),
            (locks, None),
            (fresh, now),
            else_=User.first_failed_login_at,
        ),
        User.locked_until: case((kept, User.locked_until), (locks, until), else_=User.locked_until),
        User.updated_at: case((kept, User.updated_at), else_=now),
    }
    locked_until = db.session.execute(
        update(User)
        .where(User.id == target)
        .values(values)
        .returning(User.locked_until)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    db.session.commit()
    locked = user_id is not None and locked_until == until
    if locked:
        log.warning("account %s locked after failed logins", user_id)
    return locked


def login(email: str, password: str) -> TokenPair:
    return _sign_in(_account(email), email, password, utcnow())


def _sign_in(
    account: _Account | None, email: str, password: str, now: datetime, *, via: str | None = None
) -> TokenPair:
    """Unknown, wrong, locked and disabled all fail alike and cost the same: one password hash,
    one failure count (on a row that is not the account's where there is none to count
    against)."""
    how = {"via": via} if via else {}
    counted: uuid.UUID | None = None
    if account is None or account.password_hash is None:  # or the auth server signs it in
        burn_password_check(password)
        reason = "unknown_email" if account is None else "no_local_password"
    elif _locked(account.locked_until, now):
        burn_password_check(password)
        reason = "account_locked"
    elif not verify_password(account.password_hash, password):
        counted, reason = account.id, "wrong_password"
    elif not account.is_active:
        reason = "account_disabled"
    else:
        user = db.session.get(User, account.id)
        if user is None:  # deleted since it was read
            raise InvalidCredentials()
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
        user_id=account.id if account else None,
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
    if _locked(user.locked_until, now):
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
