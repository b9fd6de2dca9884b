"""Local accounts of an external auth server's users, made on their first request."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..errors import Conflict
from ..extensions import db
from ..fields import normalize_email
from ..models import User

log = logging.getLogger(__name__)

PROVIDER = "better-auth"
_PLAUSIBLE_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}")  # fits users.email (254)


def provision(subject: str, email: str | None) -> User:
    """The local account of the auth server's user `subject`, made on first sight; its email
    follows the server's. Two first requests at once make one account."""
    email = normalize_email(email) if email else None
    if email is not None and not _PLAUSIBLE_EMAIL.fullmatch(email):
        log.warning("auth server gave user %r an email unfit to store; not kept", subject)
        email = None
    user = _account(subject)
    if user is None:
        user = User(
            id=uuid.uuid4(),
            auth_provider=PROVIDER,
            external_subject=subject,
            email=email or _placeholder_email(subject),
            password_hash=None,
            role="user",
            is_active=True,
        )
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            user = _account(subject)  # another request made it first
            if user is None:
                audit.record("auth.provision.conflict", email=email, provider=PROVIDER)
                raise Conflict(
                    "An account with this email already exists here; an operator must "
                    "resolve it before this user can sign in.",
                    code="account_conflict",
                ) from None
            return user
        audit.record("auth.provision", user_id=user.id, email=user.email, provider=PROVIDER)
        return user
    if email and user.email != email:
        previous, user.email = user.email, email
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            log.warning("email of external account %s not synced: taken by another", user.id)
            user = _account(subject) or user
        else:
            audit.record("auth.provision.email_changed", user_id=user.id, previous=previous)
    return user


def _account(subject: str) -> User | None:
    return db.session.scalar(
        select(User).where(User.auth_provider == PROVIDER, User.external_subject == subject)
    )


def _placeholder_email(subject: str) -> str:
    """For a user the server gave no email: unique, and undeliverable by design (RFC 2606)."""
    return f"{hashlib.sha256(subject.encode()).hexdigest()[:32]}@{PROVIDER}.invalid"
