"""Local accounts: creation, look-up, and what the account holder and operators do to them."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from ..fields import normalize_email
from ..models import LOCAL_PROVIDER, ROLES, User
from .guard import auth_cache
from .passwords import hash_password
from .sessions import revoke_user_sessions


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def get_user(identifier: str) -> User:
    """A user by id or email (for operators), or NotFound."""
    user = None
    try:
        user = db.session.get(User, uuid.UUID(identifier))
    except ValueError:
        user = find_by_email(identifier)
    if user is None:
        raise NotFound(f"No user {identifier!r}.", code="user_not_found")
    return user


def create_user(
    email: str,
    password: str,
    *,
    role: str = "user",
    country: str | None = None,
    income: Decimal = Decimal(0),
    timezone: str | None = None,
) -> User:
    """Add a user (the caller commits); a taken email raises Conflict."""
    if role not in ROLES:
        raise ValidationFailed(fields={"role": f"must be one of {', '.join(ROLES)}"})
    email = normalize_email(email)
    if find_by_email(email) is not None:
        raise Conflict("An account with this email already exists.", code="email_taken")
    user = User(
        id=uuid.uuid4(),
        email=email,
        password_hash=hash_password(password),
        role=role,
        is_active=True,
        country=country,
        income=income,
        timezone=timezone,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        # Another request registered the same email between our check and our insert.
        db.session.rollback()
        raise Conflict("An account with this email already exists.", code="email_taken") from None
    return user


def set_active(user: User, active: bool) -> None:
    user.is_active = active
    if active:
        user.failed_logins = 0
        user.first_failed_login_at = None
        user.locked_until = None
        db.session.commit()
        # A cached "disabled" answer (an external auth server's sessions outlive the disabling)
        # must not outlast the re-enabling.
        auth_cache().drop_user(user.id)
    else:
        revoke_user_sessions(user.id, "user_disabled")


def set_role(user: User, role: str) -> None:
    if role not in ROLES:
        raise ValidationFailed(fields={"role": f"must be one of {', '.join(ROLES)}"})
    user.role = role
    db.session.commit()
    # Sessions stay, but cached authorisation must see the new role at once.
    auth_cache().drop_user(user.id)


def set_password(user: User, password: str, *, keep_session: uuid.UUID | None = None) -> None:
    """Replace the password and revoke every session but `keep_session`."""
    if user.auth_provider != LOCAL_PROVIDER:
        raise Conflict(
            f"This account signs in through {user.auth_provider}; it has no password here.",
            code="external_account",
        )
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.first_failed_login_at = None
    user.locked_until = None
    revoke_user_sessions(user.id, "password_changed", keep=keep_session)
