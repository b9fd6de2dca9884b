"""Local accounts: creation, look-up, and what the account holder and operators do to them."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from ..fields import normalize_email
from ..models import LOCAL_PROVIDER, ROLES, LinkedIdentity, User
from .google import GoogleIdentity
from .guard import auth_cache
from .passwords import hash_password
from .sessions import revoke_user_sessions

GOOGLE_PROVIDER = "google"


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


def find_by_identity(provider: str, subject: str) -> User | None:
    """The account a linked identity (a Google account, say) signs in to."""
    return db.session.scalar(
        select(User)
        .join(LinkedIdentity, LinkedIdentity.user_id == User.id)
        .where(LinkedIdentity.provider == provider, LinkedIdentity.subject == subject)
    )


def create_user(
    email: str,
    password: str | None,
    *,
    role: str = "user",
    country: str | None = None,
    income: Decimal = Decimal(0),
    timezone: str | None = None,
    name: str = "",
    email_verified: bool = False,
) -> User:
    """Add a user (the caller commits); a taken email raises Conflict. Without a password the
    account signs in only through a linked identity (until a password reset sets one)."""
    if role not in ROLES:
        raise ValidationFailed(fields={"role": f"must be one of {', '.join(ROLES)}"})
    email = normalize_email(email)
    if find_by_email(email) is not None:
        raise Conflict("An account with this email already exists.", code="email_taken")
    user = User(
        id=uuid.uuid4(),
        email=email,
        password_hash=None if password is None else hash_password(password),
        role=role,
        name=name,
        email_verified=email_verified,
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


def delete_account(user: User) -> None:
    """Delete the account for good, in one statement and one transaction. The database's
    ON DELETE CASCADE takes everything that is the user's (sessions, reset tokens, linked
    identities, habits and the rest); crash reports stay, anonymised (SET NULL); the audit log,
    which has no foreign key, keeps its record."""
    user_id = user.id
    db.session.execute(
        delete(User).where(User.id == user_id).execution_options(synchronize_session=False)
    )
    db.session.commit()
    # This worker forgets the user's sessions at once; others within AUTH_CACHE_TTL.
    auth_cache().drop_user(user_id)


class _Raced(Exception):
    """A concurrent request inserted the row this one meant to."""


def google_account(identity: GoogleIdentity) -> tuple[User, str]:
    """The account a verified Google identity signs in to, and how it was found: "found" (linked
    before), "linked" (a local account with that email, linked now), "linked_unverified" (the
    same, for an address never verified: its password is cleared) or "created" (a new one,
    without a password). The caller commits. A disabled account is returned, never linked."""
    try:
        return _google_account(identity)
    except _Raced:
        # A concurrent first sign-in with this Google account got there first: look again.
        try:
            return _google_account(identity)
        except _Raced:
            raise Conflict("This Google account is being linked just now; retry.") from None


def _google_account(identity: GoogleIdentity) -> tuple[User, str]:
    user = find_by_identity(GOOGLE_PROVIDER, identity.subject)
    if user is not None:
        return user, "found"
    user = find_by_email(identity.email)
    if user is not None and not user.is_active:
        return user, "found"
    if user is not None and user.auth_provider != LOCAL_PROVIDER:
        raise Conflict(
            f"An account with this email signs in through {user.auth_provider}.",
            code="email_taken",
        )
    how = "linked"
    if user is not None and not user.email_verified:
        # Nobody ever showed this address was theirs: whoever registered it (perhaps before its
        # owner did, to wait for them) loses the password and every session; the owner, now
        # proven by Google, can set a password again by email.
        user.password_hash = None
        how = "linked_unverified"
    if user is None:
        try:
            user = create_user(identity.email, None, name=identity.name, email_verified=True)
        except Conflict:
            raise _Raced() from None
        how = "created"
    user.email_verified = True  # Google vouched for the address
    if not user.name:
        user.name = identity.name
    db.session.add(
        LinkedIdentity(
            user_id=user.id,
            provider=GOOGLE_PROVIDER,
            subject=identity.subject,
            email=identity.email,
        )
    )
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise _Raced() from None
    return user, how
